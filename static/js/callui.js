// Call screens: the incoming-call prompt, and one floating call window that can be dragged (pointer
// events cover mouse, pen and touch), resized, minimized to a bubble and maximized, so the user can
// keep chatting during a call. The video elements are created once per call and only restyled, so
// playback never restarts when the window changes shape.
import { h, mount, icon, avatar, toast } from './dom.js';
import { calls } from './call.js';
import { store } from './store.js';
import { duration } from './time.js';
import { notifier } from './notify.js';

const MIN_W = 240, MIN_H = 300;
const BUBBLE = 96;
const MARGIN = 12;

// The local preview is a small picture-in-picture once the peer's video shows, and fills the
// window (dimmed, behind the peer's name) while the call is ringing or connecting.
const LOCAL_PIP = 'mirror absolute top-14 right-3 w-24 aspect-[3/4] object-cover rounded-lg shadow-lg bg-black border border-white/20 z-10';
const LOCAL_FULL = 'mirror absolute inset-0 w-full h-full object-cover bg-black';

const STATUS_TEXT = {
  inviting: 'Calling…', ringing: 'Ringing…', incoming: 'Incoming call', connecting: 'Connecting…', active: '',
};
const END_TEXT = { answered_elsewhere: 'Answered on another device', hangup: 'Call ended', declined: 'Call declined', timeout: 'No answer', busy: 'Busy', cancelled: 'Call cancelled', failed: 'Call failed' };

class CallUi {
  constructor() {
    this.started = false;
    this.incomingEl = null;
    this.win = null;
    this.mode = 'normal';
    this.geom = null; // {x, y, w, h} of the normal window
    this.bubblePos = null;
    this.tick = null;
  }

  start() {
    if (this.started) return;
    this.started = true;
    calls.addEventListener('change', () => this.sync());
    calls.addEventListener('tracks', () => this.updateVideos());
    calls.addEventListener('quality', () => this.updateQuality());
    calls.addEventListener('incoming', (e) => {
      const c = e.detail;
      if (document.visibilityState !== 'visible') {
        notifier.show(store.nameOf(c.peerId), c.kind === 'video' ? 'Incoming video call' : 'Incoming voice call', `call-${c.id}`);
        this.flashTitle(`Call from ${store.nameOf(c.peerId)}`);
      }
    });
    calls.addEventListener('ended', (e) => this.showEnded(e.detail));
    calls.addEventListener('missed', (e) => {
      const c = e.detail;
      toast(`Missed ${c.kind === 'video' ? 'video' : 'voice'} call from ${store.nameOf(c.peerId)}`);
      if (document.visibilityState !== 'visible') notifier.show(store.nameOf(c.peerId), 'Missed call', `missed-${c.id}`);
    });
    window.addEventListener('resize', () => this.place());
  }

  flashTitle(text) {
    const orig = document.title;
    let on = false;
    clearInterval(this.titleTimer);
    this.titleTimer = setInterval(() => {
      if (!calls.call || calls.call.state !== 'incoming') { clearInterval(this.titleTimer); notifier.updateTitle(); return; }
      on = !on;
      document.title = on ? text : orig;
    }, 1000);
  }

  sync() {
    const c = calls.call;
    if (c && c.state === 'incoming') this.showIncoming(c); else this.hideIncoming();
    if (c && c.state !== 'incoming') this.showWindow(c);
    else if (!c && this.win && !this.win.ending) this.closeWindow();
    if (this.win && c) this.updateWindow(c);
  }

  // --- incoming ------------------------------------------------------------------------------------
  showIncoming(c) {
    if (this.incomingEl?.dataset.callId === c.id) return;
    this.hideIncoming();
    const name = store.nameOf(c.peerId);
    const p = store.profile(c.peerId);
    this.incomingEl = h('div', { 'data-testid': 'incoming-call', 'data-call-id': c.id, role: 'alertdialog', 'aria-label': `Incoming ${c.kind} call from ${name}`,
      class: 'fixed z-[90] inset-0 sm:inset-auto sm:top-6 sm:left-1/2 sm:-translate-x-1/2 sm:w-[380px] sm:rounded-2xl bg-[#0b141a] text-white shadow-2xl flex flex-col items-center justify-center gap-6 p-8' },
    h('div', { class: 'text-sm text-white/70 flex items-center gap-2' }, icon(c.kind === 'video' ? 'video' : 'phone', 'w-4 h-4'), c.kind === 'video' ? 'Incoming video call' : 'Incoming voice call'),
    h('div', { class: 'rounded-full ring-pulse' }, avatar({ url: p?.avatar_url, name, seed: c.peerId }, 'w-28 h-28', 'text-4xl')),
    h('div', { class: 'text-2xl font-light text-center break-all' }, name),
    h('div', { class: 'flex items-center gap-16 mt-2' },
      h('div', { class: 'flex flex-col items-center gap-2' },
        h('button', { type: 'button', 'data-testid': 'incoming-decline', 'aria-label': 'Decline', class: 'w-16 h-16 rounded-full bg-wa-danger text-white flex items-center justify-center hover:brightness-110', onclick: () => calls.decline() }, icon('hangup', 'w-7 h-7')),
        h('span', { class: 'text-xs text-white/70' }, 'Decline')),
      h('div', { class: 'flex flex-col items-center gap-2' },
        h('button', { type: 'button', 'data-testid': 'incoming-accept', 'aria-label': 'Accept', class: 'w-16 h-16 rounded-full bg-wa-green text-white flex items-center justify-center hover:brightness-110', onclick: () => calls.accept() }, icon(c.kind === 'video' ? 'video' : 'phone', 'w-7 h-7')),
        h('span', { class: 'text-xs text-white/70' }, 'Accept'))));
    document.getElementById('overlay-root').append(this.incomingEl);
    this.incomingEl.querySelector('[data-testid="incoming-accept"]').focus();
  }

  hideIncoming() {
    this.incomingEl?.remove();
    this.incomingEl = null;
  }

  // --- call window ---------------------------------------------------------------------------------
  showWindow(c) {
    if (this.win && this.win.callRef === c) return;
    this.closeWindow();
    const name = store.nameOf(c.peerId);
    const p = store.profile(c.peerId);
    const isVideo = c.kind === 'video';
    const phone = window.matchMedia('(max-width: 639px)').matches;
    this.mode = phone ? 'maximized' : 'normal';

    const remoteVideo = h('video', { 'data-testid': 'remote-video', autoplay: true, playsinline: true, class: 'absolute inset-0 w-full h-full object-cover bg-[#0b141a]' });
    remoteVideo.srcObject = c.remote;
    // The size the peer's video is shown at decides the largest layer worth receiving.
    this.viewObserver?.disconnect();
    this.viewObserver = new ResizeObserver(([e]) => calls.setViewWidth(e.contentRect.width * devicePixelRatio));
    this.viewObserver.observe(remoteVideo);
    const localVideo = h('video', { 'data-testid': 'local-video', autoplay: true, playsinline: true, muted: true, class: LOCAL_PIP });
    localVideo.muted = true; // never play our own microphone back
    const bigStatus = h('div', { class: 'text-white/80 text-sm' });
    const peerAvatar = avatar({ url: p?.avatar_url, name, seed: c.peerId }, 'w-24 h-24', 'text-3xl');
    const peerName = h('div', { class: 'text-white text-xl font-light text-center px-4 break-all' }, name);
    const peerFace = h('div', { class: 'absolute inset-0 z-[5] flex flex-col items-center justify-center gap-3 bg-gradient-to-b from-[#1f2c33] to-[#0b141a] pointer-events-none' },
      peerAvatar, peerName, bigStatus);
    const status = h('div', { 'data-testid': 'call-status', class: 'text-xs text-white/80' });
    const dur = h('span', { 'data-testid': 'call-duration', class: 'tabular-nums' });
    const quality = h('span', { 'data-testid': 'call-quality', class: 'flex items-end gap-0.5 h-3', role: 'img', 'aria-label': 'Connection quality' },
      h('span', { class: 'w-1 h-1 rounded-sm bg-white/40' }), h('span', { class: 'w-1 h-2 rounded-sm bg-white/40' }), h('span', { class: 'w-1 h-3 rounded-sm bg-white/40' }));
    const ctl = (testid, iconName, label, onclick, cls = 'bg-white/15 hover:bg-white/25 aria-pressed:bg-white aria-pressed:text-[#0b141a]') => h('button', { type: 'button', 'data-testid': testid, 'aria-label': label, title: label, class: `w-12 h-12 rounded-full flex items-center justify-center text-white ${cls}`, onclick }, icon(iconName, 'w-5 h-5'));
    const muteBtn = ctl('call-mute', 'mic', 'Mute', () => calls.toggleMute());
    const camBtn = ctl('call-camera', 'video', 'Turn camera off', () => calls.toggleCamera());
    const devMenu = h('div', { class: 'absolute bottom-20 left-1/2 -translate-x-1/2 z-30 w-64 max-h-64 overflow-y-auto bg-white text-wa-text rounded-xl shadow-2xl py-2 text-sm', hidden: true, role: 'menu' });
    const switchBtn = ctl('call-switch', 'switch', 'Switch microphone or camera', (e) => { e.stopPropagation(); this.toggleDeviceMenu(); });
    const hangBtn = ctl('call-hangup', 'hangup', 'Hang up', () => calls.hangup(), 'bg-wa-danger hover:brightness-110');
    const minBtn = h('button', { type: 'button', 'data-testid': 'call-minimize', 'aria-label': 'Minimize call', title: 'Minimize', class: 'p-1.5 rounded-full text-white hover:bg-white/20', onclick: () => this.setMode('minimized') }, icon('minimize', 'w-4 h-4'));
    const maxBtn = h('button', { type: 'button', 'data-testid': 'call-maximize', 'aria-label': 'Maximize call', title: 'Maximize', class: 'p-1.5 rounded-full text-white hover:bg-white/20', onclick: () => this.setMode(this.mode === 'maximized' ? 'normal' : this.mode === 'minimized' ? 'normal' : 'maximized') }, icon('maximize', 'w-4 h-4'));
    const bubbleLabel = h('div', { class: 'absolute bottom-1 left-0 right-0 text-center text-[11px] font-medium text-white drop-shadow tabular-nums pointer-events-none' });
    const topBar = h('div', { class: 'absolute top-0 inset-x-0 z-20 flex items-center gap-2 px-3 py-2 bg-gradient-to-b from-black/60 to-transparent text-white cursor-move select-none', 'data-drag': 'true' },
      h('div', { class: 'flex-1 min-w-0' }, h('div', { class: 'truncate text-sm font-medium' }, name), h('div', { class: 'flex items-center gap-2' }, status, dur, quality)),
      minBtn, maxBtn);
    const controls = h('div', { class: 'absolute bottom-0 inset-x-0 z-20 flex items-center justify-center gap-3 px-3 pt-8 pb-4 bg-gradient-to-t from-black/60 to-transparent' }, muteBtn, isVideo ? camBtn : null, switchBtn, hangBtn);
    const resize = h('div', { 'data-testid': 'call-resize', 'aria-hidden': 'true', class: 'absolute bottom-0 right-0 z-30 w-5 h-5 cursor-nwse-resize touch-none', title: 'Resize' },
      h('div', { class: 'absolute bottom-1 right-1 w-2.5 h-2.5 border-r-2 border-b-2 border-white/70 rounded-br-sm' }));

    const win = h('section', { 'data-testid': 'call-window', 'data-kind': c.kind, role: 'dialog', 'aria-label': `${isVideo ? 'Video' : 'Voice'} call with ${name}`,
      class: 'fixed z-[80] overflow-hidden bg-[#0b141a] shadow-2xl touch-none select-none' },
    remoteVideo, peerFace, isVideo ? localVideo : null, topBar, controls, devMenu, bubbleLabel, resize);
    win.callRef = c;
    Object.assign(this, { win, remoteVideo, localVideo, peerFace, bigStatus, peerAvatar, peerName, status, dur, quality, muteBtn, camBtn, maxBtn, minBtn, topBar, controls, resize, bubbleLabel, devMenu });
    document.getElementById('overlay-root').append(win);
    this.enableDrag(win);
    this.enableResize(resize);
    this.docClick = () => { devMenu.hidden = true; };
    this.docKey = (e) => { if (e.key === 'Escape') devMenu.hidden = true; };
    document.addEventListener('click', this.docClick);
    document.addEventListener('keydown', this.docKey);
    this.setMode(this.mode);
    clearInterval(this.tick);
    this.tick = setInterval(() => this.updateClock(), 1000);
    this.updateVideos();
  }

  setMode(mode) {
    this.mode = mode;
    const w = this.win;
    if (!w) return;
    w.dataset.mode = mode;
    const mini = mode === 'minimized';
    w.classList.toggle('rounded-2xl', mode === 'normal');
    w.classList.toggle('rounded-full', mini);
    w.classList.toggle('ring-4', mini);
    w.classList.toggle('ring-wa-green', mini);
    w.classList.toggle('cursor-pointer', mini);
    this.topBar.hidden = mini;
    this.controls.hidden = mini;
    this.resize.hidden = mode !== 'normal';
    this.bubbleLabel.hidden = !mini;
    // In the bubble only a smaller avatar fits; the name and status come back with the window.
    this.peerName.hidden = mini;
    this.bigStatus.hidden = mini;
    this.peerAvatar.classList.toggle('scale-[0.6]', mini);
    this.peerAvatar.classList.toggle('-translate-y-2', mini);
    if (this.localVideo) this.localVideo.hidden = mini || calls.call?.kind !== 'video';
    // In the bubble, the maximize button becomes a small "expand" badge so it is always reachable.
    if (mini) {
      this.maxBtn.remove();
      this.maxBtn.className = 'absolute top-1.5 left-1/2 -translate-x-1/2 z-30 p-1 rounded-full bg-black/50 text-white hover:bg-black/70';
      this.win.append(this.maxBtn);
    } else if (this.maxBtn.parentElement === this.win) {
      this.maxBtn.remove();
      this.maxBtn.className = 'p-1.5 rounded-full text-white hover:bg-white/20';
      this.minBtn.after(this.maxBtn);
    }
    this.maxBtn.setAttribute('aria-label', mode === 'maximized' ? 'Restore call window' : mini ? 'Expand call' : 'Maximize call');
    this.maxBtn.title = mode === 'maximized' ? 'Restore' : mini ? 'Expand' : 'Maximize';
    mount(this.maxBtn, icon(mode === 'maximized' ? 'restore' : 'maximize', mini ? 'w-3 h-3' : 'w-4 h-4'));
    this.place();
    this.updateVideos();
  }

  /** Apply the geometry of the current mode, clamped into the viewport. */
  place() {
    const w = this.win;
    if (!w) return;
    const vw = window.innerWidth, vh = window.innerHeight;
    let g;
    if (this.mode === 'maximized') {
      g = { x: 0, y: 0, w: vw, h: vh };
    } else if (this.mode === 'minimized') {
      const b = this.bubblePos || { x: vw - BUBBLE - 24, y: vh - BUBBLE - 100 };
      g = { x: b.x, y: b.y, w: BUBBLE, h: BUBBLE };
    } else {
      if (!this.geom) {
        const ww = Math.min(360, vw - 2 * MARGIN), hh = Math.min(520, vh - 2 * MARGIN);
        this.geom = { x: vw - ww - 24, y: Math.max(MARGIN, Math.min(72, vh - hh - MARGIN)), w: ww, h: hh };
      }
      g = this.geom;
    }
    g.w = Math.min(g.w, vw);
    g.h = Math.min(g.h, vh);
    g.x = Math.min(Math.max(0, g.x), vw - g.w);
    g.y = Math.min(Math.max(0, g.y), vh - g.h);
    Object.assign(w.style, { left: `${g.x}px`, top: `${g.y}px`, width: `${g.w}px`, height: `${g.h}px` });
    w.dataset.x = Math.round(g.x); w.dataset.y = Math.round(g.y); w.dataset.w = Math.round(g.w); w.dataset.h = Math.round(g.h);
  }

  enableDrag(win) {
    let start = null;
    win.addEventListener('pointerdown', (e) => {
      if (this.mode === 'maximized') return;
      if (e.button !== 0 && e.pointerType === 'mouse') return;
      if (e.target.closest('button, [data-testid="call-resize"], [role="menu"]')) return;
      const g = this.mode === 'minimized' ? { x: Number(win.dataset.x), y: Number(win.dataset.y) } : this.geom;
      start = { px: e.clientX, py: e.clientY, x: g.x, y: g.y, moved: false, id: e.pointerId };
      win.setPointerCapture(e.pointerId);
      e.preventDefault();
    });
    win.addEventListener('pointermove', (e) => {
      if (!start || e.pointerId !== start.id) return;
      const dx = e.clientX - start.px, dy = e.clientY - start.py;
      if (!start.moved && Math.hypot(dx, dy) < 4) return; // below this a tap is a click, not a drag
      start.moved = true;
      if (this.mode === 'minimized') this.bubblePos = { x: start.x + dx, y: start.y + dy };
      else { this.geom.x = start.x + dx; this.geom.y = start.y + dy; }
      this.place();
    });
    const end = (e) => {
      if (!start || e.pointerId !== start.id) return;
      const tapped = !start.moved;
      start = null;
      if (tapped && this.mode === 'minimized' && e.type === 'pointerup') this.setMode('normal');
    };
    win.addEventListener('pointerup', end);
    win.addEventListener('pointercancel', end);
  }

  enableResize(handle) {
    let start = null;
    handle.addEventListener('pointerdown', (e) => {
      start = { px: e.clientX, py: e.clientY, w: this.geom.w, h: this.geom.h, id: e.pointerId };
      handle.setPointerCapture(e.pointerId);
      e.preventDefault();
      e.stopPropagation();
    });
    handle.addEventListener('pointermove', (e) => {
      if (!start || e.pointerId !== start.id) return;
      this.geom.w = Math.max(MIN_W, start.w + e.clientX - start.px);
      this.geom.h = Math.max(MIN_H, start.h + e.clientY - start.py);
      this.place();
    });
    const end = () => { start = null; };
    handle.addEventListener('pointerup', end);
    handle.addEventListener('pointercancel', end);
  }

  async toggleDeviceMenu() {
    const menu = this.devMenu;
    if (!menu.hidden) { menu.hidden = true; return; }
    let devs;
    try { devs = await calls.devices(); } catch { devs = { audio: [], video: [] }; }
    const c = calls.call;
    const current = (kind) => c?.local?.[kind === 'audio' ? 'getAudioTracks' : 'getVideoTracks']()[0]?.getSettings().deviceId;
    const group = (title, kind, list) => list.length ? [
      h('div', { class: 'px-4 pt-2 pb-1 text-xs uppercase tracking-wide text-wa-muted' }, title),
      list.map((d, i) => h('button', { type: 'button', role: 'menuitemradio', 'aria-checked': String(d.deviceId === current(kind)), class: 'w-full text-left px-4 py-2 hover:bg-wa-panel flex items-center gap-2', onclick: async () => {
        menu.hidden = true;
        try { await calls.switchDevice(kind, d.deviceId); } catch { toast('Could not switch device.', 'error'); }
      } }, h('span', { class: 'w-4 text-wa-green' }, d.deviceId === current(kind) ? icon('check', 'w-4 h-4') : ''), d.label || `${title} ${i + 1}`)),
    ] : [];
    mount(menu, group('Microphone', 'audio', devs.audio), c?.kind === 'video' ? group('Camera', 'video', devs.video) : null);
    if (!menu.children.length) mount(menu, h('div', { class: 'px-4 py-2 text-wa-muted' }, 'No other devices'));
    menu.hidden = false;
  }

  updateWindow(c) {
    if (!this.win) return;
    this.win.dataset.state = c.state;
    this.status.textContent = STATUS_TEXT[c.state] ?? '';
    this.status.hidden = !this.status.textContent;
    this.bigStatus.textContent = c.state === 'active' ? (c.kind === 'video' ? '' : 'Voice call') : (STATUS_TEXT[c.state] ?? '');
    this.quality.hidden = c.state !== 'active';
    mount(this.muteBtn, icon(c.muted ? 'micOff' : 'mic', 'w-5 h-5'));
    this.muteBtn.setAttribute('aria-pressed', String(c.muted));
    this.muteBtn.setAttribute('aria-label', c.muted ? 'Unmute' : 'Mute');
    if (this.camBtn) {
      mount(this.camBtn, icon(c.cameraOff ? 'videoOff' : 'video', 'w-5 h-5'));
      this.camBtn.setAttribute('aria-pressed', String(c.cameraOff));
      this.camBtn.setAttribute('aria-label', c.cameraOff ? 'Turn camera on' : 'Turn camera off');
    }
    this.updateVideos();
    this.updateClock();
  }

  updateVideos() {
    const c = calls.call;
    if (!this.win || !c) return;
    if (this.localVideo && c.local && this.localVideo.srcObject !== c.local) this.localVideo.srcObject = c.local;
    const hasRemoteVideo = c.remote.getVideoTracks().some((t) => t.readyState === 'live');
    // Before the peer's video arrives (and in voice calls) show their avatar; the element stays so audio plays.
    this.peerFace.hidden = hasRemoteVideo && c.kind === 'video';
    if (this.localVideo) {
      const full = !hasRemoteVideo && this.mode !== 'minimized';
      this.localVideo.className = full ? LOCAL_FULL : LOCAL_PIP;
      this.localVideo.classList.toggle('opacity-0', !!c.cameraOff);
      // Over a full-size local preview the peer's name sits on a translucent scrim instead of the gradient.
      this.peerFace.classList.toggle('bg-gradient-to-b', !full);
      this.peerFace.classList.toggle('bg-black/45', full);
    }
    if (this.remoteVideo.srcObject !== c.remote) this.remoteVideo.srcObject = c.remote;
    this.remoteVideo.play?.().catch(() => {});
  }

  updateClock() {
    const c = calls.call;
    if (!this.win || !c) return;
    const since = c.connectedAt || (c.state === 'active' ? c.answeredAt : null);
    this.dur.textContent = since ? duration(Date.now() - since) : '';
    this.bubbleLabel.textContent = since ? duration(Date.now() - since) : (STATUS_TEXT[c.state] || '');
  }

  updateQuality() {
    const c = calls.call;
    if (!this.win || !c) return;
    const level = c.quality || 'connecting';
    this.quality.dataset.quality = level;
    const bars = [...this.quality.children];
    const lit = { good: 3, fair: 2, poor: 1 }[level] || 0;
    const color = { good: 'bg-[#25d366]', fair: 'bg-[#ffd279]', poor: 'bg-wa-danger' }[level];
    bars.forEach((b, i) => {
      b.className = `w-1 ${['h-1', 'h-2', 'h-3'][i]} rounded-sm ${i < lit ? color : 'bg-white/40'}`;
    });
    const ms = c.qualityInfo?.rtt != null ? `, ${Math.round(c.qualityInfo.rtt * 1000)} ms` : '';
    this.quality.setAttribute('aria-label', `Connection quality: ${level}${ms}`);
    this.quality.title = `Connection: ${level}${ms}`;
  }

  showEnded(c) {
    this.hideIncoming();
    if (!this.win || this.win.callRef !== c) return;
    clearInterval(this.tick);
    this.win.ending = true;
    this.win.dataset.state = 'ended';
    this.status.textContent = END_TEXT[c.endReason] || 'Call ended';
    this.status.hidden = false;
    this.controls.hidden = true;
    this.peerFace.hidden = false;
    const win = this.win;
    setTimeout(() => { if (this.win === win) this.closeWindow(); }, 1500);
  }

  closeWindow() {
    clearInterval(this.tick);
    this.viewObserver?.disconnect();
    this.viewObserver = null;
    if (this.docClick) document.removeEventListener('click', this.docClick);
    if (this.docKey) document.removeEventListener('keydown', this.docKey);
    if (this.win) {
      for (const v of this.win.querySelectorAll('video')) v.srcObject = null;
      this.win.remove();
    }
    this.win = null;
  }
}

export const callUi = new CallUi();
