// Call history (GET /api/calls): who, direction, voice/video, when; missed calls in red. Each row
// can call back.
import { h, mount, icon, avatar, iconButton } from './dom.js';
import { store } from './store.js';
import { api, ApiError } from './api.js';
import { calls } from './call.js';
import { listStamp, duration } from './time.js';

export function renderCallHistory(root, { openChat }) {
  const list = h('ul', { class: 'flex-1 overflow-y-auto scroll-thin', role: 'list', 'aria-label': 'Call history' });
  mount(root, h('div', { class: 'px-4 pt-3 pb-2' }, h('h1', { class: 'text-[22px] font-bold text-wa-text' }, 'Calls')), list);

  const load = async () => {
    let items;
    try {
      items = await api('GET', '/api/calls?limit=100');
    } catch (e) {
      mount(list, h('li', { class: 'px-8 py-12 text-center text-sm text-wa-muted' }, e instanceof ApiError && e.status === 404 ? 'Call history is not available on this server yet.' : 'Could not load call history.'));
      return;
    }
    if (!items.length) {
      mount(list, h('li', { class: 'px-8 py-12 text-center text-sm text-wa-muted' }, 'No calls yet. Start one from a chat or a contact.'));
      return;
    }
    mount(list, items.map((it) => {
      const peer = it.peer || {};
      if (peer.id) store.rememberUser(peer);
      const name = peer.id ? store.nameOf(peer.id) : 'Deleted account';
      const missed = it.status === 'missed' && it.direction === 'incoming';
      const dirIcon = it.direction === 'incoming' ? 'callIn' : 'callOut';
      const color = missed || it.status === 'failed' ? 'text-wa-danger' : it.status === 'answered' ? 'text-wa-green' : 'text-wa-muted';
      const label = { missed: it.direction === 'incoming' ? 'Missed' : 'No answer', declined: 'Declined', answered: it.direction === 'incoming' ? 'Incoming' : 'Outgoing', cancelled: 'Cancelled', failed: 'Failed' }[it.status] || it.status;
      const len = it.answered_at && it.ended_at ? ` · ${duration(Date.parse(it.ended_at) - Date.parse(it.answered_at))}` : '';
      return h('li', { 'data-testid': 'call-item', 'data-call-id': it.id, 'data-status': it.status, 'data-direction': it.direction, class: 'flex items-center gap-3 pl-3 pr-2 hover:bg-wa-panel' },
        h('button', { type: 'button', class: 'flex-1 min-w-0 flex items-center gap-3 text-left', 'aria-label': `${label} ${it.kind} call, ${name}`, onclick: () => peer.id && openChat(peer.id) },
          avatar({ url: peer.avatar_url, name, seed: peer.id }, 'w-12 h-12'),
          h('div', { class: 'flex-1 min-w-0 py-3 border-b border-wa-line' },
            h('div', { class: `truncate text-[17px] ${missed ? 'text-wa-danger' : 'text-wa-text'}` }, name),
            h('div', { class: 'flex items-center gap-1 text-sm text-wa-muted' },
              h('span', { class: color }, icon(dirIcon, 'w-4 h-4')),
              h('span', { class: 'truncate' }, `${label}${len} · ${listStamp(it.started_at)}`)))),
        peer.id ? iconButton(it.kind === 'video' ? 'video' : 'phone', `Call ${name} back`, { class: 'p-2 rounded-full text-wa-green-dark hover:bg-black/5', onclick: () => calls.startCall(peer.id, it.kind) }) : null);
    }));
  };
  load();
  const onEnded = () => setTimeout(load, 500); // the server records the call as it ends
  calls.addEventListener('ended', onEnded);
  return () => calls.removeEventListener('ended', onEnded);
}
