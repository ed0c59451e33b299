// Realtime connection: one WebSocket to /api/ws, authenticated by the first frame. Reconnects by
// itself (quick first retry, then backing off to at most every 5 s) and reports its state so the UI
// can show the connection banner and resync after every reconnect.
import { auth } from './auth.js';

const RETRY_DELAYS = [250, 1000, 2000, 3500, 5000]; // ms; the last one repeats

export class Realtime extends EventTarget {
  constructor() {
    super();
    this.sock = null;
    this.state = 'idle'; // idle | connecting | ready | offline
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.everReady = false;
    window.addEventListener('online', () => this.kick());
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.sock) { this.sock.onclose = null; this.sock.close(1000); }
    this.sock = null;
    this.setState('idle');
  }

  /** Reconnect now instead of waiting for the backoff timer (browser came online, user tapped retry). */
  kick() {
    if (this.stopped || this.state === 'ready' || this.state === 'connecting') return;
    clearTimeout(this.timer);
    this.connect();
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.dispatchEvent(new CustomEvent('state', { detail: s }));
  }

  get ready() { return this.state === 'ready'; }

  async connect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.setState('connecting');
    const token = await auth.token();
    if (this.stopped) return;
    if (!token) {
      // Token refresh failed (offline, or the server is down): try again later.
      this.scheduleRetry();
      return;
    }
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/ws`;
    let sock;
    try {
      sock = new WebSocket(url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.sock = sock;
    sock.onopen = () => sock.send(JSON.stringify({ type: 'auth', token }));
    sock.onmessage = (ev) => {
      sock.lastFrameAt = Date.now();
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame.type === 'error' && frame.code === 'unauthorized' && this.state !== 'ready') {
        sock.authRefused = true; // the close code may not make it through proxies; remember it here
      }
      if (frame.type === 'ready') {
        this.startHeartbeat(sock);
        this.attempt = 0;
        this.everReady = true;
        this.setState('ready');
      }
      this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
    };
    sock.onclose = async (ev) => {
      if (this.sock !== sock) return;
      this.sock = null;
      if (this.stopped) return;
      this.setState('offline');
      if (ev.code === 4401 || sock.authRefused) {
        // The token was refused (expired or revoked): get a new one before reconnecting.
        const ok = await auth.refresh();
        if (!ok && auth.refreshDenied) {
          // The session itself is gone (logged out everywhere, account deleted): stop retrying.
          this.stop();
          auth.signedOut('expired');
          return;
        }
      }
      this.scheduleRetry();
    };
    sock.onerror = () => { /* onclose follows and handles the retry */ };
  }

  /**
   * Browsers cannot see the server's WebSocket pings, so a half-open connection (laptop sleep, NAT
   * timeout) would look alive forever. An application `ping` every 25 s must be answered by some
   * frame within 20 s, otherwise the socket is dropped and the normal reconnect takes over.
   */
  startHeartbeat(sock) {
    clearInterval(this.heartbeat);
    sock.lastFrameAt = Date.now();
    this.heartbeat = setInterval(() => {
      if (this.sock !== sock || sock.readyState !== WebSocket.OPEN) { clearInterval(this.heartbeat); return; }
      if (sock.pingSentAt && sock.lastFrameAt < sock.pingSentAt && Date.now() - sock.pingSentAt > 20_000) {
        this.abandon(sock, 'heartbeat timeout');
        return;
      }
      if (Date.now() - sock.lastFrameAt > 25_000) {
        sock.pingSentAt = Date.now();
        sock.send(JSON.stringify({ type: 'ping' }));
      }
    }, 5000);
  }

  /**
   * Checks the socket now rather than at the next heartbeat: when a call's media connection drops,
   * the network under the socket has often gone too (a Wi-Fi to mobile switch leaves it half open
   * for good). No frame within `timeoutMs` gives it up, and the reconnect (after which the call
   * restarts ICE) starts at once.
   */
  probe(timeoutMs = 5000) {
    const sock = this.sock;
    if (!sock || sock.readyState !== WebSocket.OPEN || this.state !== 'ready') return;
    if (sock.probing) return;
    sock.probing = true;
    const sentAt = Date.now();
    sock.send(JSON.stringify({ type: 'ping' }));
    setTimeout(() => {
      sock.probing = false;
      if (sock.lastFrameAt < sentAt) this.abandon(sock, 'probe timeout');
    }, timeoutMs);
  }

  /** Gives up on a socket that stopped answering and reconnects, without waiting for its close. */
  abandon(sock, reason) {
    if (this.sock !== sock) return;
    clearInterval(this.heartbeat);
    this.sock = null;
    try { sock.close(4000, reason); } catch { /* already closing */ }
    this.scheduleRetry();
  }

  scheduleRetry() {
    if (this.stopped) return;
    this.setState('offline');
    const delay = RETRY_DELAYS[Math.min(this.attempt, RETRY_DELAYS.length - 1)];
    this.attempt++;
    this.nextRetryAt = Date.now() + delay;
    this.dispatchEvent(new CustomEvent('retry', { detail: delay }));
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Send a frame if the socket is authenticated; returns false otherwise (callers queue). */
  send(frame) {
    if (!this.ready || !this.sock || this.sock.readyState !== WebSocket.OPEN) return false;
    this.sock.send(JSON.stringify(frame));
    return true;
  }
}

export const realtime = new Realtime();
