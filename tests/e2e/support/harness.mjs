// Shared pieces of the browser tests: start the real Mescon binary on a free loopback port with a
// fresh data dir, read OTP codes from its log, launch Debian Chromium with fake media, log users in.
// Missing Chromium or a missing binary fails the run loudly; nothing is ever skipped.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(import.meta.dirname, '../../..');

/** MESCON_BIN, else $CARGO_TARGET_DIR/debug/mescon when that is set, else target/debug/mescon. */
export function binaryPath() {
  if (process.env.MESCON_BIN) return path.resolve(process.env.MESCON_BIN);
  if (process.env.CARGO_TARGET_DIR) return path.join(process.env.CARGO_TARGET_DIR, 'debug', 'mescon');
  return path.join(REPO, 'target', 'debug', 'mescon');
}

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROME_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required'];

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
const OTP_LINE = /otp\b.*?phone="?(\+\d+)"?.*?code="?(\d{6})"?/;

/**
 * A running server. `restart()` stops it and starts it again on the same port and data dir, as
 * an operator restarting the service would.
 *
 * Optional, for servers that are not on the loopback (tests/nat): `host` (listen address, default
 * 127.0.0.1), `wrap` (command prefix, e.g. ['ip', 'netns', 'exec', 'mx-wan']), `env` (overrides
 * of the environment below) and `ready` (async function answering whether the server is up, for
 * when this process cannot reach it over HTTP).
 */
export class MesconServer {
  constructor({ port, dataDir, host = '127.0.0.1', wrap = [], env = {}, ready = null }) {
    this.port = port;
    this.dataDir = dataDir;
    this.host = host;
    this.wrap = wrap;
    this.env = env;
    this.ready = ready;
    this.url = `http://${host}:${port}`;
    this.lines = [];
    this.waiters = [];
    this.proc = null;
  }

  static async start(opts = {}) {
    const bin = binaryPath();
    if (!fs.existsSync(bin)) {
      throw new Error(`Mescon binary not found at ${bin}. Build it first (cargo build -p mescon), or set MESCON_BIN / CARGO_TARGET_DIR.`);
    }
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mescon-e2e-'));
    const s = new MesconServer({ ...opts, port: opts.port ?? await freePort(), dataDir });
    await s.spawn();
    return s;
  }

  async spawn() {
    const bin = binaryPath();
    const env = {
      ...process.env,
      MESCON_LISTEN: `${this.host}:${this.port}`,
      MESCON_DATA_DIR: this.dataDir,
      MESCON_MEDIA_UDP: '127.0.0.1:0',
      MESCON_ICE_TCP: '',
      MESCON_TURN_LISTEN: '',
      RUST_LOG: process.env.RUST_LOG || 'info',
      // Every simulated user comes from 127.0.0.1, so per-IP limits meant for one real client would
      // throttle the suite itself; per-phone limits (what the tests check) stay at their defaults.
      MESCON_OTP_PER_IP_HOUR: process.env.MESCON_OTP_PER_IP_HOUR || '1000',
      MESCON_AUTH_PER_IP_MINUTE: process.env.MESCON_AUTH_PER_IP_MINUTE || '1000',
      ...this.env,
    };
    const [cmd, args] = this.wrap.length ? [this.wrap[0], [...this.wrap.slice(1), bin]] : [bin, []];
    this.proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, sig) => resolve({ code, sig })));
    const onData = (buf) => {
      for (const raw of buf.toString().split('\n')) {
        const line = raw.replace(ANSI, '');
        if (!line.trim()) continue;
        this.lines.push(line);
        if (process.env.MESCON_E2E_VERBOSE) process.stderr.write(`[server] ${line}\n`);
        this.waiters = this.waiters.filter((w) => !w(line));
      }
    };
    this.proc.stdout.on('data', onData);
    this.proc.stderr.on('data', onData);
    await this.waitReady();
  }

  async waitReady(timeoutMs = 20_000) {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.exited.then(() => { exited = true; });
    while (Date.now() < deadline) {
      if (exited) throw new Error(`mescon exited during start-up:\n${this.lines.slice(-30).join('\n')}`);
      try {
        if (this.ready) {
          if (await this.ready()) return;
          await sleep(100);
          continue;
        }
        const res = await fetch(`${this.url}/`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        return;
      } catch { await sleep(100); }
    }
    throw new Error(`mescon did not answer on ${this.url} within ${timeoutMs} ms:\n${this.lines.slice(-30).join('\n')}`);
  }

  /** Resolves with the next OTP code logged for `phone` (E.164) after `fromLine`. */
  otp(phone, fromLine = 0, timeoutMs = 10_000) {
    const match = (line) => { const m = line.match(OTP_LINE); return m && m[1] === phone ? m[2] : null; };
    for (const line of this.lines.slice(fromLine)) { const c = match(line); if (c) return Promise.resolve(c); }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no OTP logged for ${phone} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((line) => { const c = match(line); if (c) { clearTimeout(t); resolve(c); return true; } return false; });
    });
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGTERM');
    const killer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(killer);
  }

  async restart() {
    await this.stop();
    await this.spawn();
  }

  async dispose() {
    await this.stop();
    if (!process.env.MESCON_E2E_KEEP) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** Log in over HTTP (for helper users that do not need a browser). */
  async apiLogin(phone) {
    const from = this.lines.length;
    const r = await fetch(`${this.url}/api/auth/otp`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ phone }) });
    if (r.status !== 202) throw new Error(`otp ${r.status} ${await r.text()}`);
    const code = await this.otp(phone, from);
    const v = await fetch(`${this.url}/api/auth/verify`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ phone, code }) });
    if (v.status !== 200) throw new Error(`verify ${v.status} ${await v.text()}`);
    const body = await v.json();
    const call = async (method, p, json) => {
      const res = await fetch(`${this.url}${p}`, { method, headers: { Authorization: `Bearer ${body.access_token}`, ...(json ? { 'Content-Type': 'application/json' } : {}) }, body: json ? JSON.stringify(json) : undefined });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${p} -> ${res.status} ${text}`);
      return text ? JSON.parse(text) : null;
    };
    return { ...body, call };
  }
}

/**
 * Headless Chromium with fake media. Optional (tests/nat): `executablePath` (a wrapper script that
 * starts Chromium elsewhere, e.g. in a network namespace), extra `args`, and `env` for the process.
 */
export async function launchBrowser({ executablePath, args = [], env } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}. Install it: apt-get install -y chromium (or set CHROMIUM).`);
  }
  if (executablePath && !fs.existsSync(executablePath)) throw new Error(`browser wrapper not found at ${executablePath}`);
  return chromium.launch({ executablePath: executablePath || CHROMIUM, headless: true, args: [...CHROME_ARGS, ...args], ...(env ? { env } : {}) });
}

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** A browser context for one user; collects console errors and CSP violations for assertions. */
export async function newUserPage(browser, server, viewport = DESKTOP, opts = {}) {
  const ctx = await browser.newContext({ viewport, deviceScaleFactor: 1, hasTouch: viewport === PHONE, isMobile: false, permissions: ['notifications', 'microphone', 'camera'], ...opts });
  const page = await ctx.newPage();
  page.problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) page.problems.push(m.text());
  });
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  if (process.env.MESCON_E2E_VERBOSE) page.on('console', (m) => process.stderr.write(`[page ${viewport.width}] ${m.type()}: ${m.text()}\n`));
  await page.goto(server.url);
  return page;
}

const tid = (id) => `[data-testid="${id}"]`;
export { tid };

/** The full OTP login flow through the UI. Returns the user's id. */
export async function uiLogin(page, server, phone) {
  await page.locator(tid('login-phone')).fill(phone);
  const from = server.lines.length;
  await page.locator(tid('login-send')).click();
  const code = await server.otp(phone, from);
  await page.locator(tid('login-code')).fill(code);
  await page.locator(tid('login-verify')).click();
  await page.locator(tid('nav-chats')).waitFor({ state: 'visible', timeout: 15_000 });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value (or throw with the last value). */
export async function eventually(fn, { timeout = 10_000, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    await sleep(interval);
  }
  throw new Error(`timed out waiting for ${message}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}

/** A small, valid PNG (solid colour with a stripe) for avatar uploads, made without any library. */
export function makePng(w = 64, h = 64, rgb = [0, 168, 132]) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0;
    for (let x = 0; x < w; x++) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      const stripe = Math.abs(x - y) < 6;
      raw[o] = stripe ? 255 : rgb[0]; raw[o + 1] = stripe ? 255 : rgb[1]; raw[o + 2] = stripe ? 255 : rgb[2];
    }
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(zlib.crc32 ? zlib.crc32(td) : crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

function crc32(buf) {
  let c = ~0;
  for (const b of buf) { c ^= b; for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1)); }
  return (~c) >>> 0;
}

export function shotDir() {
  const d = process.env.MESCON_SHOTS;
  if (!d) return null;
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** Screenshot into $MESCON_SHOTS when set (for looking at the UI; never compared). */
export async function shot(page, name) {
  const d = shotDir();
  if (d) await page.screenshot({ path: path.join(d, `${name}.png`) });
}

// --- UI helpers ------------------------------------------------------------------------------------
export async function addContact(page, phone, name) {
  await page.locator(tid('nav-contacts')).click();
  await page.locator(tid('contact-add')).click();
  await page.locator(tid('contact-phone')).fill(phone);
  await page.locator(tid('contact-name')).fill(name);
  await page.locator(tid('contact-save')).click();
  await page.locator(`${tid('contact-item')}:has-text("${name}")`).waitFor();
}

export async function assertText(locator, expected, timeout = 10_000) {
  await eventually(async () => {
    const t = (await locator.textContent()) || '';
    return expected instanceof RegExp ? expected.test(t) : t.trim() === expected;
  }, { timeout, message: `text ${expected} in ${locator}` });
}

export async function assertValue(locator, expected) {
  await eventually(async () => (await locator.inputValue()) === expected, { message: `value ${expected}` });
}

export async function assertPresence(page, re) {
  await assertText(page.locator(tid('presence')), re);
}
