// Settings: notifications, blocked users, log out (this device or everywhere), delete account.
import { h, mount, icon, avatar, toast, confirmDialog } from './dom.js';
import { store } from './store.js';
import { auth } from './auth.js';
import { api, describeError } from './api.js';

export function renderSettings(root, { navigate }) {
  const blockedList = h('ul', { class: 'divide-y divide-wa-line', 'aria-label': 'Blocked users' });
  const notifyState = h('span', { class: 'text-sm text-wa-muted' });

  const drawNotify = () => {
    if (!('Notification' in window)) { notifyState.textContent = 'Not supported by this browser'; return; }
    notifyState.textContent = { granted: 'On', denied: 'Blocked in browser settings', default: 'Off' }[Notification.permission];
  };

  const drawBlocked = () => {
    if (!store.blocks.length) { mount(blockedList, h('li', { class: 'py-3 text-sm text-wa-muted' }, 'No blocked contacts.')); return; }
    mount(blockedList, store.blocks.map((p) => h('li', { 'data-testid': 'blocked-item', 'data-user-id': p.id, class: 'flex items-center gap-3 py-2' },
      avatar({ url: p.avatar_url, name: store.nameOf(p.id), seed: p.id }, 'w-10 h-10', 'text-base'),
      h('div', { class: 'flex-1 min-w-0' }, h('div', { class: 'truncate' }, store.nameOf(p.id)), h('div', { class: 'truncate text-xs text-wa-muted' }, p.phone || '')),
      h('button', { type: 'button', 'data-testid': 'unblock', class: 'px-3 py-1.5 rounded-full text-sm text-wa-green-dark font-medium hover:bg-wa-panel', onclick: async () => {
        try { await api('DELETE', `/api/blocks/${encodeURIComponent(p.id)}`); await store.loadBlocks(); toast('Unblocked'); } catch (e) { toast(describeError(e), 'error'); }
      } }, 'Unblock'))));
  };

  const row = (iconName, label, attrs = {}, extra = null, danger = false) => h('button', { type: 'button', class: `w-full flex items-center gap-5 px-6 py-4 text-left hover:bg-wa-panel ${danger ? 'text-wa-danger' : 'text-wa-text'}`, ...attrs },
    h('span', { class: danger ? 'text-wa-danger' : 'text-[#8696a0]' }, icon(iconName, 'w-5 h-5')),
    h('span', { class: 'flex-1 text-[16px]' }, label), extra);

  const section = (title, ...children) => h('section', { class: 'mt-2 bg-white' }, title ? h('h2', { class: 'px-6 pt-4 pb-1 text-sm text-wa-green-dark' }, title) : null, ...children);

  mount(root,
    h('div', { class: 'px-4 pt-3 pb-2' }, h('h1', { class: 'text-[22px] font-bold text-wa-text' }, 'Settings')),
    h('div', { class: 'flex-1 overflow-y-auto scroll-thin bg-wa-panel/50' },
      h('button', { type: 'button', class: 'w-full flex items-center gap-4 px-5 py-4 bg-white hover:bg-wa-panel text-left', onclick: () => navigate('profile') },
        avatar({ url: store.me.avatar_url, name: store.me.display_name || store.me.phone, seed: store.me.id }, 'w-16 h-16', 'text-2xl'),
        h('div', { class: 'min-w-0' }, h('div', { class: 'text-lg truncate' }, store.me.display_name || 'Set your name'), h('div', { class: 'text-sm text-wa-muted' }, store.me.phone))),
      section('Notifications',
        row('bell', 'Desktop notifications', { 'data-testid': 'notifications-toggle', onclick: async () => {
          if ('Notification' in window && Notification.permission === 'default') await Notification.requestPermission();
          drawNotify();
        } }, notifyState)),
      section('Privacy', h('div', { class: 'px-6 pb-3' }, h('div', { class: 'text-sm text-wa-muted pt-1 pb-1' }, 'Blocked contacts'), blockedList)),
      section('Account',
        row('logout', 'Log out', { 'data-testid': 'logout', onclick: () => auth.logout(false) }),
        row('lock', 'Log out on all devices', { 'data-testid': 'logout-all', onclick: async () => {
          if (await confirmDialog({ title: 'Log out on all devices?', body: 'Every browser and app signed in to this account, including this one, will need to sign in again.', ok: 'Log out everywhere' })) auth.logout(true);
        } }),
        row('trash', 'Delete my account', { 'data-testid': 'delete-account', onclick: async () => {
          const ok = await confirmDialog({ title: 'Delete your account?', body: 'Your profile, picture, contacts and sessions are deleted for good. Messages you sent stay visible to the people who received them, shown as from a deleted account.', ok: 'Delete account', danger: true });
          if (!ok) return;
          try { await api('DELETE', '/api/me'); localStorage.removeItem(`mescon.outbox.${store.me.id}`); auth.signedOut('logout'); } catch (e) { toast(describeError(e), 'error'); }
        } }, null, true)),
      h('p', { class: 'px-6 py-6 text-xs text-wa-muted text-center' }, 'Mescon · self-hosted chat and calls')));
  drawNotify();
  drawBlocked();
  store.addEventListener('blocks', drawBlocked);
  store.loadBlocks();
  return () => store.removeEventListener('blocks', drawBlocked);
}
