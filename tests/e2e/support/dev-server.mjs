// DEVELOPMENT ONLY: a small in-memory stand-in for the Mescon server (API.md subset: auth, profile,
// contacts, blocks, conversations, WebSocket chat frames) so the UI can be worked on before the
// Rust endpoints exist. The e2e suite runs against the real binary; this exists for UI work and is
// used only when MESCON_BIN points at this file explicitly. It serves static/ with the same CSP
// header the real server sends, so CSP violations show up during development too.
//   MESCON_LISTEN=127.0.0.1:8080 node tests/e2e/support/dev-server.mjs
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const STATIC = path.join(import.meta.dirname, '../../../static');
const [host, port] = (process.env.MESCON_LISTEN || '127.0.0.1:8080').split(':');
const dataFile = process.env.MESCON_DATA_DIR ? path.join(process.env.MESCON_DATA_DIR, 'dev-db.json') : null;
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'";
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png' };

let db = { users: {}, contacts: {}, messages: [], otps: {}, sessions: {}, blocks: {}, seq: {}, avatars: {} };
if (dataFile && fs.existsSync(dataFile)) db = JSON.parse(fs.readFileSync(dataFile, 'utf8'));
const save = () => { if (dataFile) fs.writeFileSync(dataFile, JSON.stringify(db)); };
const tokens = new Map(); // access token -> user id
const sockets = new Map(); // user id -> Set(socket)
const id = () => crypto.randomUUID();
const now = () => new Date().toISOString();
const normPhone = (p) => { const d = String(p || '').replace(/\D/g, ''); if (d.length === 10) return `+1${d}`; if (d.length >= 11 && d.length <= 15) return `+${d}`; return null; };
const profile = (u) => u && { id: u.id, phone: u.phone, display_name: u.display_name, avatar_url: db.avatars[u.id] ? `/api/users/${u.id}/avatar?v=${db.avatars[u.id].v}` : null };
const convId = (a, b) => [a, b].sort().join('_');

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}
const err = (res, status, code, message, headers) => send(res, status, { error: { code, message } }, headers);
async function readBody(req) { const chunks = []; for await (const c of req) chunks.push(c); return Buffer.concat(chunks); }
function cookie(req, name) { const m = (req.headers.cookie || '').match(new RegExp(`${name}=([^;]+)`)); return m && m[1]; }

function issue(res, userId, extra = {}) {
  const access = id(), refresh = id();
  tokens.set(access, userId);
  db.sessions[refresh] = userId;
  save();
  res.setHeader('Set-Cookie', `mescon_refresh=${refresh}; HttpOnly; SameSite=Strict; Path=/api/auth`);
  return { access_token: access, refresh_token: refresh, expires_in: 900, ...extra };
}

function authUser(req) { const t = (req.headers.authorization || '').replace(/^Bearer /, ''); const uid = tokens.get(t); return uid && db.users[uid] ? uid : null; }

function msgFor(m) { return { ...m }; }

function push(uid, frame) { for (const s of sockets.get(uid) || []) wsSend(s, frame); }

function storeMessage(from, to, clientId, body) {
  const existing = db.messages.find((m) => m.sender_id === from && m.client_id === clientId);
  if (existing) return { m: existing, dup: true };
  const cid = convId(from, to);
  db.seq[cid] = (db.seq[cid] || 0) + 1;
  const m = { id: id(), seq: db.seq[cid], conversation_id: cid, sender_id: from, recipient_id: to, client_id: clientId, body, created_at: now(), delivered_at: null, read_at: null };
  if (sockets.get(to)?.size) m.delivered_at = now();
  db.messages.push(m);
  save();
  push(to, { type: 'message.new', message: msgFor(m) });
  if (m.delivered_at) push(from, { type: 'message.status', conversation_id: cid, up_to_seq: m.seq, status: 'delivered' });
  return { m, dup: false };
}

function markRead(uid, peer, upTo) {
  const cid = convId(uid, peer);
  for (const m of db.messages) if (m.conversation_id === cid && m.recipient_id === uid && m.seq <= upTo && !m.read_at) { m.read_at = now(); m.delivered_at ||= m.read_at; }
  save();
  push(peer, { type: 'message.status', conversation_id: cid, up_to_seq: upTo, status: 'read' });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  if (!p.startsWith('/api/')) {
    const f = path.join(STATIC, path.normalize(p === '/' ? '/index.html' : p));
    if (!f.startsWith(STATIC) || !fs.existsSync(f) || fs.statSync(f).isDirectory()) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(f)] || 'application/octet-stream', 'Content-Security-Policy': CSP, 'Cache-Control': 'no-cache' });
    res.end(fs.readFileSync(f));
    return;
  }
  const raw = await readBody(req);
  let json = {};
  try { json = raw.length && (req.headers['content-type'] || '').includes('json') ? JSON.parse(raw) : {}; } catch { return err(res, 422, 'invalid_input', 'bad json'); }
  const M = req.method;
  if (p === '/api/auth/otp' && M === 'POST') {
    const phone = normPhone(json.phone);
    if (!phone) return err(res, 422, 'invalid_input', 'invalid phone number');
    const o = db.otps[phone];
    if (o && Date.now() - o.at < 30_000) return err(res, 429, 'rate_limited', 'slow down', { 'Retry-After': String(Math.ceil((30_000 - (Date.now() - o.at)) / 1000)) });
    const code = String(crypto.randomInt(0, 1e6)).padStart(6, '0');
    db.otps[phone] = { code, at: Date.now(), tries: 0 };
    console.log(`\x1b[32m INFO\x1b[0m otp phone=${phone} code=${code}`);
    return send(res, 202, { expires_in: 300, resend_after: 30 });
  }
  if (p === '/api/auth/verify' && M === 'POST') {
    const phone = normPhone(json.phone);
    const o = db.otps[phone];
    if (!o) return err(res, 401, 'unauthorized', 'wrong code');
    if (o.tries >= 5) return err(res, 429, 'rate_limited', 'too many tries', { 'Retry-After': '30' });
    if (o.code !== json.code) { o.tries++; return err(res, 401, 'unauthorized', 'wrong code'); }
    delete db.otps[phone];
    let u = Object.values(db.users).find((x) => x.phone === phone);
    if (!u) { u = { id: id(), phone, display_name: null }; db.users[u.id] = u; }
    return send(res, 200, issue(res, u.id, { user: profile(u) }));
  }
  if (p === '/api/auth/refresh' && M === 'POST') {
    const rt = json.refresh_token || cookie(req, 'mescon_refresh');
    const uid = rt && db.sessions[rt];
    if (!uid || !db.users[uid]) return err(res, 401, 'unauthorized', 'no session');
    delete db.sessions[rt];
    return send(res, 200, issue(res, uid, { user: profile(db.users[uid]) }));
  }
  if (p === '/api/auth/logout' && M === 'POST') { delete db.sessions[json.refresh_token || cookie(req, 'mescon_refresh')]; save(); return send(res, 204); }
  const uid = authUser(req);
  if (!uid) return err(res, 401, 'unauthorized', 'login required');
  const me = db.users[uid];
  if (p === '/api/auth/logout-all' && M === 'POST') { for (const [k, v] of Object.entries(db.sessions)) if (v === uid) delete db.sessions[k]; save(); return send(res, 204); }
  if (p === '/api/me' && M === 'GET') return send(res, 200, profile(me));
  if (p === '/api/me' && M === 'PATCH') { const n = String(json.display_name || '').trim(); if (!n || n.length > 64) return err(res, 422, 'invalid_input', 'Name must be 1-64 characters'); me.display_name = n; save(); return send(res, 200, profile(me)); }
  if (p === '/api/me' && M === 'DELETE') { delete db.users[uid]; save(); return send(res, 204); }
  if (p === '/api/me/avatar' && M === 'PUT') { db.avatars[uid] = { type: req.headers['content-type'], data: raw.toString('base64'), v: Date.now() }; save(); return send(res, 200, profile(me)); }
  if (p === '/api/me/avatar' && M === 'DELETE') { delete db.avatars[uid]; save(); return send(res, 200, profile(me)); }
  let m;
  if ((m = p.match(/^\/api\/users\/([^/]+)\/avatar$/))) { const a = db.avatars[m[1]]; if (!a) return err(res, 404, 'not_found', 'no avatar'); res.writeHead(200, { 'Content-Type': a.type }); res.end(Buffer.from(a.data, 'base64')); return; }
  const contactOut = (c) => ({ id: c.id, phone: c.phone, name: c.name, user: profile(Object.values(db.users).find((u) => u.phone === c.phone)) || null });
  if (p === '/api/contacts' && M === 'GET') return send(res, 200, Object.values(db.contacts).filter((c) => c.owner === uid).sort((a, b) => a.name.localeCompare(b.name)).map(contactOut));
  if (p === '/api/contacts' && M === 'POST') {
    const phone = normPhone(json.phone);
    if (!phone || !String(json.name || '').trim()) return err(res, 422, 'invalid_input', 'invalid phone number or name');
    if (Object.values(db.contacts).some((c) => c.owner === uid && c.phone === phone)) return err(res, 409, 'conflict', 'already a contact');
    const c = { id: id(), owner: uid, phone, name: json.name.trim() };
    db.contacts[c.id] = c; save();
    return send(res, 201, contactOut(c));
  }
  if ((m = p.match(/^\/api\/contacts\/([^/]+)$/))) {
    const c = db.contacts[m[1]];
    if (!c || c.owner !== uid) return err(res, 404, 'not_found', 'no such contact');
    if (M === 'DELETE') { delete db.contacts[c.id]; save(); return send(res, 204); }
    if (M === 'PATCH') { if (json.name) c.name = json.name.trim(); if (json.phone) c.phone = normPhone(json.phone); save(); return send(res, 200, contactOut(c)); }
  }
  if (p === '/api/blocks' && M === 'GET') return send(res, 200, (db.blocks[uid] || []).map((b) => profile(db.users[b])).filter(Boolean));
  if ((m = p.match(/^\/api\/blocks\/([^/]+)$/))) {
    db.blocks[uid] = (db.blocks[uid] || []).filter((x) => x !== m[1]);
    if (M === 'PUT') db.blocks[uid].push(m[1]);
    save();
    return send(res, 204);
  }
  if (p === '/api/conversations' && M === 'GET') {
    const peers = new Map();
    for (const x of db.messages) {
      if (x.sender_id !== uid && x.recipient_id !== uid) continue;
      const peer = x.sender_id === uid ? x.recipient_id : x.sender_id;
      peers.set(peer, x);
    }
    const out = [...peers.entries()].map(([peer, last]) => {
      const c = Object.values(db.contacts).find((k) => k.owner === uid && db.users[peer] && k.phone === db.users[peer].phone);
      return { id: last.conversation_id, peer: { ...(profile(db.users[peer]) || { id: peer, phone: null, display_name: null, avatar_url: null }), contact_name: c?.name || null }, last_message: last, unread_count: db.messages.filter((x) => x.conversation_id === last.conversation_id && x.recipient_id === uid && !x.read_at).length };
    }).sort((a, b) => b.last_message.created_at.localeCompare(a.last_message.created_at));
    return send(res, 200, out);
  }
  if ((m = p.match(/^\/api\/conversations\/with\/([^/]+)\/(messages|read)$/))) {
    const peer = m[1];
    if (m[2] === 'read') { markRead(uid, peer, json.up_to_seq); return send(res, 204); }
    if (M === 'POST') {
      if ((db.blocks[peer] || []).includes(uid)) return err(res, 403, 'forbidden', 'You cannot message this user');
      const r = storeMessage(uid, peer, json.client_id, json.body);
      return send(res, r.dup ? 200 : 201, r.m);
    }
    const cid = convId(uid, peer);
    let list = db.messages.filter((x) => x.conversation_id === cid);
    const limit = Math.min(Number(url.searchParams.get('limit') || 50), 200);
    const before = url.searchParams.get('before_seq'), after = url.searchParams.get('after_seq');
    if (after) list = list.filter((x) => x.seq > Number(after)).slice(0, limit);
    else { if (before) list = list.filter((x) => x.seq < Number(before)); list = list.slice(-limit); }
    return send(res, 200, list);
  }
  if (p === '/api/calls') return send(res, 200, []);
  if (p === '/api/ice-servers') return send(res, 200, { ice_servers: [], ttl: 3600 });
  return err(res, 404, 'not_found', 'no route');
});

// --- minimal RFC 6455 server (text frames only) ---
function wsSend(sock, obj) {
  const data = Buffer.from(JSON.stringify(obj));
  const head = data.length < 126 ? Buffer.from([0x81, data.length]) : Buffer.from([0x81, 126, data.length >> 8, data.length & 255]);
  if (!sock.destroyed) sock.write(Buffer.concat([head, data]));
}
server.on('upgrade', (req, sock) => {
  const accept = crypto.createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  let user = null;
  sock.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      const op = buf[0] & 15;
      let len = buf[1] & 127, off = 2;
      if (len === 126) { len = buf.readUInt16BE(2); off = 4; } else if (len === 127) { len = Number(buf.readBigUInt64BE(2)); off = 10; }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len)).map((b, i) => b ^ mask[i % 4]);
      buf = buf.subarray(off + 4 + len);
      if (op === 8) { sock.end(); return; }
      if (op !== 1) continue;
      let f;
      try { f = JSON.parse(payload.toString()); } catch { wsSend(sock, { type: 'error', code: 'invalid_input', message: 'bad json' }); continue; }
      if (!user) {
        const uid = f.type === 'auth' && tokens.get(f.token);
        if (!uid) { wsSend(sock, { type: 'error', code: 'unauthorized' }); sock.end(); return; }
        user = uid;
        if (!sockets.has(uid)) sockets.set(uid, new Set());
        sockets.get(uid).add(sock);
        wsSend(sock, { type: 'ready', user_id: uid });
        // deliver pending messages
        for (const x of db.messages) if (x.recipient_id === uid && !x.delivered_at) { x.delivered_at = now(); push(x.sender_id, { type: 'message.status', conversation_id: x.conversation_id, up_to_seq: x.seq, status: 'delivered' }); }
        for (const peer of peersOf(uid)) { push(peer, { type: 'presence', user_id: uid, online: true, last_seen: null }); wsSend(sock, { type: 'presence', user_id: peer, online: !!sockets.get(peer)?.size, last_seen: db.users[peer]?.last_seen || null }); }
        continue;
      }
      if (f.type === 'message.send') { const r = storeMessage(user, f.to, f.client_id, f.body); wsSend(sock, { type: 'message.ack', client_id: f.client_id, message: r.m }); }
      else if (f.type === 'message.read') markRead(user, f.peer, f.up_to_seq);
      else if (f.type === 'typing') push(f.to, { type: 'typing', from: user, active: f.active });
      else if (f.type === 'sync') {
        for (const x of db.messages) {
          if (x.sender_id !== user && x.recipient_id !== user) continue;
          const a = f.after?.[x.conversation_id];
          if (a === undefined || x.seq > a) wsSend(sock, { type: 'message.new', message: x });
        }
        wsSend(sock, { type: 'sync.done' });
      } else wsSend(sock, { type: 'error', code: 'invalid_input', message: `unknown frame ${f.type}` });
    }
  });
  const gone = () => {
    if (!user) return;
    sockets.get(user)?.delete(sock);
    if (!sockets.get(user)?.size && db.users[user]) { db.users[user].last_seen = now(); save(); for (const peer of peersOf(user)) push(peer, { type: 'presence', user_id: user, online: false, last_seen: db.users[user].last_seen }); }
  };
  sock.on('close', gone);
  sock.on('error', gone);
});
function peersOf(uid) {
  const s = new Set();
  for (const x of db.messages) { if (x.sender_id === uid) s.add(x.recipient_id); if (x.recipient_id === uid) s.add(x.sender_id); }
  for (const c of Object.values(db.contacts)) { const u = Object.values(db.users).find((k) => k.phone === c.phone); if (u?.id === uid) s.add(c.owner); }
  return s;
}

server.listen(Number(port), host, () => console.log(`dev server listening on http://${host}:${port}`));
