// One conversation: header with presence and call buttons, the message list (bubbles, ticks, day
// separators, paging older history on scroll-up, typing indicator) and the composer (Enter sends,
// Shift+Enter adds a line). Message text is only ever set with textContent.
import { h, mount, icon, avatar, ticks, iconButton, toast, confirmDialog } from './dom.js';
import { store, statusOf } from './store.js';
import { api, describeError } from './api.js';
import { clock, dayLabel, lastSeen } from './time.js';
import { calls } from './call.js';
import { prefillContact } from './contacts.js';

export function renderEmptyConversation(root) {
  mount(root, h('div', { class: 'flex-1 flex flex-col items-center justify-center text-center px-10 bg-[#f8f9fa] border-b-[6px] border-wa-green' },
    h('div', { class: 'w-24 h-24 rounded-full bg-wa-green/10 text-wa-green flex items-center justify-center mb-8' }, icon('chat', 'w-12 h-12')),
    h('h2', { class: 'text-3xl font-light text-[#41525d] mb-4' }, 'Mescon Web'),
    h('p', { class: 'text-sm text-wa-muted max-w-md leading-6' }, 'Send and receive messages, and make voice and video calls, from your own server. Pick a chat on the left or start a new one from your contacts.'),
    h('p', { class: 'mt-10 text-xs text-wa-muted flex items-center gap-1' }, icon('lock', 'w-3 h-3'), 'Messages are stored encrypted on your server')));
  return () => {};
}

export function renderConversation(root, peerId, { closeChat, navigate }) {
  const conv = store.conv(peerId);
  let typingSentAt = 0;
  let typingStopTimer = null;
  let stickToBottom = true;
  let firstDraw = true;

  // --- header ---
  // Phones get the green app bar (as the chat list has); wide screens the light pane header.
  const title = h('div', { class: 'truncate text-base text-white md:text-wa-text font-medium' });
  const presence = h('div', { 'data-testid': 'presence', class: 'truncate text-xs text-white/80 md:text-wa-muted min-h-4', 'aria-live': 'polite' });
  const headBtn = 'p-2 rounded-full text-white md:text-[#54656f] hover:bg-black/10 md:hover:bg-black/5';
  const headAvatar = h('div', {});
  const menu = h('div', { class: 'absolute right-2 top-14 z-20 bg-white rounded-lg shadow-xl py-2 w-56 text-sm', role: 'menu', hidden: true });
  const moreBtn = iconButton('more', 'Chat options', { 'aria-haspopup': 'menu', onclick: (e) => { e.stopPropagation(); toggleMenu(); } }, headBtn);
  const header = h('header', { class: 'relative shrink-0 h-15 px-2 md:px-4 flex items-center gap-2 md:gap-3 bg-wa-green-dark md:bg-wa-panel md:border-l border-wa-line' },
    iconButton('back', 'Back to chats', { onclick: closeChat }, `md:hidden ${headBtn}`),
    headAvatar,
    h('div', { class: 'flex-1 min-w-0' }, title, presence),
    iconButton('video', 'Video call', { 'data-testid': 'call-video', onclick: () => calls.startCall(peerId, 'video') }, headBtn),
    iconButton('phone', 'Voice call', { 'data-testid': 'call-audio', onclick: () => calls.startCall(peerId, 'audio') }, headBtn),
    moreBtn, menu);

  const drawHeader = () => {
    const p = store.profile(peerId);
    const name = store.nameOf(peerId);
    title.textContent = name;
    mount(headAvatar, avatar({ url: p?.avatar_url, name, seed: peerId }, 'w-10 h-10', 'text-base'));
    const pr = store.presence.get(peerId);
    if (store.isBlocked(peerId)) presence.textContent = 'Blocked';
    else if (pr?.online) presence.textContent = 'online';
    else if (pr?.stale) presence.textContent = '';
    else if (pr?.last_seen) presence.textContent = lastSeen(pr.last_seen);
    else presence.textContent = p?.phone && p.phone !== name ? p.phone : '';
    presence.dataset.online = pr?.online ? 'true' : 'false';
  };

  function toggleMenu(force) {
    const open = force ?? menu.hidden;
    menu.hidden = !open;
    if (!open) return;
    const blocked = store.isBlocked(peerId);
    const contact = store.contactForUser(peerId);
    const item = (label, fn, danger) => h('button', { type: 'button', role: 'menuitem', class: `w-full text-left px-5 py-2.5 hover:bg-wa-panel ${danger ? 'text-wa-danger' : 'text-wa-text'}`, onclick: () => { toggleMenu(false); fn(); } }, label);
    mount(menu,
      contact ? null : item('Add to contacts', () => { prefillContact(store.profile(peerId)?.phone || '', store.profile(peerId)?.display_name || ''); navigate('contacts', peerId); }),
      blocked ? item('Unblock', () => setBlocked(false)) : item('Block', () => setBlocked(true), true));
    menu.querySelector('button')?.focus();
  }
  const closeMenu = () => { if (!menu.hidden) toggleMenu(false); };
  const onKey = (e) => { if (e.key === 'Escape' && !menu.hidden) { toggleMenu(false); moreBtn.focus(); } };
  document.addEventListener('click', closeMenu);
  document.addEventListener('keydown', onKey);

  async function setBlocked(block) {
    if (block) {
      const ok = await confirmDialog({ title: `Block ${store.nameOf(peerId)}?`, body: 'Blocked contacts cannot call you or send you messages, and neither of you sees the other online.', ok: 'Block', danger: true });
      if (!ok) return;
    }
    try {
      await api(block ? 'PUT' : 'DELETE', `/api/blocks/${encodeURIComponent(peerId)}`);
      await store.loadBlocks();
      toast(block ? 'Contact blocked' : 'Contact unblocked');
    } catch (e) { toast(describeError(e), 'error'); }
    drawHeader();
    drawComposerState();
  }

  // --- messages ---
  const olderStatus = h('div', { class: 'text-center text-xs text-wa-muted py-2', hidden: true }, 'Loading older messages…');
  const list = h('div', { class: 'flex flex-col gap-0.5 px-[4%] md:px-[7%] py-3', role: 'log', 'aria-label': 'Messages', 'aria-live': 'polite' });
  const typingBubble = h('div', { 'data-testid': 'typing-indicator', class: 'px-[4%] md:px-[7%] pb-2', hidden: true, 'aria-label': 'typing' },
    h('div', { class: 'inline-flex items-center gap-1 bg-white rounded-lg rounded-tl-none shadow-sm px-3 py-2.5 text-wa-muted', title: 'typing…' },
      h('span', { class: 'typing-dots flex gap-1' }, h('span', { class: 'w-1.5 h-1.5 rounded-full bg-[#8696a0]' }), h('span', { class: 'w-1.5 h-1.5 rounded-full bg-[#8696a0]' }), h('span', { class: 'w-1.5 h-1.5 rounded-full bg-[#8696a0]' })),
      h('span', { class: 'sr-only' }, 'typing…')));
  const scroller = h('div', { class: 'flex-1 min-h-0 overflow-y-auto scroll-thin chat-wallpaper', 'data-testid': 'message-list' }, olderStatus, list, typingBubble);

  scroller.addEventListener('scroll', async () => {
    stickToBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
    if (scroller.scrollTop < 120 && !conv.reachedStart && !conv.loadingOlder && conv.loaded) {
      olderStatus.hidden = false;
      const prevHeight = scroller.scrollHeight;
      const added = await store.loadOlder(peerId);
      olderStatus.hidden = true;
      if (added) {
        drawMessages();
        // Keep the message the user was looking at in place after older ones are prepended.
        scroller.scrollTop += scroller.scrollHeight - prevHeight;
      }
    }
  });

  // Rows are cached by key and only rebuilt when what they show changed; the list is then patched
  // in place. A full re-render would make screen readers re-announce the whole log (role=log is
  // a live region) and would reset text selection on every receipt.
  const rowCache = new Map(); // key -> {sig, el}
  let usedKeys = new Set();
  const keyed = (key, sig, build) => {
    usedKeys.add(key);
    const hit = rowCache.get(key);
    if (hit && hit.sig === sig) return hit.el;
    const el = build();
    rowCache.set(key, { sig, el });
    return el;
  };

  const drawMessages = () => {
    const nodes = [];
    let prevDay = null;
    let prevSender = null;
    const items = conv.messages.map((m) => ({ m, mine: m.sender_id === store.me.id, at: m.created_at, status: statusOf(m) }));
    for (const it of store.outbox.forPeer(peerId)) items.push({ pending: it, mine: true, at: it.created_at, status: it.state });
    if (conv.loaded && conv.reachedStart && items.length) {
      nodes.push(keyed('notice', '', () => h('div', { class: 'self-center my-2 max-w-md text-center text-xs text-[#54656f] bg-[#fff5c4] rounded-lg px-3 py-1.5 shadow-sm flex items-center gap-1.5' }, icon('lock', 'w-3 h-3 shrink-0'), 'Messages are stored encrypted on this server.')));
    }
    for (const it of items) {
      const day = new Date(it.at).toDateString();
      if (day !== prevDay) {
        const label = dayLabel(it.at);
        nodes.push(keyed(`day:${day}`, label, () => h('div', { class: 'self-center my-2 px-3 py-1 rounded-lg bg-white/95 shadow-sm text-xs text-[#54656f] uppercase tracking-wide', role: 'separator' }, label)));
        prevDay = day;
        prevSender = null;
      }
      const sender = it.mine ? 'me' : 'peer';
      const first = sender !== prevSender;
      const key = it.m ? `m:${it.m.seq}` : `p:${it.pending.client_id}`;
      const sig = `${it.status}|${first}|${it.m ? it.m.body : it.pending.body}|${it.pending?.error || ''}`;
      nodes.push(keyed(key, sig, () => bubble(it, first)));
      prevSender = sender;
    }
    if (!items.length && conv.loaded) {
      nodes.push(keyed('empty', '', () => h('div', { class: 'self-center mt-6 max-w-sm text-center text-sm text-[#54656f] bg-white/90 rounded-lg px-4 py-3 shadow-sm' }, `Say hi to ${store.nameOf(peerId)}!`)));
    }
    patchChildren(list, nodes);
    for (const k of rowCache.keys()) if (!usedKeys.has(k)) rowCache.delete(k);
    usedKeys = new Set();
    if (firstDraw || stickToBottom) scroller.scrollTop = scroller.scrollHeight;
    firstDraw = false;
  };

  const bubble = (it, first) => {
    const { mine, status } = it;
    const body = it.m ? it.m.body : it.pending.body;
    const meta = h('span', { class: 'float-right ml-3 mt-1.5 -mb-1 flex items-center gap-1 text-[11px] leading-none text-wa-muted select-none' },
      h('time', { datetime: it.at, title: new Date(it.at).toLocaleString() }, clock(it.at)),
      mine ? ticks(status) : null);
    const text = h('span', { class: 'whitespace-pre-wrap break-words [overflow-wrap:anywhere] text-[14.2px] leading-[19px] text-wa-text' });
    text.textContent = body === null || body === undefined ? 'This message was deleted' : body;
    const bubbleEl = h('div', {
      class: `relative max-w-[85%] md:max-w-[65%] rounded-lg px-2 pt-1.5 pb-2 shadow-[0_1px_0.5px_rgba(11,20,26,.13)] ${mine ? 'bg-wa-out' : 'bg-white'} ${first ? (mine ? 'rounded-tr-none bubble-out-tail' : 'rounded-tl-none bubble-in-tail') : ''}`,
    }, text, meta);
    const attrs = {
      'data-testid': 'message', 'data-status': status, 'data-mine': mine ? 'true' : 'false',
      'data-seq': it.m ? String(it.m.seq) : '', 'data-client-id': it.m?.client_id || it.pending?.client_id || null,
      class: `flex ${mine ? 'justify-end' : 'justify-start'} ${first ? 'mt-2' : ''}`,
    };
    const row = h('div', attrs, bubbleEl);
    if (it.pending?.state === 'failed') {
      row.classList.add('flex-col', 'items-end');
      row.append(h('div', { class: 'flex items-center gap-3 text-xs mt-1 mr-1' },
        h('span', { class: 'text-wa-danger' }, it.pending.error ? `Not sent: ${it.pending.error}` : 'Not sent'),
        h('button', { type: 'button', 'data-testid': 'message-retry', class: 'font-medium text-wa-green-dark hover:underline', onclick: () => store.retry(it.pending.client_id) }, 'Retry'),
        h('button', { type: 'button', class: 'text-wa-muted hover:underline', onclick: () => store.discard(it.pending.client_id) }, 'Delete')));
    }
    return row;
  };

  // --- composer ---
  const input = h('textarea', { rows: 1, 'data-testid': 'composer-input', 'aria-label': 'Type a message', placeholder: 'Type a message', maxlength: 4096,
    class: 'flex-1 resize-none bg-white rounded-lg px-3 py-2.5 text-[15px] leading-5 outline-none max-h-32 overflow-y-auto scroll-thin placeholder:text-wa-muted' });
  const sendBtn = h('button', { type: 'submit', 'data-testid': 'composer-send', 'aria-label': 'Send', title: 'Send',
    class: 'shrink-0 w-11 h-11 rounded-full bg-wa-green text-white flex items-center justify-center hover:bg-wa-green-dark disabled:bg-[#8696a0] transition-colors' }, icon('send', 'w-5 h-5'));
  const blockedBar = h('div', { class: 'shrink-0 px-4 py-4 bg-wa-panel text-center text-sm text-wa-muted', hidden: true });
  const form = h('form', { class: 'shrink-0 flex items-end gap-2 px-3 py-2.5 bg-wa-panel', onsubmit: (e) => { e.preventDefault(); submit(); } }, input, sendBtn);

  const autosize = () => {
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 128)}px`;
  };
  function submit() {
    const text = input.value;
    if (!text.trim()) { input.focus(); return; }
    store.send(peerId, text);
    input.value = '';
    autosize();
    stopTyping();
    stickToBottom = true;
    drawMessages();
    input.focus();
  }
  input.addEventListener('keydown', (e) => {
    // Enter sends; Shift+Enter (and IME composition) inserts a newline as usual.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  input.addEventListener('input', () => {
    autosize();
    const now = Date.now();
    if (input.value.trim() && now - typingSentAt > 2500) {
      typingSentAt = now;
      store.sendTyping(peerId, true);
    }
    clearTimeout(typingStopTimer);
    typingStopTimer = setTimeout(stopTyping, 3000);
  });
  function stopTyping() {
    clearTimeout(typingStopTimer);
    if (typingSentAt) { store.sendTyping(peerId, false); typingSentAt = 0; }
  }

  const drawComposerState = () => {
    const blocked = store.isBlocked(peerId);
    form.hidden = blocked;
    blockedBar.hidden = !blocked;
    mount(blockedBar, 'You blocked this contact. ', h('button', { type: 'button', class: 'text-wa-green-dark font-medium hover:underline', onclick: () => setBlocked(false) }, 'Unblock'), ' to send a message.');
  };

  mount(root, h('section', { class: 'flex-1 min-h-0 flex flex-col', 'aria-label': 'Conversation' }, header, scroller, form, blockedBar));
  drawHeader();
  drawComposerState();
  drawMessages();

  // --- live updates ---
  const onConv = (e) => { if (e.detail.peerId === peerId) { drawMessages(); } };
  const onTyping = (e) => {
    if (e.detail.peerId !== peerId) return;
    const wasAtBottom = stickToBottom;
    typingBubble.hidden = !conv.typing;
    if (wasAtBottom) scroller.scrollTop = scroller.scrollHeight;
  };
  const onPresence = (e) => { if (e.detail.userId === peerId || e.detail.userId === null) drawHeader(); };
  const onContacts = () => drawHeader();
  const onBlocks = () => { drawHeader(); drawComposerState(); };
  const onVisible = () => { if (document.visibilityState === 'visible') store.markRead(peerId); };
  store.addEventListener('conv', onConv);
  store.addEventListener('typing', onTyping);
  store.addEventListener('presence', onPresence);
  store.addEventListener('contacts', onContacts);
  store.addEventListener('blocks', onBlocks);
  document.addEventListener('visibilitychange', onVisible);
  window.addEventListener('focus', onVisible);
  const minute = setInterval(drawHeader, 30_000); // "last seen" wording ages
  typingBubble.hidden = !conv.typing;

  store.openConversation(peerId).then(() => { drawHeader(); });
  if (window.matchMedia('(min-width: 768px)').matches) input.focus();

  return () => {
    stopTyping();
    clearInterval(minute);
    document.removeEventListener('click', closeMenu);
    document.removeEventListener('keydown', onKey);
    store.removeEventListener('conv', onConv);
    store.removeEventListener('typing', onTyping);
    store.removeEventListener('presence', onPresence);
    store.removeEventListener('contacts', onContacts);
    store.removeEventListener('blocks', onBlocks);
    document.removeEventListener('visibilitychange', onVisible);
    window.removeEventListener('focus', onVisible);
    if (store.openPeer === peerId) store.openPeer = null;
  };
}

/** Make `parent`'s children exactly `nodes`, touching only what differs (appends stay appends). */
function patchChildren(parent, nodes) {
  let cur = parent.firstChild;
  for (const n of nodes) {
    if (cur === n) { cur = cur.nextSibling; continue; }
    parent.insertBefore(n, cur);
  }
  while (cur) {
    const next = cur.nextSibling;
    cur.remove();
    cur = next;
  }
}
