// Attention while the tab is hidden: a browser notification per new message or incoming call, and
// the unread count in the tab title ("(3) Mescon").
import { store } from './store.js';

const BASE_TITLE = 'Mescon';

export const notifier = {
  started: false,
  start() {
    if (this.started) { this.updateTitle(); return; }
    this.started = true;
    store.addEventListener('convs', () => this.updateTitle());
    store.addEventListener('incoming', (e) => {
      const { peerId, message } = e.detail;
      if (document.visibilityState === 'visible' && document.hasFocus()) return;
      this.show(store.nameOf(peerId), message.body, `msg-${peerId}`, () => { location.hash = `#/chats/chat/${encodeURIComponent(peerId)}`; });
    });
    document.addEventListener('visibilitychange', () => this.updateTitle());
    this.updateTitle();
  },

  updateTitle() {
    const n = store.totalUnread();
    document.title = n ? `(${n}) ${BASE_TITLE}` : BASE_TITLE;
  },

  show(title, body, tag, onClick) {
    if (!('Notification' in window) || Notification.permission !== 'granted') return null;
    try {
      const n = new Notification(title, { body, tag, icon: '/favicon.svg' });
      n.onclick = () => { window.focus(); onClick?.(); n.close(); };
      return n;
    } catch { return null; } // some platforms only allow notifications from a service worker
  },
};
