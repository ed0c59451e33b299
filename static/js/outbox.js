// Messages typed while offline (or not yet acknowledged) survive reloads here. Only what is needed
// to resend is stored: recipient, text and the idempotency key client_id, never tokens.

function key(userId) { return `mescon.outbox.${userId}`; }

export class Outbox {
  constructor(userId) {
    this.userId = userId;
    this.items = [];
    try { this.items = JSON.parse(localStorage.getItem(key(userId)) || '[]'); } catch { this.items = []; }
    // A reload interrupts any in-flight attempt; everything not failed is pending again.
    for (const it of this.items) if (it.state !== 'failed') it.state = 'pending';
  }

  save() {
    try { localStorage.setItem(key(this.userId), JSON.stringify(this.items)); } catch { /* quota: keep in memory */ }
  }

  add(to, body) {
    const item = { client_id: crypto.randomUUID(), to, body, created_at: new Date().toISOString(), state: 'pending' };
    this.items.push(item);
    this.save();
    return item;
  }

  get(clientId) { return this.items.find((i) => i.client_id === clientId); }

  forPeer(peerId) { return this.items.filter((i) => i.to === peerId); }

  remove(clientId) {
    const before = this.items.length;
    this.items = this.items.filter((i) => i.client_id !== clientId);
    if (this.items.length !== before) this.save();
    return this.items.length !== before;
  }

  setState(clientId, state, error) {
    const it = this.get(clientId);
    if (!it) return;
    it.state = state;
    if (error) it.error = error; else delete it.error;
    this.save();
  }

  pending() { return this.items.filter((i) => i.state === 'pending'); }
}
