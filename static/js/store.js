// Client-side chat state: the signed-in user, contacts, conversations (keyed by peer user id,
// because the HTTP API addresses conversations by peer) and their messages. Views subscribe to
// events and re-render; the realtime socket and the outbox feed it.
import { api } from './api.js';
import { realtime } from './ws.js';
import { Outbox } from './outbox.js';

const PAGE = 50;
const ACK_TIMEOUT_MS = 8000; // after this a WebSocket send is retried over HTTP

class Store extends EventTarget {
  constructor() {
    super();
    this.reset();
  }

  reset() {
    this.me = null;
    this.contacts = [];
    this.convs = new Map(); // peerId -> conversation state
    this.convIdToPeer = new Map();
    this.users = new Map(); // userId -> profile
    this.presence = new Map(); // userId -> {online, last_seen}
    this.blocks = [];
    this.outbox = null;
    this.openPeer = null;
    this.ackTimers = new Map();
    this.convsLoaded = false;
    // Receipts per conversation id. A receipt can arrive before the ack that tells us which
    // conversation a new message went to, so receipts are kept and applied to later inserts too.
    this.receipts = new Map(); // conversation_id -> {delivered, read}
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  // --- names and people ---------------------------------------------------------------------
  contactForUser(userId) { return this.contacts.find((c) => c.user && c.user.id === userId) || null; }

  profile(userId) {
    return this.contactForUser(userId)?.user || this.users.get(userId) || this.convs.get(userId)?.peer || null;
  }

  /** Contact name first (the user's own address book), then the peer's display name, then phone. */
  nameOf(userId) {
    if (this.me && userId === this.me.id) return 'You';
    const c = this.contactForUser(userId);
    if (c?.name) return c.name;
    const p = this.profile(userId);
    if (p?.contact_name) return p.contact_name;
    if (p?.display_name) return p.display_name;
    if (p?.phone) return p.phone;
    return p ? 'Deleted account' : 'Unknown';
  }

  rememberUser(p) {
    if (p?.id) this.users.set(p.id, { ...(this.users.get(p.id) || {}), ...p });
  }

  // --- loading ---------------------------------------------------------------------------------
  async start(me) {
    this.reset();
    this.me = me;
    this.outbox = new Outbox(me.id);
    await Promise.all([this.loadContacts(), this.loadConversations(), this.loadBlocks()]);
    // Pending outbox items show in their chats at once, even before the socket is up.
    for (const it of this.outbox.items) this.conv(it.to);
    this.emit('convs');
  }

  async loadContacts() {
    try {
      this.contacts = await api('GET', '/api/contacts');
      for (const c of this.contacts) if (c.user) this.rememberUser(c.user);
    } catch (e) {
      console.warn('contacts', e);
    }
    this.emit('contacts');
    this.emit('convs');
  }

  async loadBlocks() {
    try { this.blocks = await api('GET', '/api/blocks'); } catch { this.blocks = []; }
    this.emit('blocks');
  }

  isBlocked(userId) { return this.blocks.some((b) => b.id === userId); }

  async loadConversations() {
    try {
      const list = await api('GET', '/api/conversations');
      for (const c of list) {
        const conv = this.conv(c.peer.id);
        conv.id = c.id;
        conv.peer = c.peer;
        this.rememberUser(c.peer);
        this.emit('conv', { peerId: c.peer.id });
        this.convIdToPeer.set(c.id, c.peer.id);
        if (c.last_message && (!conv.last || c.last_message.seq >= conv.last.seq)) conv.last = c.last_message;
        conv.unread = c.unread_count || 0;
      }
      this.convsLoaded = true;
    } catch (e) {
      console.warn('conversations', e);
    }
    this.emit('convs');
  }

  refreshConversationsSoon() {
    clearTimeout(this.convRefreshTimer);
    this.convRefreshTimer = setTimeout(() => this.loadConversations(), 300);
  }

  conv(peerId) {
    let c = this.convs.get(peerId);
    if (!c) {
      c = { peerId, id: null, peer: this.profile(peerId), last: null, unread: 0, messages: [], loaded: false, loadingOlder: false, reachedStart: false, typing: false, typingTimer: null, readSentUpTo: 0 };
      this.convs.set(peerId, c);
    }
    return c;
  }

  /** Chats ordered by latest activity, including chats that only have pending outbox messages. */
  chatList() {
    const list = [];
    for (const c of this.convs.values()) {
      const pend = this.outbox?.forPeer(c.peerId) || [];
      if (!c.last && !pend.length) continue;
      const lastPending = pend[pend.length - 1];
      const at = lastPending && (!c.last || lastPending.created_at > c.last.created_at) ? lastPending.created_at : c.last?.created_at;
      list.push({ conv: c, at, preview: lastPending && at === lastPending.created_at ? { body: lastPending.body, mine: true, status: lastPending.state } : c.last ? { body: c.last.body, mine: c.last.sender_id === this.me.id, status: statusOf(c.last) } : null });
    }
    list.sort((a, b) => (b.at || '').localeCompare(a.at || ''));
    return list;
  }

  totalUnread() {
    let n = 0;
    for (const c of this.convs.values()) n += c.unread || 0;
    return n;
  }

  /** First page (latest messages) of a conversation. */
  async openConversation(peerId) {
    this.openPeer = peerId;
    const c = this.conv(peerId);
    if (!c.peer) {
      c.peer = this.profile(peerId);
    }
    if (!c.loaded) {
      try {
        const msgs = await api('GET', `/api/conversations/with/${encodeURIComponent(peerId)}/messages?limit=${PAGE}`);
        this.merge(c, msgs);
        c.loaded = true;
        c.reachedStart = msgs.length < PAGE;
        // Servers may page from the oldest end when no cursor is given; catch up to the newest.
        let guard = 0;
        while (msgs.length === PAGE && guard++ < 20) {
          const max = c.messages[c.messages.length - 1]?.seq;
          const more = await api('GET', `/api/conversations/with/${encodeURIComponent(peerId)}/messages?after_seq=${max}&limit=${PAGE}`);
          if (!more.length) break;
          this.merge(c, more);
          if (more.length < PAGE) break;
        }
      } catch (e) {
        console.warn('messages', e);
      }
      this.emit('conv', { peerId });
    }
    // A chat restored in a background tab is not being read yet; the view marks it read on focus.
    if (this.isReading(peerId)) this.markRead(peerId);
    return c;
  }

  /** Older page for scroll-up paging; returns how many were added. */
  async loadOlder(peerId) {
    const c = this.conv(peerId);
    if (c.loadingOlder || c.reachedStart || !c.messages.length) return 0;
    c.loadingOlder = true;
    try {
      const first = c.messages[0].seq;
      const msgs = await api('GET', `/api/conversations/with/${encodeURIComponent(peerId)}/messages?before_seq=${first}&limit=${PAGE}`);
      const before = c.messages.length;
      this.merge(c, msgs);
      if (msgs.length < PAGE) c.reachedStart = true;
      return c.messages.length - before;
    } catch {
      return 0;
    } finally {
      c.loadingOlder = false;
    }
  }

  merge(c, msgs) {
    for (const m of msgs) this.insert(c, m);
  }

  /** Insert or update one message, keeping seq order; returns true when it is new. */
  insert(c, m) {
    if (m.conversation_id) {
      c.id = m.conversation_id;
      this.convIdToPeer.set(m.conversation_id, c.peerId);
    }
    const arr = c.messages;
    const idx = arr.findIndex((x) => x.id === m.id || x.seq === m.seq);
    let isNew = false;
    if (idx >= 0) {
      arr[idx] = { ...arr[idx], ...m, delivered_at: m.delivered_at || arr[idx].delivered_at, read_at: m.read_at || arr[idx].read_at };
    } else {
      isNew = true;
      let i = arr.length;
      while (i > 0 && arr[i - 1].seq > m.seq) i--;
      arr.splice(i, 0, m);
    }
    if (!c.last || m.seq >= c.last.seq) c.last = { ...(c.last?.seq === m.seq ? c.last : {}), ...m };
    this.applyReceipts(arr.find((x) => x.seq === m.seq));
    if (c.last) this.applyReceipts(c.last);
    return isNew;
  }

  // --- realtime ----------------------------------------------------------------------------------
  /** While we are disconnected nobody's "online" can be trusted; the server resends presence on reconnect. */
  onDisconnected() {
    for (const [id, p] of this.presence) if (p.online) this.presence.set(id, { online: false, last_seen: p.last_seen, stale: true });
    for (const c of this.convs.values()) if (c.typing) this.onTyping(c.peerId, false);
    this.emit('presence', { userId: null });
  }

  onFrame(f) {
    switch (f.type) {
      case 'ready':
        this.sync();
        break;
      case 'message.new':
        this.onMessage(f.message, false);
        break;
      case 'message.ack': {
        clearTimeout(this.ackTimers.get(f.client_id));
        this.ackTimers.delete(f.client_id);
        this.outbox.remove(f.client_id);
        this.onMessage(f.message, true);
        break;
      }
      case 'message.status':
        this.onStatus(f);
        break;
      case 'typing':
        this.onTyping(f.from, f.active);
        break;
      case 'presence':
        this.presence.set(f.user_id, { online: !!f.online, last_seen: f.last_seen || null });
        this.emit('presence', { userId: f.user_id });
        break;
      case 'error':
        // A refused message.send names its client_id: refusals that retrying cannot fix fail now.
        if (f.ref === 'message.send' && f.client_id && this.outbox.get(f.client_id)) {
          clearTimeout(this.ackTimers.get(f.client_id));
          this.ackTimers.delete(f.client_id);
          if (['forbidden', 'invalid_input', 'not_found', 'payload_too_large'].includes(f.code)) {
            const it = this.outbox.get(f.client_id);
            this.outbox.setState(f.client_id, 'failed', f.message);
            this.emit('conv', { peerId: it.to });
            this.emit('convs');
          }
        }
        break;
      case 'sync.done':
        this.emit('synced');
        break;
      default:
        break;
    }
  }

  /** After every (re)connect: ask for everything newer than what we hold, then flush the outbox. */
  sync() {
    const after = {};
    for (const c of this.convs.values()) {
      if (!c.id) continue;
      const maxLoaded = c.messages.length ? c.messages[c.messages.length - 1].seq : 0;
      after[c.id] = Math.max(maxLoaded, c.last?.seq || 0);
    }
    realtime.send({ type: 'sync', after });
    // Sends still waiting for an ack went out on the old socket; send them again now (client_id
    // makes a repeat harmless) instead of waiting for their HTTP fallback timers.
    for (const t of this.ackTimers.values()) clearTimeout(t);
    this.ackTimers.clear();
    this.flushOutbox();
  }

  onMessage(m, fromAck) {
    if (!m) return;
    const mine = m.sender_id === this.me.id;
    const peerId = mine ? m.recipient_id : m.sender_id;
    const c = this.conv(peerId);
    const prevLast = c.last?.seq || 0;
    if (mine && m.client_id) this.outbox.remove(m.client_id); // another device or a replay acked it
    // First message from someone we know nothing about: the conversations list has their profile.
    if (!this.profile(peerId)) this.refreshConversationsSoon();
    // Only conversations the user has opened keep a message list; others just track the preview.
    const isNew = c.loaded ? this.insert(c, m) : (m.seq > prevLast);
    if (!c.loaded) {
      if (m.conversation_id) { c.id = m.conversation_id; this.convIdToPeer.set(m.conversation_id, peerId); }
      if (!c.last || m.seq >= c.last.seq) c.last = m;
      this.applyReceipts(c.last);
    }
    if (!mine && isNew && m.seq > prevLast && !m.read_at) {
      if (c.typing) this.onTyping(peerId, false);
      if (this.isReading(peerId)) this.markRead(peerId);
      else {
        c.unread = (c.unread || 0) + 1;
        this.emit('incoming', { peerId, message: m });
      }
    }
    this.emit('conv', { peerId });
    this.emit('convs');
  }

  onStatus({ conversation_id, up_to_seq, status }) {
    const r = this.receipts.get(conversation_id) || { delivered: 0, read: 0 };
    r.delivered = Math.max(r.delivered, up_to_seq); // read implies delivered
    if (status === 'read') r.read = Math.max(r.read, up_to_seq);
    this.receipts.set(conversation_id, r);
    const peerId = this.convIdToPeer.get(conversation_id);
    if (!peerId) return;
    const c = this.conv(peerId);
    c.messages.forEach((m) => this.applyReceipts(m));
    if (c.last) this.applyReceipts(c.last);
    this.emit('conv', { peerId });
    this.emit('convs');
  }

  applyReceipts(m) {
    if (!m) return;
    const r = this.receipts.get(m.conversation_id);
    if (!r || m.sender_id !== this.me.id) return;
    const now = new Date().toISOString();
    if (m.seq <= r.delivered && !m.delivered_at) m.delivered_at = now;
    if (m.seq <= r.read && !m.read_at) m.read_at = now;
  }

  onTyping(peerId, active) {
    const c = this.conv(peerId);
    clearTimeout(c.typingTimer);
    c.typing = !!active;
    // The sender repeats `typing` while typing; if the stop frame is lost, expire on our own.
    if (active) c.typingTimer = setTimeout(() => this.onTyping(peerId, false), 6000);
    this.emit('typing', { peerId });
  }

  /** The user is looking at this chat right now (visible tab, chat open). */
  isReading(peerId) {
    // Visible is enough (a visible but unfocused window is still being looked at, as on a second screen).
    return this.openPeer === peerId && document.visibilityState === 'visible';
  }

  markRead(peerId) {
    const c = this.conv(peerId);
    let upTo = 0;
    for (const m of c.messages) if (m.sender_id !== this.me.id && m.seq > upTo) upTo = m.seq;
    if (c.last && c.last.sender_id !== this.me.id) upTo = Math.max(upTo, c.last.seq);
    const hadUnread = c.unread > 0;
    c.unread = 0;
    if (upTo > c.readSentUpTo) {
      c.readSentUpTo = upTo;
      const now = new Date().toISOString();
      for (const m of c.messages) if (m.sender_id !== this.me.id && !m.read_at && m.seq <= upTo) m.read_at = now;
      if (!realtime.send({ type: 'message.read', peer: peerId, up_to_seq: upTo })) {
        api('POST', `/api/conversations/with/${encodeURIComponent(peerId)}/read`, { json: { up_to_seq: upTo } }).catch(() => { c.readSentUpTo = 0; });
      }
    }
    if (hadUnread) this.emit('convs');
  }

  // --- sending -------------------------------------------------------------------------------------
  send(peerId, body) {
    const text = body.trim();
    if (!text) return;
    const it = this.outbox.add(peerId, text);
    this.conv(peerId);
    this.emit('conv', { peerId });
    this.emit('convs');
    this.deliver(it);
  }

  retry(clientId) {
    const it = this.outbox.get(clientId);
    if (!it) return;
    this.outbox.setState(clientId, 'pending');
    this.emit('conv', { peerId: it.to });
    this.deliver(it);
  }

  discard(clientId) {
    const it = this.outbox.get(clientId);
    if (!it) return;
    this.outbox.remove(clientId);
    this.emit('conv', { peerId: it.to });
    this.emit('convs');
  }

  flushOutbox() {
    for (const it of this.outbox.pending()) this.deliver(it);
  }

  /** WebSocket first; if no ack arrives in time (or the socket is down) fall back to HTTP, which
   *  reports refusals (blocked, invalid) that mark the message failed. client_id makes repeats safe. */
  deliver(it) {
    if (this.ackTimers.has(it.client_id)) return;
    if (realtime.send({ type: 'message.send', to: it.to, client_id: it.client_id, body: it.body })) {
      this.ackTimers.set(it.client_id, setTimeout(() => {
        this.ackTimers.delete(it.client_id);
        if (this.outbox.get(it.client_id)?.state === 'pending') this.deliverHttp(it);
      }, ACK_TIMEOUT_MS));
    }
    // Socket down: the item stays pending and goes out on the next `ready`.
  }

  async deliverHttp(it) {
    try {
      const m = await api('POST', `/api/conversations/with/${encodeURIComponent(it.to)}/messages`, { json: { client_id: it.client_id, body: it.body } });
      this.outbox.remove(it.client_id);
      this.onMessage(m, true);
    } catch (e) {
      if (e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429 && e.status !== 401) {
        this.outbox.setState(it.client_id, 'failed', e.message);
        this.emit('conv', { peerId: it.to });
        this.emit('convs');
      }
      // Network errors and 5xx keep it pending for the next reconnect.
    }
  }

  sendTyping(peerId, active) {
    realtime.send({ type: 'typing', to: peerId, active });
  }
}

/** Delivery status of a message as the UI shows it (ticks and data-status). */
export function statusOf(m) {
  if (m.read_at) return 'read';
  if (m.delivered_at) return 'delivered';
  return 'sent';
}

export const store = new Store();
