// HTTP client for the Mescon API. Adds the bearer token, turns error bodies into ApiError, and on a
// 401 refreshes the session once and retries, so callers never deal with token expiry themselves.
import { auth } from './auth.js';

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || 'http_error';
    this.retryAfter = retryAfter; // seconds, only for 429
  }
}

/** Human text for an error, including rate limits ("Try again in 27 s"). */
export function describeError(err) {
  if (!(err instanceof ApiError)) return 'Cannot reach the server. Check your connection.';
  if (err.status === 429) {
    return err.retryAfter ? `Too many attempts. Try again in ${err.retryAfter} s.` : 'Too many attempts. Please wait a moment.';
  }
  if (err.status >= 500) return 'The server had a problem. Please try again.';
  return err.message;
}

async function parseError(res) {
  let code, message;
  try {
    const body = await res.json();
    code = body?.error?.code;
    message = body?.error?.message;
  } catch { /* non-JSON error body: keep the status only */ }
  const ra = res.headers.get('Retry-After');
  let retryAfter;
  if (ra) {
    // Retry-After is either delta-seconds or an HTTP date.
    retryAfter = /^\d+$/.test(ra) ? Number(ra) : Math.max(1, Math.ceil((Date.parse(ra) - Date.now()) / 1000));
  }
  return new ApiError(res.status, code, message, retryAfter);
}

/**
 * api('GET', '/api/me'); api('POST', '/api/contacts', {json: {...}});
 * api('PUT', '/api/me/avatar', {body: file, headers: {'Content-Type': file.type}})
 * Returns parsed JSON, or null for empty responses (204).
 */
export async function api(method, path, { json, body, headers = {}, authed = true, retried = false } = {}) {
  const h = { ...headers };
  if (json !== undefined) {
    h['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  if (authed) {
    const token = await auth.token();
    if (token) h.Authorization = `Bearer ${token}`;
  }
  let res;
  try {
    res = await fetch(path, { method, headers: h, body, credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, 'network', 'Cannot reach the server.');
  }
  if (res.status === 401 && authed && !retried) {
    // The access token may have expired early (server restart, revoked session): refresh once.
    if (await auth.refresh()) return api(method, path, { json, body: json === undefined ? body : undefined, headers, authed, retried: true });
    auth.signedOut('expired');
    throw await parseError(res);
  }
  if (!res.ok) throw await parseError(res);
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}
