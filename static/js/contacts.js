// Private address book: add (phone + name), rename, delete (with undo), search, and start a chat or
// a call with contacts that have a Mescon account.
import { h, mount, icon, avatar, iconButton, toast } from './dom.js';
import { store } from './store.js';
import { api, ApiError, describeError } from './api.js';
import { calls } from './call.js';

let prefill = null;

/** Open the add form pre-filled, e.g. from "Add to contacts" in a chat with an unsaved number. */
export function prefillContact(phone, name = '') {
  prefill = { phone, name };
}

export function renderContacts(root, { openChat }) {
  let editingId = null;
  let formOpen = false;

  const search = h('input', { type: 'search', placeholder: 'Search contacts', 'aria-label': 'Search contacts', 'data-testid': 'contacts-search',
    class: 'w-full bg-wa-panel rounded-lg pl-11 pr-3 py-2 text-sm outline-none focus:ring-2 focus:ring-wa-green/40 placeholder:text-wa-muted' });
  const formSlot = h('div', {});
  const list = h('ul', { class: 'flex-1 overflow-y-auto scroll-thin', role: 'list', 'aria-label': 'Contacts' });
  const addBtn = h('button', { type: 'button', 'data-testid': 'contact-add', class: 'w-full flex items-center gap-4 px-4 py-3 hover:bg-wa-panel text-left', onclick: () => openForm() },
    h('span', { class: 'w-12 h-12 rounded-full bg-wa-green text-white flex items-center justify-center' }, icon('plus', 'w-6 h-6')),
    h('span', { class: 'text-[17px] text-wa-text' }, 'New contact'));

  mount(root,
    h('div', { class: 'px-4 pt-3 pb-2' }, h('h1', { class: 'text-[22px] font-bold text-wa-text' }, 'Contacts')),
    h('div', { class: 'px-3 pb-2 relative' },
      h('span', { class: 'absolute left-7 top-2.5 text-wa-muted pointer-events-none' }, icon('search', 'w-4 h-4')),
      search),
    h('div', { class: 'flex-1 min-h-0 flex flex-col overflow-y-auto scroll-thin' }, addBtn, formSlot, list));

  function openForm(initial = prefill || { phone: '', name: '' }) {
    prefill = null;
    formOpen = true;
    const err = h('p', { role: 'alert', class: 'text-sm text-wa-danger', hidden: true });
    const phone = h('input', { type: 'tel', 'data-testid': 'contact-phone', 'aria-label': 'Phone number', placeholder: 'Phone number, e.g. +1 555 123 4567', value: initial.phone, required: true,
      class: 'w-full border-b-2 border-wa-line focus:border-wa-green outline-none py-2 bg-transparent text-base text-wa-text normal-case tracking-normal font-normal' });
    const name = h('input', { type: 'text', 'data-testid': 'contact-name', 'aria-label': 'Name', placeholder: 'Name', value: initial.name, maxlength: 64, required: true,
      class: 'w-full border-b-2 border-wa-line focus:border-wa-green outline-none py-2 bg-transparent text-base text-wa-text normal-case tracking-normal font-normal' });
    const save = h('button', { type: 'submit', 'data-testid': 'contact-save', class: 'px-5 py-2 rounded-full bg-wa-green text-white font-medium hover:bg-wa-green-dark disabled:opacity-50' }, 'Save');
    const form = h('form', { class: 'mx-3 my-2 p-4 rounded-xl bg-wa-panel/60 border border-wa-line flex flex-col gap-3', 'aria-label': 'New contact', onsubmit: async (e) => {
      e.preventDefault();
      err.hidden = true;
      if (!phone.value.trim() || !name.value.trim()) { err.textContent = 'Enter a phone number and a name.'; err.hidden = false; return; }
      save.disabled = true;
      try {
        await api('POST', '/api/contacts', { json: { phone: phone.value.trim(), name: name.value.trim() } });
        await store.loadContacts();
        closeForm();
        toast('Contact saved');
      } catch (e2) {
        save.disabled = false;
        err.textContent = e2 instanceof ApiError && e2.status === 409 ? 'This number is already in your contacts.'
          : e2 instanceof ApiError && e2.status === 422 ? (e2.message || 'That phone number or name is not valid.') : describeError(e2);
        err.hidden = false;
      }
    } },
    h('label', { class: 'text-xs font-medium text-wa-green-dark uppercase tracking-wider' }, 'Phone', phone),
    h('label', { class: 'text-xs font-medium text-wa-green-dark uppercase tracking-wider' }, 'Name', name),
    err,
    h('div', { class: 'flex justify-end gap-2' },
      h('button', { type: 'button', class: 'px-4 py-2 rounded-full text-wa-green-dark font-medium hover:bg-black/5', onclick: closeForm }, 'Cancel'),
      save));
    mount(formSlot, form);
    (initial.phone ? name : phone).focus();
  }

  function closeForm() {
    formOpen = false;
    mount(formSlot);
  }

  async function remove(c) {
    try {
      await api('DELETE', `/api/contacts/${encodeURIComponent(c.id)}`);
      await store.loadContacts();
      // Deleting is immediate; the toast offers an undo that re-creates the same entry.
      const undo = h('button', { type: 'button', class: 'ml-3 font-semibold text-[#7ae3c3]', onclick: async () => {
        try { await api('POST', '/api/contacts', { json: { phone: c.phone, name: c.name } }); await store.loadContacts(); } catch (e) { toast(describeError(e), 'error'); }
      } }, 'Undo');
      const t = h('span', {}, `${c.name} deleted`, undo);
      toastNode(t);
    } catch (e) { toast(describeError(e), 'error'); }
  }

  async function rename(c, newName) {
    try {
      await api('PATCH', `/api/contacts/${encodeURIComponent(c.id)}`, { json: { name: newName } });
      editingId = null;
      await store.loadContacts();
    } catch (e) { toast(describeError(e), 'error'); }
  }

  const row = (c) => {
    const uid = c.user?.id || '';
    const name = c.name || c.user?.display_name || c.phone;
    if (editingId === c.id) {
      const input = h('input', { type: 'text', value: c.name, 'data-testid': 'contact-rename-input', 'aria-label': `New name for ${c.name}`, maxlength: 64, class: 'flex-1 min-w-0 border-b-2 border-wa-green outline-none py-1 bg-transparent' });
      const li = h('li', { 'data-testid': 'contact-item', 'data-user-id': uid, 'data-contact-id': c.id, class: 'flex items-center gap-3 px-4 py-2' },
        avatar({ url: c.user?.avatar_url, name, seed: uid || c.phone }, 'w-12 h-12'),
        h('form', { class: 'flex-1 flex items-center gap-2', onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) rename(c, input.value.trim()); } },
          input,
          iconButton('check', 'Save name', { type: 'submit', 'data-testid': 'contact-rename-save' }),
          iconButton('close', 'Cancel', { onclick: () => { editingId = null; draw(); } })));
      setTimeout(() => { input.focus(); input.select(); });
      return li;
    }
    const canChat = !!uid && uid !== store.me.id;
    return h('li', { 'data-testid': 'contact-item', 'data-user-id': uid, 'data-contact-id': c.id, class: 'group flex items-center gap-3 pl-4 pr-2 hover:bg-wa-panel' },
      avatar({ url: c.user?.avatar_url, name, seed: uid || c.phone }, 'w-12 h-12'),
      h('div', { class: 'flex-1 min-w-0 py-3 border-b border-wa-line' },
        h('div', { class: 'truncate text-[17px] text-wa-text' }, name),
        h('div', { class: 'truncate text-sm text-wa-muted' }, c.user ? (c.user.display_name && c.user.display_name !== c.name ? `${c.phone} · ~${c.user.display_name}` : c.phone) : `${c.phone} · not on Mescon yet`)),
      h('div', { class: 'flex items-center text-[#54656f]' },
        canChat ? iconButton('chat', `Message ${name}`, { 'data-testid': 'contact-message', onclick: () => openChat(uid) }) : null,
        canChat ? iconButton('phone', `Voice call ${name}`, { 'data-testid': 'contact-call-audio', class: 'hidden sm:block p-2 rounded-full text-[#54656f] hover:bg-black/5', onclick: () => calls.startCall(uid, 'audio') }) : null,
        canChat ? iconButton('video', `Video call ${name}`, { 'data-testid': 'contact-call-video', class: 'hidden sm:block p-2 rounded-full text-[#54656f] hover:bg-black/5', onclick: () => calls.startCall(uid, 'video') }) : null,
        iconButton('edit', `Rename ${name}`, { 'data-testid': 'contact-rename', onclick: () => { editingId = c.id; draw(); } }),
        iconButton('trash', `Delete ${name}`, { 'data-testid': 'contact-delete', onclick: () => remove(c) })));
  };

  function draw() {
    const q = search.value.trim().toLowerCase();
    const digits = q.replace(/\D/g, '');
    const shown = store.contacts.filter((c) => !q || c.name.toLowerCase().includes(q) || (c.user?.display_name || '').toLowerCase().includes(q) || (digits && c.phone.replace(/\D/g, '').includes(digits)));
    if (!shown.length) {
      mount(list, h('li', { class: 'px-8 py-12 text-center text-sm text-wa-muted' }, q ? 'No contacts match your search.' : 'No contacts yet. Add someone by their phone number.'));
      return;
    }
    const onMescon = shown.filter((c) => c.user);
    const others = shown.filter((c) => !c.user);
    mount(list,
      onMescon.length ? h('li', { class: 'px-6 pt-4 pb-2 text-sm text-wa-green-dark' }, 'Contacts on Mescon') : null,
      onMescon.map(row),
      others.length ? h('li', { class: 'px-6 pt-4 pb-2 text-sm text-wa-muted' }, 'Not on Mescon yet') : null,
      others.map(row));
  }

  search.addEventListener('input', draw);
  store.addEventListener('contacts', draw);
  draw();
  if (prefill) openForm();
  return () => store.removeEventListener('contacts', draw);
}

function toastNode(node) {
  const root = document.getElementById('overlay-root') || document.body;
  const el = h('div', { role: 'status', class: 'fixed left-1/2 -translate-x-1/2 bottom-24 z-[100] px-4 py-2.5 rounded-lg shadow-lg text-sm text-white bg-[#3b4a54] flex items-center' }, node);
  root.append(el);
  setTimeout(() => el.remove(), 6000);
}
