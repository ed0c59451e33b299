import { api } from './api.js'; // api.js imports this module too; both only call each other at run time

// Session state. The access token lives only in this module's memory (never localStorage); the
// refresh token is the HttpOnly `mescon_refresh` cookie, so a page load restores the session with
// POST /api/auth/refresh and nothing readable by scripts is persisted.

let accessToken = null;
let expiresAt = 0;
let refreshTimer = null;
let inflight = null;
const listeners = new Set();

export const auth = {
  user: null,

  onChange(fn) { listeners.add(fn); return () => listeners.delete(fn); },

  get signedIn() { return !!accessToken; },

  /** A usable access token, refreshing first when it is about to expire. */
  async token() {
    if (accessToken && Date.now() < expiresAt - 15_000) return accessToken;
    if (accessToken) await this.refresh();
    return accessToken;
  },

  /**
   * Rotate the refresh cookie for a new token pair. Concurrent callers share one request, and tabs
   * are serialised with a Web Lock: refresh tokens work once, and two tabs racing with the same
   * cookie would trip the server's reuse detection and revoke the session.
   */
  refresh() {
    if (inflight) return inflight;
    const run = async () => {
      try {
        const res = await fetch('/api/auth/refresh', {
          method: 'POST', credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json' }, body: '{}',
        });
        // 401/403 means the refresh cookie is dead; anything else (5xx, 429) is transient.
        this.refreshDenied = res.status === 401 || res.status === 403;
        if (!res.ok) return false;
        this.setSession(await res.json());
        return true;
      } catch {
        this.refreshDenied = false;
        return false; // offline: keep the current token; the caller decides what to do
      }
    };
    const locked = navigator.locks ? () => navigator.locks.request('mescon-refresh', run) : run;
    inflight = locked().finally(() => { inflight = null; });
    return inflight;
  },

  setSession(data) {
    const wasSignedIn = !!accessToken;
    accessToken = data.access_token;
    expiresAt = Date.now() + (Number(data.expires_in) || 900) * 1000;
    if (data.user) this.user = data.user;
    clearTimeout(refreshTimer);
    // Refresh at ~80% of the lifetime so a long-lived tab never presents an expired token.
    const lifetime = expiresAt - Date.now();
    refreshTimer = setTimeout(() => this.refresh(), Math.max(10_000, lifetime * 0.8));
    if (!wasSignedIn) emit('signedIn');
    else emit('refreshed');
  },

  signedOut(reason = 'logout') {
    const was = !!accessToken;
    accessToken = null;
    expiresAt = 0;
    this.user = null;
    clearTimeout(refreshTimer);
    if (was) emit('signedOut', reason);
  },

  async requestOtp(phone) {
    return api('POST', '/api/auth/otp', { json: { phone }, authed: false });
  },

  async verify(phone, code) {
    const data = await api('POST', '/api/auth/verify', { json: { phone, code }, authed: false });
    this.setSession(data);
    return data.user;
  },

  async logout(everywhere = false) {
    // Unsent messages are dropped on an explicit logout so no text stays behind in this browser.
    if (this.user) localStorage.removeItem(`mescon.outbox.${this.user.id}`);
    try {
      if (everywhere) await api('POST', '/api/auth/logout-all', { json: {} });
      // The cookie names this session; logout-all may already have revoked it, which is fine.
      await fetch('/api/auth/logout', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json', ...(accessToken ? { Authorization: `Bearer ${accessToken}` } : {}) }, body: '{}' }).catch(() => {});
    } finally {
      this.signedOut('logout');
    }
  },
};

function emit(kind, arg) {
  for (const fn of listeners) {
    try { fn(kind, arg); } catch (e) { console.error(e); }
  }
}
