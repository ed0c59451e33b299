// Chats list: one row per conversation, most recent first, with the peer's avatar and name (from the
// address book when saved), a preview of the last message, its relative time and an unread badge.
import { h, mount, icon, avatar, ticks } from './dom.js';
import { store } from './store.js';
import { listStamp } from './time.js';

export function renderChats(root, { openChat, navigate }) {
  const search = h('input', { type: 'search', placeholder: 'Search or start a new chat', 'aria-label': 'Search chats', 'data-testid': 'chats-search',
    class: 'w-full bg-wa-panel rounded-lg pl-11 pr-3 py-2 text-sm outline-none focus:ring-2 focus:ring-wa-green/40 placeholder:text-wa-muted' });
  const list = h('ul', { class: 'flex-1 overflow-y-auto scroll-thin', role: 'list', 'aria-label': 'Chats' });
  mount(root,
    h('div', { class: 'px-4 pt-3 pb-2 flex items-center justify-between' },
      h('h1', { class: 'text-[22px] font-bold text-wa-text' }, 'Chats'),
      h('button', { type: 'button', 'aria-label': 'New chat', title: 'New chat', class: 'p-2 rounded-full text-[#54656f] hover:bg-black/5', onclick: () => navigate('contacts', null) }, icon('plus'))),
    h('div', { class: 'px-3 pb-2 relative' },
      h('span', { class: 'absolute left-7 top-2.5 text-wa-muted pointer-events-none' }, icon('search', 'w-4 h-4')),
      search),
    list);

  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const rows = store.chatList().filter(({ conv }) => !q || store.nameOf(conv.peerId).toLowerCase().includes(q) || (store.profile(conv.peerId)?.phone || '').includes(q));
    if (!rows.length) {
      mount(list, h('li', { class: 'px-8 py-16 text-center text-sm text-wa-muted' },
        q ? 'No chats match your search.' : h('div', {},
          h('p', { class: 'mb-3' }, 'No chats yet.'),
          h('button', { type: 'button', class: 'px-4 py-2 rounded-full bg-wa-green text-white font-medium hover:bg-wa-green-dark', onclick: () => navigate('contacts', null) }, 'Start a chat'))));
      return;
    }
    mount(list, rows.map(({ conv, at, preview }) => chatRow(conv, at, preview, openChat)));
  };
  search.addEventListener('input', draw);
  const onConvs = () => draw();
  store.addEventListener('convs', onConvs);
  store.addEventListener('contacts', onConvs);
  store.addEventListener('typing', onConvs);
  const minute = setInterval(draw, 60_000); // "Today" becomes "Yesterday" at midnight
  draw();
  return () => {
    store.removeEventListener('convs', onConvs);
    store.removeEventListener('contacts', onConvs);
    store.removeEventListener('typing', onConvs);
    clearInterval(minute);
  };
}

function chatRow(conv, at, preview, openChat) {
  const p = store.profile(conv.peerId);
  const name = store.nameOf(conv.peerId);
  const active = store.openPeer === conv.peerId;
  const unread = conv.unread || 0;
  let previewNode;
  if (conv.typing) {
    previewNode = h('span', { class: 'text-wa-green font-medium' }, 'typing…');
  } else if (preview) {
    previewNode = h('span', { class: 'flex items-center gap-1 min-w-0' },
      preview.mine ? ticks(preview.status) : null,
      h('span', { class: 'truncate' }, preview.body));
  }
  return h('li', {},
    h('button', {
      type: 'button', 'data-testid': 'chat-item', 'data-peer-id': conv.peerId,
      'aria-label': `${name}${unread ? `, ${unread} unread` : ''}`, 'aria-current': active ? 'true' : null,
      class: `w-full flex items-center gap-3 pl-3 pr-4 text-left hover:bg-wa-panel focus:outline-none focus-visible:bg-wa-panel focus-visible:ring-2 focus-visible:ring-inset focus-visible:ring-wa-green/60 ${active ? 'bg-[#f0f2f5]' : ''}`,
      onclick: () => openChat(conv.peerId),
    },
    avatar({ url: p?.avatar_url, name, seed: conv.peerId }, 'w-12 h-12'),
    h('div', { class: 'flex-1 min-w-0 py-3 border-b border-wa-line' },
      h('div', { class: 'flex items-baseline justify-between gap-2' },
        h('span', { class: 'truncate text-[17px] text-wa-text', 'data-testid': 'chat-name' }, name),
        h('span', { class: `shrink-0 text-xs ${unread ? 'text-wa-green font-medium' : 'text-wa-muted'}` }, listStamp(at))),
      h('div', { class: 'flex items-center justify-between gap-2 mt-0.5' },
        h('span', { class: 'text-sm text-wa-muted min-w-0 flex-1 truncate flex' }, previewNode || ''),
        unread ? h('span', { 'data-testid': 'unread-badge', 'aria-label': `${unread} unread messages`, class: 'shrink-0 min-w-5 h-5 px-1.5 rounded-full bg-wa-green text-white text-xs font-semibold flex items-center justify-center' }, unread > 999 ? '999+' : String(unread)) : null))));
}
