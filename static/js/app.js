// Entry point: restores the session, then lays out the app. Two panes on wide screens (list +
// conversation); on phones one pane at a time, with the URL hash as the back-button-friendly route.
import { h, mount, icon, avatar, toast } from './dom.js';
import { auth } from './auth.js';
import { api } from './api.js';
import { realtime } from './ws.js';
import { store } from './store.js';
import { renderLogin } from './login.js';
import { renderChats } from './chats.js';
import { renderConversation, renderEmptyConversation } from './conversation.js';
import { renderContacts } from './contacts.js';
import { renderProfile } from './profile.js';
import { renderSettings } from './settings.js';
import { renderCallHistory } from './history.js';
import { notifier } from './notify.js';
import { calls } from './call.js';
import { callUi } from './callui.js';

const app = document.getElementById('app');
let cleanupLogin = null;
let shell = null; // {left, right, banner, header}
let leftCleanup = null;
let rightCleanup = null;
let current = { tab: null, peer: null };

// --- routing ------------------------------------------------------------------------------------
const TABS = ['chats', 'contacts', 'calls', 'settings', 'profile'];

function parseRoute() {
  const m = location.hash.match(/^#\/(\w+)(?:\/chat\/([^/?#]+))?/);
  const tab = m && TABS.includes(m[1]) ? m[1] : 'chats';
  const peer = m && m[2] ? decodeURIComponent(m[2]) : null;
  return { tab, peer };
}

export function navigate(tab, peer = current.peer) {
  const hash = `#/${tab}${peer ? `/chat/${encodeURIComponent(peer)}` : ''}`;
  if (location.hash === hash) render();
  else location.hash = hash;
}

export function openChat(peerId) {
  navigate(current.tab === 'chats' || current.tab === 'contacts' || current.tab === 'calls' ? current.tab : 'chats', peerId);
}

export function closeChat() {
  navigate(current.tab, null);
}

window.addEventListener('hashchange', () => { if (shell) render(); });

// --- layout --------------------------------------------------------------------------------------
function navButton(tab, iconName, label, testid) {
  return h('button', {
    type: 'button', 'data-testid': testid, 'aria-label': label, title: label, 'data-tab': tab,
    class: 'relative p-2 rounded-full hover:bg-black/10 md:hover:bg-black/5 aria-[current=page]:bg-white/20 md:aria-[current=page]:bg-black/10',
    onclick: () => navigate(tab, current.peer),
  }, icon(iconName, 'w-6 h-6'));
}

function buildShell() {
  const banner = h('div', { 'data-testid': 'connection-banner', role: 'status', 'aria-live': 'polite', hidden: true,
    class: 'shrink-0 flex items-center justify-center gap-3 px-4 py-2 text-sm bg-[#fff3c4] text-[#54656f] border-b border-[#f2e2a0]' });
  const meAvatar = h('button', { type: 'button', 'data-testid': 'nav-profile', 'aria-label': 'Profile', title: 'Profile', class: 'rounded-full', onclick: () => navigate('profile', current.peer) });
  // On phones the header is green, so the badge turns white there to stay visible.
  const unreadDot = h('span', { class: 'absolute -top-0.5 -right-0.5 min-w-4 h-4 px-1 rounded-full bg-white text-wa-green-dark md:bg-wa-green md:text-white text-[10px] leading-4 font-semibold text-center', hidden: true });
  const chatsBtn = navButton('chats', 'chat', 'Chats', 'nav-chats');
  chatsBtn.append(unreadDot);
  const header = h('header', { class: 'shrink-0 h-15 px-4 flex items-center justify-between bg-wa-green-dark text-white md:bg-wa-panel md:text-[#54656f]' },
    h('div', { class: 'flex items-center gap-3' }, meAvatar, h('span', { class: 'font-semibold text-lg md:hidden' }, 'Mescon')),
    h('nav', { class: 'flex items-center gap-1', 'aria-label': 'Main' },
      chatsBtn,
      navButton('contacts', 'contacts', 'Contacts', 'nav-contacts'),
      navButton('calls', 'phone', 'Calls', 'nav-calls'),
      navButton('settings', 'settings', 'Settings', 'nav-settings')));
  const leftBody = h('div', { class: 'flex-1 min-h-0 flex flex-col' });
  const left = h('aside', { class: 'w-full md:w-[380px] lg:w-[420px] shrink-0 flex flex-col bg-white md:border-r border-wa-line min-h-0', 'aria-label': 'Chats and settings' }, header, leftBody);
  const right = h('main', { class: 'flex-1 min-w-0 flex-col min-h-0 bg-wa-panel' });
  const root = h('div', { class: 'h-full flex flex-col md:p-0 lg:bg-[linear-gradient(#00a884_0,#00a884_127px,#dadbd3_127px)] lg:py-5 lg:px-5' },
    h('div', { class: 'flex-1 min-h-0 flex flex-col w-full max-w-[1600px] mx-auto bg-white lg:shadow-lg overflow-hidden' },
      banner,
      h('div', { class: 'flex-1 min-h-0 flex' }, left, right)));
  mount(app, root);
  shell = { left, leftBody, right, banner, meAvatar, unreadDot, nav: header.querySelector('nav') };
  renderMeAvatar();
}

function renderMeAvatar() {
  if (!shell || !store.me) return;
  shell.meAvatar.dataset.userId = store.me.id;
  mount(shell.meAvatar, avatar({ url: store.me.avatar_url, name: store.me.display_name || store.me.phone, seed: store.me.id }, 'w-10 h-10', 'text-base'));
}

function renderUnreadDot() {
  if (!shell) return;
  const n = store.totalUnread();
  shell.unreadDot.hidden = n === 0 || current.tab === 'chats';
  shell.unreadDot.textContent = n > 99 ? '99+' : String(n);
}

function render() {
  const route = parseRoute();
  const tabChanged = route.tab !== current.tab;
  const peerChanged = route.peer !== current.peer;
  current = route;
  for (const b of shell.nav.querySelectorAll('[data-tab]')) {
    if (b.dataset.tab === route.tab) b.setAttribute('aria-current', 'page'); else b.removeAttribute('aria-current');
  }
  // Phones show one pane: the list, or the open conversation.
  shell.left.classList.toggle('hidden', !!route.peer);
  shell.left.classList.toggle('md:flex', true);
  shell.left.classList.toggle('flex', !route.peer);
  shell.right.classList.toggle('hidden', !route.peer);
  shell.right.classList.toggle('md:flex', true);
  shell.right.classList.toggle('flex', !!route.peer);
  if (tabChanged || !leftCleanup) {
    leftCleanup?.();
    const ctx = { navigate, openChat, closeChat };
    const view = { chats: renderChats, contacts: renderContacts, calls: renderCallHistory, settings: renderSettings, profile: renderProfile }[route.tab];
    leftCleanup = view(shell.leftBody, ctx);
  }
  if (peerChanged || !rightCleanup) {
    rightCleanup?.();
    rightCleanup = route.peer ? renderConversation(shell.right, route.peer, { closeChat, navigate }) : renderEmptyConversation(shell.right);
    store.openPeer = route.peer;
  }
  renderUnreadDot();
}

// --- connection banner ------------------------------------------------------------------------------
let bannerDelay = null;
let bannerTick = null;
function updateBanner() {
  if (!shell) return;
  clearTimeout(bannerDelay);
  clearInterval(bannerTick);
  const state = realtime.state;
  if (state === 'ready' || state === 'idle') { shell.banner.hidden = true; return; }
  const show = () => {
    const retryNow = h('button', { type: 'button', class: 'font-medium text-wa-green-dark underline underline-offset-2', onclick: () => realtime.kick() }, 'Retry now');
    const text = h('span', {});
    const refresh = () => {
      const secs = Math.max(0, Math.ceil(((realtime.nextRetryAt || 0) - Date.now()) / 1000));
      text.textContent = realtime.state === 'connecting' ? 'Connecting…' : secs > 0 ? `Not connected. Retrying in ${secs} s…` : 'Not connected. Reconnecting…';
    };
    refresh();
    bannerTick = setInterval(refresh, 500);
    mount(shell.banner, icon('bell', 'w-4 h-4 text-[#c69a00]'), text, retryNow);
    shell.banner.hidden = false;
  };
  // A quick reconnect should not flash the banner; a first connection that fails shows it at once.
  if (realtime.everReady) bannerDelay = setTimeout(show, 1200); else bannerDelay = setTimeout(show, 2500);
}

// --- session lifecycle ----------------------------------------------------------------------------
async function startSession() {
  cleanupLogin?.();
  cleanupLogin = null;
  mount(app, h('div', { class: 'h-full flex items-center justify-center text-wa-muted' }, 'Loading…'));
  let me = auth.user;
  try { me = await api('GET', '/api/me'); } catch (e) { if (!me) { showLogin(); return; } }
  auth.user = me;
  await store.start(me);
  buildShell();
  render();
  realtime.start();
  calls.start();
  callUi.start();
  notifier.start();
}

function showLogin(reason) {
  realtime.stop();
  calls.stop?.();
  shell = null;
  leftCleanup?.(); rightCleanup?.();
  leftCleanup = rightCleanup = null;
  current = { tab: null, peer: null };
  cleanupLogin = renderLogin(app);
  if (reason === 'expired') toast('Your session ended. Please sign in again.', 'error');
}

realtime.addEventListener('frame', (e) => {
  store.onFrame(e.detail);
  calls.onFrame(e.detail);
});
realtime.addEventListener('state', updateBanner);
realtime.addEventListener('retry', updateBanner);
realtime.addEventListener('state', (e) => {
  if (e.detail === 'ready') calls.onReconnect();
  if (e.detail === 'offline') store.onDisconnected();
});

store.addEventListener('convs', renderUnreadDot);
store.addEventListener('me', renderMeAvatar);

auth.onChange((kind, reason) => {
  if (kind === 'signedIn') startSession();
  if (kind === 'signedOut') showLogin(reason);
});

// Boot: the HttpOnly refresh cookie (if any) restores the session without a login.
(async () => {
  mount(app, h('div', { class: 'h-full flex flex-col items-center justify-center gap-4 bg-wa-panel text-wa-muted' },
    h('div', { class: 'w-14 h-14 rounded-full bg-wa-green text-white flex items-center justify-center' }, icon('chat', 'w-7 h-7')),
    h('div', { class: 'text-sm' }, 'Mescon')));
  // An unreachable server is not a logged-out user: keep retrying so an offline reload still
  // comes back to the chats (and its outbox) instead of the login screen.
  for (let attempt = 0; ; attempt++) {
    const ok = await auth.refresh();
    if (ok) return; // the signedIn listener starts the session
    if (auth.refreshDenied || attempt > 0 && navigator.onLine && attempt > 30) break;
    if (attempt === 1) {
      mount(app, h('div', { class: 'h-full flex flex-col items-center justify-center gap-3 bg-wa-panel text-wa-muted', 'data-testid': 'connection-banner', role: 'status' },
        h('div', { class: 'w-14 h-14 rounded-full bg-wa-green text-white flex items-center justify-center' }, icon('chat', 'w-7 h-7')),
        h('div', { class: 'text-sm' }, 'Cannot reach the server. Retrying…')));
    }
    await new Promise((r) => setTimeout(r, Math.min(5000, 500 * (attempt + 1))));
  }
  showLogin();
})();
