// Own profile: display name and picture. A chosen picture previews at once (blob: URL) and uploads
// right away; the server re-encodes it, and its answer replaces the preview.
import { h, mount, icon, avatar, toast } from './dom.js';
import { store } from './store.js';
import { auth } from './auth.js';
import { api, ApiError, describeError } from './api.js';

const MAX_BYTES = 5 * 1024 * 1024;
const TYPES = ['image/png', 'image/jpeg', 'image/webp'];

export function renderProfile(root, { navigate }) {
  let previewUrl = null;
  const me = () => store.me;

  const picture = h('div', { class: 'relative w-48 h-48 rounded-full overflow-hidden group' });
  const fileInput = h('input', { type: 'file', accept: TYPES.join(','), 'data-testid': 'profile-avatar-input', class: 'sr-only', id: 'profile-avatar-input', 'aria-label': 'Choose profile picture' });
  const status = h('p', { class: 'text-xs text-wa-muted min-h-4 text-center', 'aria-live': 'polite' });
  const removeBtn = h('button', { type: 'button', 'data-testid': 'profile-avatar-remove', class: 'text-sm text-wa-danger hover:underline', onclick: removePicture }, 'Remove photo');

  const drawPicture = () => {
    const url = previewUrl || me().avatar_url;
    mount(picture,
      url ? h('img', { src: url, alt: 'Your profile picture', 'data-testid': 'profile-avatar-preview', class: 'w-full h-full object-cover' })
        : avatar({ url: null, name: me().display_name || me().phone, seed: me().id }, 'w-full h-full', 'text-6xl'),
      h('label', { for: 'profile-avatar-input', class: 'absolute inset-0 flex flex-col items-center justify-center gap-1 bg-black/40 text-white text-xs uppercase tracking-wide opacity-0 group-hover:opacity-100 focus-within:opacity-100 transition-opacity cursor-pointer' },
        icon('camera', 'w-7 h-7'), url ? 'Change photo' : 'Add photo'));
    removeBtn.hidden = !me().avatar_url;
  };

  fileInput.addEventListener('change', async () => {
    const file = fileInput.files?.[0];
    fileInput.value = '';
    if (!file) return;
    if (!TYPES.includes(file.type)) { toast('Choose a PNG, JPEG or WebP picture.', 'error'); return; }
    if (file.size > MAX_BYTES) { toast('That picture is larger than 5 MB.', 'error'); return; }
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    drawPicture();
    status.textContent = 'Uploading…';
    try {
      const p = await api('PUT', '/api/me/avatar', { body: file, headers: { 'Content-Type': file.type } });
      setMe(p);
      status.textContent = 'Photo updated';
    } catch (e) {
      status.textContent = '';
      toast(e instanceof ApiError && (e.status === 415 || e.status === 422) ? 'That file is not an image the server can read.' : e instanceof ApiError && e.status === 413 ? 'That picture is too large.' : describeError(e), 'error');
    } finally {
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = null;
      drawPicture();
    }
  });

  async function removePicture() {
    try {
      setMe(await api('DELETE', '/api/me/avatar'));
      drawPicture();
      status.textContent = 'Photo removed';
    } catch (e) { toast(describeError(e), 'error'); }
  }

  const nameInput = h('input', { type: 'text', 'data-testid': 'profile-name', 'aria-label': 'Your name', maxlength: 64, value: me().display_name || '', placeholder: 'Your name',
    class: 'flex-1 min-w-0 border-b-2 border-wa-line focus:border-wa-green outline-none py-2 text-[17px] bg-transparent' });
  const saveBtn = h('button', { type: 'submit', 'data-testid': 'profile-save', class: 'shrink-0 px-5 py-2 rounded-full bg-wa-green text-white font-medium hover:bg-wa-green-dark disabled:opacity-50' }, 'Save');
  const nameErr = h('p', { role: 'alert', class: 'text-sm text-wa-danger', hidden: true });
  const form = h('form', { class: 'flex flex-col gap-2', onsubmit: async (e) => {
    e.preventDefault();
    nameErr.hidden = true;
    const value = nameInput.value.trim();
    if (!value) { nameErr.textContent = 'Your name cannot be empty.'; nameErr.hidden = false; return; }
    saveBtn.disabled = true;
    try {
      setMe(await api('PATCH', '/api/me', { json: { display_name: value } }));
      toast('Profile saved');
    } catch (e2) {
      nameErr.textContent = describeError(e2);
      nameErr.hidden = false;
    } finally { saveBtn.disabled = false; }
  } },
  h('label', { class: 'text-sm text-wa-green-dark', for: 'profile-name' }, 'Your name'),
  h('div', { class: 'flex items-end gap-3' }, nameInput, saveBtn),
  nameErr,
  h('p', { class: 'text-xs text-wa-muted mt-1' }, 'This name is shown to people who do not have you in their contacts.'));
  nameInput.id = 'profile-name';

  mount(root,
    h('div', { class: 'flex items-center gap-4 px-4 pt-3 pb-2' },
      h('button', { type: 'button', 'aria-label': 'Back to chats', class: 'p-1 -ml-1 rounded-full text-[#54656f] hover:bg-black/5', onclick: () => navigate('chats') }, icon('back', 'w-6 h-6')),
      h('h1', { class: 'text-[22px] font-bold text-wa-text' }, 'Profile')),
    h('div', { class: 'flex-1 overflow-y-auto scroll-thin bg-wa-panel/50' },
      h('div', { class: 'flex flex-col items-center gap-3 py-7 bg-white' }, picture, fileInput, status, removeBtn),
      h('div', { class: 'mt-2 px-7 py-5 bg-white' }, form),
      h('div', { class: 'mt-2 px-7 py-5 bg-white' },
        h('div', { class: 'text-sm text-wa-green-dark mb-1' }, 'Phone'),
        h('div', { class: 'text-[17px] text-wa-text', 'data-testid': 'profile-phone' }, me().phone))));
  drawPicture();
  return () => { if (previewUrl) URL.revokeObjectURL(previewUrl); };
}

function setMe(p) {
  store.me = p;
  auth.user = p;
  store.emit('me');
}
