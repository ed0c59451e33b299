// Login: phone number, then the one-time code. Shows the resend countdown the server asks for
// (`resend_after`) and explains failures, including rate limits with their Retry-After.
import { h, mount, icon } from './dom.js';
import { auth } from './auth.js';
import { ApiError, describeError } from './api.js';

export function renderLogin(root) {
  let phone = '';
  let countdownTimer = null;
  let blockedTimer = null;

  const shell = (card) => h('div', { class: 'min-h-full flex flex-col bg-wa-panel' },
    h('div', { class: 'bg-wa-green-dark h-40 sm:h-56 w-full shrink-0' }),
    h('main', { class: 'flex-1 -mt-28 sm:-mt-40 px-3 pb-10 flex justify-center' },
      h('div', { class: 'w-full max-w-md' },
        h('div', { class: 'flex items-center gap-2 text-white mb-6 px-1' },
          h('div', { class: 'w-9 h-9 rounded-full bg-white/15 flex items-center justify-center' }, icon('chat', 'w-5 h-5')),
          h('span', { class: 'text-lg font-medium tracking-wide' }, 'MESCON')),
        card)));

  const card = (...children) => h('section', { class: 'bg-white rounded-2xl shadow-xl p-7 sm:p-9' }, ...children);

  const errorBox = () => h('p', { role: 'alert', 'data-testid': 'login-error', class: 'text-sm text-wa-danger min-h-5 mt-3', hidden: true });

  const showError = (box, text) => { box.textContent = text; box.hidden = !text; };

  const input = (attrs) => h('input', {
    class: 'w-full border-b-2 border-wa-line focus:border-wa-green outline-none py-2 text-lg tracking-wide bg-transparent transition-colors text-wa-text normal-case',
    ...attrs,
  });

  const primary = (attrs, label) => h('button', {
    class: 'w-full mt-6 py-3 rounded-full bg-wa-green text-white font-medium hover:bg-wa-green-dark disabled:opacity-50 disabled:cursor-not-allowed transition-colors',
    ...attrs,
  }, label);

  /** Disable `btn` for `seconds`, showing a live countdown in `label`. */
  function holdOff(btn, seconds, labelFn, done) {
    clearInterval(blockedTimer);
    let left = seconds;
    btn.disabled = true;
    const tick = () => {
      if (left <= 0) { clearInterval(blockedTimer); btn.disabled = false; done(); return; }
      btn.textContent = labelFn(left);
      left--;
    };
    tick();
    blockedTimer = setInterval(tick, 1000);
  }

  function phoneStep(initial = '', initialError = '') {
    clearInterval(countdownTimer);
    const err = errorBox();
    const phoneInput = input({ type: 'tel', name: 'phone', autocomplete: 'tel', inputmode: 'tel', placeholder: '+1 555 123 4567', 'data-testid': 'login-phone', 'aria-label': 'Phone number', required: true, value: initial });
    const send = primary({ type: 'submit', 'data-testid': 'login-send' }, 'Next');
    const form = h('form', { novalidate: true, onsubmit: async (e) => {
      e.preventDefault();
      const value = phoneInput.value.trim();
      if (!value) { showError(err, 'Enter your phone number.'); phoneInput.focus(); return; }
      send.disabled = true;
      showError(err, '');
      try {
        const r = await auth.requestOtp(value);
        phone = value;
        codeStep(r?.resend_after ?? 30);
      } catch (e2) {
        if (e2 instanceof ApiError && e2.status === 422) showError(err, 'That does not look like a phone number. Include the country code, e.g. +1 555 123 4567.');
        else if (e2 instanceof ApiError && e2.status === 429) {
          showError(err, describeError(e2));
          holdOff(send, e2.retryAfter || 30, (s) => `Wait ${s} s`, () => { send.textContent = 'Next'; showError(err, ''); });
          return;
        } else showError(err, describeError(e2));
        send.disabled = false;
      }
    } },
    h('h1', { class: 'text-2xl font-light text-wa-text mb-2' }, 'Sign in to Mescon'),
    h('p', { class: 'text-sm text-wa-muted mb-7' }, 'Enter your phone number. We will send you a 6-digit code to confirm it is yours.'),
    h('label', { class: 'block text-xs font-medium text-wa-green-dark uppercase tracking-wider' }, 'Phone number', phoneInput),
    err, send);
    mount(root, shell(card(form)));
    if (initialError) showError(err, initialError);
    phoneInput.focus();
  }

  function codeStep(resendAfter) {
    const err = errorBox();
    const codeInput = input({ type: 'text', name: 'code', autocomplete: 'one-time-code', inputmode: 'numeric', pattern: '[0-9]*', maxlength: 6, placeholder: '••••••', 'data-testid': 'login-code', 'aria-label': 'Verification code', class: 'w-full border-b-2 border-wa-line focus:border-wa-green outline-none py-2 text-3xl tracking-[0.5em] text-center bg-transparent font-mono text-wa-text' });
    const verify = primary({ type: 'submit', 'data-testid': 'login-verify' }, 'Verify');
    const resend = h('button', { type: 'button', 'data-testid': 'login-resend', class: 'text-sm font-medium text-wa-green-dark disabled:text-wa-muted disabled:cursor-default', disabled: true });
    const startCountdown = (secs) => {
      clearInterval(countdownTimer);
      let left = secs;
      resend.disabled = true;
      const tick = () => {
        if (left <= 0) { clearInterval(countdownTimer); resend.disabled = false; resend.textContent = 'Resend code'; return; }
        resend.textContent = `Resend code in 0:${String(left).padStart(2, '0')}`;
        if (left >= 60) resend.textContent = `Resend code in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
        left--;
      };
      tick();
      countdownTimer = setInterval(tick, 1000);
    };
    resend.addEventListener('click', async () => {
      resend.disabled = true;
      showError(err, '');
      try {
        const r = await auth.requestOtp(phone);
        startCountdown(r?.resend_after ?? 30);
        codeInput.value = '';
        codeInput.focus();
      } catch (e) {
        if (e instanceof ApiError && e.status === 429) startCountdown(e.retryAfter || 30);
        else resend.disabled = false;
        showError(err, describeError(e));
      }
    });
    codeInput.addEventListener('input', () => { codeInput.value = codeInput.value.replace(/\D/g, '').slice(0, 6); });
    const form = h('form', { novalidate: true, onsubmit: async (e) => {
      e.preventDefault();
      const code = codeInput.value.trim();
      if (!/^\d{6}$/.test(code)) { showError(err, 'Enter the 6-digit code.'); codeInput.focus(); return; }
      verify.disabled = true;
      showError(err, '');
      try {
        clearInterval(countdownTimer);
        // Permission prompts need a user gesture; this click is the natural one.
        if ('Notification' in window && Notification.permission === 'default') Notification.requestPermission().catch(() => {});
        await auth.verify(phone, code); // app.js re-renders on signedIn
      } catch (e2) {
        verify.disabled = false;
        if (e2 instanceof ApiError && e2.status === 401) showError(err, 'That code is not right. Check it and try again.');
        else if (e2 instanceof ApiError && e2.status === 429) showError(err, e2.retryAfter ? `Too many wrong codes. Request a new code in ${e2.retryAfter} s.` : 'Too many wrong codes. Request a new code.');
        else showError(err, describeError(e2));
        codeInput.select();
      }
    } },
    h('button', { type: 'button', class: 'flex items-center gap-1 text-sm text-wa-muted hover:text-wa-text mb-4 -ml-1', onclick: () => phoneStep(phone) }, icon('back', 'w-4 h-4'), 'Wrong number?'),
    h('h1', { class: 'text-2xl font-light text-wa-text mb-2' }, 'Enter code'),
    h('p', { class: 'text-sm text-wa-muted mb-7' }, 'We sent a 6-digit code to ', h('span', { class: 'font-medium text-wa-text' }, phone), '.'),
    h('label', { class: 'block text-xs font-medium text-wa-green-dark uppercase tracking-wider' }, 'Code', codeInput),
    err, verify,
    h('div', { class: 'text-center mt-5' }, resend));
    mount(root, shell(card(form)));
    startCountdown(resendAfter);
    codeInput.focus();
  }

  phoneStep();
  return () => { clearInterval(countdownTimer); clearInterval(blockedTimer); };
}
