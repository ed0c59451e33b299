// DOM helpers. The CSP forbids inline scripts/styles and the project forbids innerHTML, so every
// node is created here with createElement/textContent: user text can never become markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * h('button', {class: 'x', onclick: fn, 'data-testid': 'y'}, 'text', child, [more])
 * Attributes: `class`, `on<event>` handlers, `dataset`-style `data-*`, booleans (true = present,
 * false/null/undefined = absent), `style` objects (allowed: they go through CSSOM, not markup).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

function applyAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (k === 'style' && typeof v === 'object') {
      Object.assign(el.style, v);
    } else if (k === 'value' || k === 'checked' || k === 'muted' || k === 'srcObject') {
      el[k] = v; // properties, not attributes, so the live state is set
    } else if (k === 'ref' && typeof v === 'function') {
      v(el);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false || c === true) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replace all children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

// --- Icons -------------------------------------------------------------------------------------
// Simple 24x24 stroke icons drawn for this project (no icon font: the CSP allows only self).
const ICONS = {
  chat: ['M4 5h16v11H9l-5 4z'],
  contacts: ['M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z', 'M2 21c0-4 3-6 7-6s7 2 7 6', 'M17 4a4 4 0 0 1 0 7', 'M19 15c2 1 3 3 3 6'],
  phone: ['M5 3h4l2 5-3 2a12 12 0 0 0 6 6l2-3 5 2v4a2 2 0 0 1-2 2A18 18 0 0 1 3 5a2 2 0 0 1 2-2z'],
  video: ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3'],
  settings: ['M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6z', 'M19 12l2-1-2-4-2 1-2-2V4h-4v2L9 7 7 6 5 10l2 1v2l-2 1 2 4 2-1 2 1v2h4v-2l2-1 2 1 2-4-2-1z'],
  back: ['M15 5l-7 7 7 7'],
  send: ['M3 20l18-8L3 4l3 8z', 'M6 12h8'],
  plus: ['M12 5v14', 'M5 12h14'],
  search: ['M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14z', 'M16 16l5 5'],
  trash: ['M4 7h16', 'M9 7V4h6v3', 'M6 7l1 13h10l1-13'],
  edit: ['M4 20h4L19 9l-4-4L4 16z'],
  close: ['M6 6l12 12', 'M18 6L6 18'],
  check: ['M4 12l5 5L20 6'],
  mic: ['M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z', 'M5 11a7 7 0 0 0 14 0', 'M12 18v3'],
  micOff: ['M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z', 'M5 11a7 7 0 0 0 14 0', 'M12 18v3', 'M3 3l18 18'],
  videoOff: ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3', 'M2 3l20 18'],
  hangup: ['M3 14c5-5 13-5 18 0l-3 3-3-2v-3a10 10 0 0 0-6 0v3l-3 2z'],
  minimize: ['M5 19h14'],
  maximize: ['M4 4h16v16H4z'],
  restore: ['M8 8h12v12H8z', 'M4 16V4h12'],
  switch: ['M4 8h13l-3-3', 'M20 16H7l3 3'],
  camera: ['M4 7h4l2-2h4l2 2h4v12H4z', 'M12 16a3 3 0 1 0 0-6 3 3 0 0 0 0 6z'],
  block: ['M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z', 'M6 6l12 12'],
  logout: ['M10 4H5v16h5', 'M15 8l4 4-4 4', 'M19 12H9'],
  more: ['M12 6h.01', 'M12 12h.01', 'M12 18h.01'],
  callIn: ['M17 7L7 17', 'M7 9v8h8'],
  callOut: ['M7 17L17 7', 'M9 7h8v8'],
  bell: ['M6 17V11a6 6 0 0 1 12 0v6l2 2H4z', 'M10 21h4'],
  lock: ['M6 11h12v10H6z', 'M8 11V7a4 4 0 0 1 8 0v4'],
  user: ['M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8z', 'M4 21c0-4 4-7 8-7s8 3 8 7'],
};

export function icon(name, cls = 'w-5 h-5') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', cls);
  for (const d of ICONS[name] || []) {
    const p = document.createElementNS(SVG_NS, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  return svg;
}

/** Read receipt ticks: one grey tick = sent, two grey = delivered, two blue = read, clock = pending. */
export function ticks(status) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 18 12');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke-width', '1.6');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('class', 'w-4 h-3 inline-block shrink-0');
  const color = status === 'read' ? '#53bdeb' : status === 'failed' ? '#ea0038' : '#8696a0';
  svg.setAttribute('stroke', color);
  const paths = {
    pending: ['M9 1.5a4.5 4.5 0 1 0 0 9 4.5 4.5 0 0 0 0-9z', 'M9 3.5V6l1.8 1.2'],
    sent: ['M3 6.5l3 3 6.5-7'],
    delivered: ['M1.5 6.5l3 3 6.5-7', 'M7.5 9.5l6.5-7'],
    read: ['M1.5 6.5l3 3 6.5-7', 'M7.5 9.5l6.5-7'],
    failed: ['M9 1.5a4.5 4.5 0 1 0 0 9 4.5 4.5 0 0 0 0-9z', 'M9 3.5v3', 'M9 8.5h.01'],
  }[status] || [];
  for (const d of paths) {
    const p = document.createElementNS(SVG_NS, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  const label = { pending: 'Sending', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Not sent' }[status];
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label || status);
  return svg;
}

// --- Avatars -----------------------------------------------------------------------------------
const AVATAR_COLORS = ['#25d366', '#34b7f1', '#7f66ff', '#ff8a65', '#e5a00d', '#06cf9c', '#ef5da8', '#53bdeb', '#a0a0ff'];

function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 1);
  return letters.toUpperCase();
}

function colorFor(seed) {
  let x = 0;
  for (const ch of String(seed || '')) x = (x * 31 + ch.charCodeAt(0)) >>> 0;
  return AVATAR_COLORS[x % AVATAR_COLORS.length];
}

/** Round avatar: the user's picture when they have one, else coloured initials. */
export function avatar({ url, name, seed }, size = 'w-12 h-12', text = 'text-lg') {
  const wrap = h('div', { class: `${size} rounded-full shrink-0 overflow-hidden flex items-center justify-center text-white font-medium ${text} select-none`, 'aria-hidden': 'true' });
  wrap.style.backgroundColor = colorFor(seed || name);
  // Numbers-only names (no display name yet) get a person silhouette rather than a "+".
  const noLetters = !/\p{L}/u.test(String(name || ''));
  if (url) {
    const img = h('img', { src: url, alt: '', class: 'w-full h-full object-cover', loading: 'lazy', decoding: 'async' });
    // A broken picture (deleted account, network) falls back to initials instead of a broken icon.
    img.addEventListener('error', () => { img.remove(); wrap.textContent = initials(name); });
    wrap.append(img);
  } else if (noLetters) {
    wrap.style.backgroundColor = '#dfe5e7';
    wrap.append(icon('user', 'w-3/5 h-3/5 text-white'));
  } else {
    wrap.textContent = initials(name);
  }
  return wrap;
}

/** Short-lived toast at the bottom of the screen for errors and confirmations. */
export function toast(text, kind = 'info') {
  const root = document.getElementById('overlay-root') || document.body;
  const el = h('div', {
    role: kind === 'error' ? 'alert' : 'status',
    class: `fixed left-1/2 -translate-x-1/2 bottom-24 z-[100] pointer-events-none max-w-[90vw] px-4 py-2.5 rounded-lg shadow-lg text-sm text-white ${kind === 'error' ? 'bg-wa-danger' : 'bg-[#3b4a54]'}`,
  }, text);
  root.append(el);
  setTimeout(() => el.remove(), 4000);
}

/** Accessible confirm dialog built on <dialog>; resolves true/false. */
export function confirmDialog({ title, body, ok = 'OK', danger = false }) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'rounded-xl p-0 shadow-2xl backdrop:bg-black/40 w-[min(92vw,420px)] m-auto', 'aria-label': title });
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    append(dlg, [h('div', { class: 'p-6' },
      h('h2', { class: 'text-lg font-medium text-wa-text mb-2' }, title),
      body ? h('p', { class: 'text-sm text-wa-muted mb-6' }, body) : null,
      h('div', { class: 'flex justify-end gap-2' },
        h('button', { type: 'button', class: 'px-4 py-2 rounded-full text-wa-green-dark hover:bg-wa-panel font-medium', onclick: () => done(false) }, 'Cancel'),
        h('button', { type: 'button', 'data-testid': 'confirm-ok', class: `px-5 py-2 rounded-full text-white font-medium ${danger ? 'bg-wa-danger hover:brightness-95' : 'bg-wa-green hover:bg-wa-green-dark'}`, onclick: () => done(true) }, ok)))]);
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Small button with an icon and an accessible label (the label doubles as tooltip). */
export function iconButton(name, label, attrs = {}, cls = 'p-2 rounded-full text-[#54656f] hover:bg-black/5') {
  return h('button', { type: 'button', 'aria-label': label, title: label, class: cls, ...attrs }, icon(name));
}
