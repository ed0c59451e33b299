// Strict-network matrix: real browsers call each other through the real Mescon server and its SFU
// across network namespaces (tests/nat/netns.sh). Needs root; run it with scripts/test-nat, or
//   node --test tests/nat/nat.test.mjs        (MX_NAT_KEEP=1 leaves the namespaces up afterwards)
//
//   mx-lan 10.77.1.2 (Alice's Chromium) -> mx-nat (MODE) -> mx-wan 198.18.2.2 (Mescon) <- mx-pub 198.18.3.2 (Bob's Chromium)
//
// Bob sits on a public address with no NAT, so every scenario impairs exactly one leg of the call
// (Alice <-> SFU) and a failure points at it; his own namespace (not the server's) makes his media
// cross a real link too. Per scenario: check what the network does (probe.mjs), log both users in
// through the UI (codes from the server log), Alice video-calls Bob through the UI, Bob accepts,
// and both browsers must decode video frames (window.mesconCall.getStats()). Time-to-connect is
// measured from Bob's accept click to both sides decoding, and printed with the selected ICE pairs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { MesconServer, launchBrowser, newUserPage, uiLogin, tid, eventually, sleep, DESKTOP, addContact, assertText } from '../e2e/support/harness.mjs';

const HERE = import.meta.dirname;
const NETNS = path.join(HERE, 'netns.sh');
const PROBE = path.join(HERE, 'probe.mjs');
const WAN_IP = '198.18.2.2';   // the server
const NAT_IP = '198.18.2.1';   // the NAT's outside address
const LAN_IP = '10.77.1.2';    // Alice
const PUB_IP = '198.18.3.2';   // Bob
const ORIGIN = `http://${WAN_IP}:8000`;
const PROBE_PORTS = [9101, 9102, 9103]; // two UDP echo ports and one TCP port the firewall does not open
const run = promisify(execFile);
// The "lossy" line, per direction (netns.sh reads the same variables).
const DELAY_MS = Number(process.env.MX_DELAY_MS ?? 40);
const LOSS_PERCENT = Number(process.env.MX_LOSS_PERCENT ?? 5);

let server, lanBrowser, pubBrowser, probeProc;
const results = [];

function sh(cmd, args, env = {}) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${e.status}): ${e.stderr || e.message}`);
  }
}
const inNs = (ns, cmd, args) => sh('ip', ['netns', 'exec', ns, cmd, ...args]);
const probe = (ns, ...args) => JSON.parse(inNs(ns, process.execPath, [PROBE, ...args.map(String)]).trim().split('\n').pop());

before(async () => {
  assert.equal(process.getuid?.(), 0, 'the NAT matrix needs root (network namespaces); run scripts/test-nat as root');
  sh(NETNS, ['up', 'routed']);
  // UDP/TCP echo in the server's namespace: tells a client which address and port it was seen from.
  probeProc = spawn('ip', ['netns', 'exec', 'mx-wan', process.execPath, PROBE, 'server', WAN_IP, ...PROBE_PORTS.map(String)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    probeProc.stdout.once('data', resolve);
    probeProc.once('exit', (c) => reject(new Error(`probe server exited (${c})`)));
  });

  server = await MesconServer.start({
    host: WAN_IP,
    port: 8000,
    wrap: ['ip', 'netns', 'exec', 'mx-wan'],
    env: {
      MESCON_MEDIA_UDP: `${WAN_IP}:7882`,
      MESCON_ICE_TCP: `${WAN_IP}:7881`,
      MESCON_TURN_LISTEN: `${WAN_IP}:3478`,
      MESCON_PUBLIC_URL: ORIGIN,
      MESCON_OTP_PER_IP_HOUR: '1000',
      MESCON_AUTH_PER_IP_MINUTE: '1000',
      // The test reads /metrics from the server's own namespace as a reverse proxy would.
      MESCON_TRUSTED_PROXIES: WAN_IP,
    },
    // This process is in the root namespace and cannot reach mx-wan: ask from Bob's namespace.
    ready: async () => {
      try {
        await run('ip', ['netns', 'exec', 'mx-pub', process.execPath, '-e',
          `fetch(${JSON.stringify(ORIGIN + '/healthz')}).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`]);
        return true;
      } catch { return false; }
    },
  });
  // getUserMedia needs a secure context; the test origin is plain HTTP on a non-loopback address.
  const args = [`--unsafely-treat-insecure-origin-as-secure=${ORIGIN}`];
  const wrapper = path.join(HERE, 'chromium-netns.sh');
  lanBrowser = await launchBrowser({ executablePath: wrapper, args, env: { ...process.env, MX_NETNS: 'mx-lan' } });
  pubBrowser = await launchBrowser({ executablePath: wrapper, args, env: { ...process.env, MX_NETNS: 'mx-pub' } });
});

after(async () => {
  await lanBrowser?.close().catch(() => {});
  await pubBrowser?.close().catch(() => {});
  if (server && process.env.MX_NAT_SERVER_LOG) fs.writeFileSync(process.env.MX_NAT_SERVER_LOG, server.lines.join('\n') + '\n');
  await server?.dispose();
  probeProc?.kill();
  if (!process.env.MX_NAT_KEEP) sh(NETNS, ['down']);
  if (results.length) {
    console.log('\nNAT matrix: time-to-connect = accept click -> both browsers decoding video');
    for (const r of results) {
      console.log(`  ${r.status.padEnd(4)} ${r.mode.padEnd(15)} ring ${String(r.ringMs ?? '-').padStart(5)} ms  connect ${String(r.connectMs ?? '-').padStart(5)} ms` +
        `${r.alicePairs ? `  alice[${r.alicePairs}]  bob[${r.bobPairs}]` : ''}${r.extra ? '  ' + r.extra : ''}`);
    }
  }
});

// --- stats -------------------------------------------------------------------------------------
const callStats = (page) => page.evaluate(() => window.mesconCall.getStats());

function inboundVideo(stats) {
  return stats.filter((s) => s.type === 'inbound-rtp' && s.kind === 'video');
}
/** Receiver-side repair counters of the inbound video, summed over streams. */
function videoHealth(stats) {
  const sum = (k) => inboundVideo(stats).reduce((n, s) => n + (s[k] || 0), 0);
  return `decoded ${sum('framesDecoded')} (key ${sum('keyFramesDecoded')}), lost ${sum('packetsLost')}, nack ${sum('nackCount')}, ` +
    `rtx ${sum('retransmittedPacketsReceived')}, pli ${sum('pliCount')}, fir ${sum('firCount')}, freezes ${sum('freezeCount')}`;
}
/** Sender-side view of the outbound video: what the SFU asked this browser to repair. */
function senderRepair(stats) {
  const out = stats.filter((s) => s.type === 'outbound-rtp' && s.kind === 'video');
  const sum = (k) => out.reduce((n, s) => n + (s[k] || 0), 0);
  return `sent ${sum('packetsSent')} pkts, nacks from SFU ${sum('nackCount')}, rtx sent ${sum('retransmittedPacketsSent')}, pli from SFU ${sum('pliCount')}`;
}
const framesDecoded = (stats) => inboundVideo(stats).reduce((n, s) => n + (s.framesDecoded || 0), 0);

/** The selected candidate pair of each peer connection ("publish", "subscribe"). */
function selectedPairs(stats) {
  const out = [];
  for (const pc of ['publish', 'subscribe']) {
    const mine = stats.filter((s) => s.pc === pc);
    if (!mine.length) continue;
    const transport = mine.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
    const pair = transport
      ? mine.find((s) => s.id === transport.selectedCandidatePairId)
      : mine.find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
    if (!pair) { out.push({ pc, pair: null }); continue; }
    const local = mine.find((s) => s.id === pair.localCandidateId);
    const remote = mine.find((s) => s.id === pair.remoteCandidateId);
    out.push({ pc, pair, local, remote });
  }
  return out;
}
function describePairs(pairs) {
  return pairs.map(({ pc, pair, local, remote }) => {
    if (!pair) return `${pc}: none`;
    const l = `${local.candidateType}/${local.protocol}${local.relayProtocol ? `(relay ${local.relayProtocol})` : ''} ${local.address}:${local.port}`;
    const r = `${remote.candidateType}/${remote.protocol} ${remote.address}:${remote.port}`;
    return `${pc}: ${l} -> ${r}`;
  }).join('; ');
}
const isTcpPath = (local) => local.protocol === 'tcp' || (local.candidateType === 'relay' && local.relayProtocol === 'tcp');

/** Peers of the server's established HTTP connections, as the server's host sees them. */
/** The remote ends (address:port) of the server's established HTTP connections. */
function serverHttpEndpoints() {
  const out = inNs('mx-wan', 'ss', ['-Htn', 'state', 'established', `( sport = :8000 )`]);
  return new Set(out.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/).pop()));
}

/**
 * The addresses the server's HTTP connections come from, leaving out the connections in `stale`:
 * a browser of an earlier scenario may still hold one, opened from an address that was right then.
 */
function serverHttpPeers(stale = new Set()) {
  return new Set([...serverHttpEndpoints()].filter((e) => !stale.has(e)).map((e) => e.replace(/:\d+$/, '')));
}

/** Evidence for a failed scenario: every candidate pair both browsers tried, and the server's log. */
// The SFU's figures on /metrics (served to private networks; asked from the server's namespace
// through the trusted-proxy header, as this process cannot reach it), by series.
function sfuMetrics() {
  const text = inNs('mx-wan', process.execPath, ['-e',
    `fetch(${JSON.stringify(ORIGIN + '/metrics')}, { headers: { 'x-forwarded-for': '127.0.0.1' } })` +
    '.then((r) => r.text()).then((t) => process.stdout.write(t))']);
  const series = new Map();
  for (const line of text.split('\n').filter((l) => l.startsWith('sfu_'))) {
    const at = line.lastIndexOf(' ');
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  assert.ok(series.has('sfu_rooms'), `the SFU's figures on /metrics: ${text.slice(0, 300)}`);
  return series;
}
// What became of the packets subscribers NACKed between two readings of sfuMetrics().
function repairsBetween(before, after) {
  const out = {};
  for (const outcome of ['sent', 'unmapped', 'released', 'missing']) {
    const key = `sfu_repairs_total{outcome="${outcome}"}`;
    out[outcome] = (after.get(key) || 0) - (before.get(key) || 0);
  }
  return out;
}

async function explainFailure(mode, alice, bob, fromLine) {
  console.log(`--- ${mode} failed: evidence`);
  try {
    console.log(`SFU: ${[...sfuMetrics()].map(([k, v]) => `${k} ${v}`).join(', ')}`);
  } catch (e) {
    console.log(`SFU metrics unavailable: ${e.message}`);
  }
  for (const [who, page] of [['alice', alice], ['bob', bob]]) {
    const stats = await callStats(page).catch((e) => { console.log(`${who}: no stats (${e.message})`); return []; });
    console.log(`${who}: call state ${await page.evaluate(() => window.mesconCall?.state).catch(() => '?')}, selected: ${describePairs(selectedPairs(stats))}`);
    console.log(`  inbound video: ${videoHealth(stats)}`);
    console.log(`  outbound video: ${senderRepair(stats)}`);
    for (const pc of ['publish', 'subscribe']) {
      const t = stats.find((s) => s.pc === pc && s.type === 'transport');
      const n = (type) => stats.filter((s) => s.pc === pc && s.type === type).length;
      console.log(`  ${pc}: ice ${t?.iceState} dtls ${t?.dtlsState}, ${n('local-candidate')} local / ${n('remote-candidate')} remote candidates, ${n('inbound-rtp')} inbound / ${n('outbound-rtp')} outbound rtp`);
    }
    for (const p of stats.filter((s) => s.type === 'candidate-pair')) {
      const l = stats.find((s) => s.pc === p.pc && s.id === p.localCandidateId) || {};
      const r = stats.find((s) => s.pc === p.pc && s.id === p.remoteCandidateId) || {};
      console.log(`  ${p.pc} ${p.state}${p.nominated ? ' nominated' : ''}: ${l.candidateType}/${l.protocol}${l.relayProtocol ? `(relay ${l.relayProtocol})` : ''} ${l.address}:${l.port} -> ${r.candidateType}/${r.protocol} ${r.address}:${r.port} req ${p.requestsSent} resp ${p.responsesReceived}`);
    }
    const frames = (page.wsLog || []).map((f) => `+${f.at}ms ${f.line}${f.n > 1 ? ` (x${f.n})` : ''}`);
    console.log(`${who} call frames (${frames.length > 60 ? 'first 30 and last 30' : 'all'}):\n  ${(frames.length > 60 ? [...frames.slice(0, 30), '...', ...frames.slice(-30)] : frames).join('\n  ')}`);
    console.log(`${who} console (last 15):\n  ${(page.consoleLog || []).slice(-15).join('\n  ')}`);
  }
  const lines = server.lines.slice(fromLine).filter((l) => /WARN|ERROR|call|sfu|ice|turn/i.test(l) && !/ otp /.test(l));
  console.log(`server log (${lines.length} matching lines, last 40):\n${lines.slice(-40).join('\n')}`);
}

// --- the network, before any browser ----------------------------------------------------------
function checkNetwork(mode, allowTcp = '8000 7881 3478') {
  const [u1, u2, t] = PROBE_PORTS;
  const udp = probe('mx-lan', 'client', WAN_IP, u1, u2);
  const tcp = probe('mx-lan', 'tcp', WAN_IP, t);
  const pub = probe('mx-pub', 'client', WAN_IP, u1, u2);
  assert.equal(pub.a?.address, PUB_IP, 'Bob reaches the server directly');
  if (mode === 'routed') {
    assert.equal(udp.a?.address, LAN_IP, 'no NAT: the server sees the lan address');
    assert.equal(udp.a.port, udp.local_port, 'no NAT: ports unchanged');
    assert.equal(tcp?.address, LAN_IP);
    return `server sees ${udp.a.address}`;
  }
  if (mode === 'symmetric') {
    assert.equal(udp.a?.address, NAT_IP, 'the server sees the NAT address');
    assert.ok(udp.b, 'second UDP port answers');
    assert.notEqual(udp.a.port, udp.b.port, `symmetric NAT: one outside port per destination (${udp.a.port}, ${udp.b.port})`);
    assert.equal(tcp?.address, NAT_IP);
    return `server sees ${NAT_IP}, outside ports ${udp.a.port}/${udp.b.port} for one socket`;
  }
  if (mode === 'udp-drop') {
    assert.equal(udp.a, null, 'UDP from the lan is dropped');
    assert.equal(udp.b, null, 'UDP from the lan is dropped');
    assert.equal(tcp, null, 'TCP to a port the firewall does not open is dropped');
    return `UDP dropped, TCP only to ${allowTcp.split(' ').join('/')}`;
  }
  if (mode === 'lossy') {
    assert.equal(udp.a?.address, NAT_IP, 'the server sees the NAT address');
    const rtt = probe('mx-lan', 'rtt', WAN_IP, u1, 100);
    assert.ok(rtt.median_rtt_ms >= 2 * DELAY_MS - 5 && rtt.median_rtt_ms < 2 * DELAY_MS + 100, `RTT is 2 x ${DELAY_MS} ms: ${JSON.stringify(rtt)}`);
    if (LOSS_PERCENT > 0) {
      const expected = 1 - (1 - LOSS_PERCENT / 100) ** 2;
      assert.ok(rtt.answered < rtt.sent && rtt.answered >= rtt.sent * (1 - 3 * expected), `about ${(expected * 100).toFixed(0)} % of round trips lost: ${JSON.stringify(rtt)}`);
    } else assert.equal(rtt.answered, rtt.sent, 'no loss configured');
    return `udp rtt ${rtt.median_rtt_ms} ms, ${rtt.sent - rtt.answered}/${rtt.sent} round trips lost`;
  }
  throw new Error(`unknown mode ${mode}`);
}

/** Alice's page in the lan browser and Bob's in the public one, both logging call frames and console. */
async function openPages() {
  const alice = await newUserPage(lanBrowser, server, DESKTOP);
  const bob = await newUserPage(pubBrowser, server, DESKTOP);
  for (const page of [alice, bob]) {
    page.consoleLog = [];
    page.on('console', (m) => page.consoleLog.push(`${m.type()}: ${m.text()}`));
    // Call signalling as the browser saw it (frame types only, no SDP), for failure reports.
    page.wsLog = [];
    const t0 = Date.now();
    page.on('websocket', (ws) => {
      const note = (dir) => (f) => {
        try {
          const m = JSON.parse(f.payload);
          if (!/^(call\.|sfu\.|error)/.test(m.type)) return;
          const what = m.sdp ? ` ${m.sdp.type || 'sdp'}` : m.description ? ` ${m.description.type}` : m.candidate !== undefined ? (m.candidate ? ' candidate' : ' end-of-candidates') : m.restart ? ' restart' : m.code ? ` ${m.code}` : ` {${Object.keys(m).filter((k) => !['type', 'call_id', 'pc'].includes(k)).join(',')}}`;
          const line = `${dir} ${m.type}${m.pc ? ' ' + m.pc : ''}${what}`;
          const last = page.wsLog[page.wsLog.length - 1];
          if (last?.line === line) last.n++;
          else page.wsLog.push({ at: Date.now() - t0, line, n: 1 });
        } catch { /* not JSON */ }
      };
      ws.on('framesent', note('>'));
      ws.on('framereceived', note('<'));
    });
  }
  return [alice, bob];
}

/**
 * Logs both users in through the UI, makes them contacts, and Alice video-calls Bob, who accepts;
 * returns when both decode. Ring and connect times go into `r` too.
 */
async function placeCall(alice, bob, alicePhone, bobPhone, mode, r, stale) {
  await uiLogin(alice, server, alicePhone);
  await uiLogin(bob, server, bobPhone);
  const peers = serverHttpPeers(stale);
  assert.ok(peers.has(PUB_IP), `server sees Bob at ${PUB_IP}: ${[...peers]}`);
  if (mode === 'routed') assert.ok(peers.has(LAN_IP), `server sees Alice at ${LAN_IP}: ${[...peers]}`);
  else {
    assert.ok(peers.has(NAT_IP), `server sees Alice at the NAT ${NAT_IP}: ${[...peers]}`);
    assert.ok(!peers.has(LAN_IP), `the lan address never reaches the server: ${[...peers]}`);
  }

  const aliceId = await alice.locator(tid('nav-profile')).getAttribute('data-user-id');
  const bobId = await bob.locator(tid('nav-profile')).getAttribute('data-user-id');
  await addContact(alice, bobPhone, 'Bob');
  await addContact(bob, alicePhone, 'Alice');
  await alice.locator(`${tid('contact-item')}[data-user-id="${bobId}"] ${tid('contact-message')}`).click();
  await bob.locator(`${tid('contact-item')}[data-user-id="${aliceId}"] ${tid('contact-message')}`).click();

  // Both WebSockets are up when each sees the other online (over a lossy line that can take a while).
  await assertText(alice.locator(tid('presence')), /online/i, 20_000);
  await assertText(bob.locator(tid('presence')), /online/i, 20_000);

  // Alice calls, Bob accepts.
  const t0 = Date.now();
  await alice.locator(tid('call-video')).click();
  await alice.locator(tid('call-window')).waitFor({ timeout: 10_000 });
  // Bob rings, or the server refused the invite (Alice's call window closes at once).
  const refused = alice.locator(tid('call-window')).waitFor({ state: 'detached', timeout: 15_000 }).then(() => 'refused', () => 'timeout');
  const rang = await Promise.race([bob.locator(tid('incoming-accept')).waitFor({ timeout: 15_000 }).then(() => 'rang'), refused]);
  if (rang !== 'rang') throw new Error(`the call did not ring at Bob's (${rang}): the invite was refused or the call ended early (server log below)`);
  const ringMs = r.ringMs = Date.now() - t0;
  const t1 = Date.now();
  await bob.locator(tid('incoming-accept')).click();
  await bob.locator(tid('call-window')).waitFor({ timeout: 10_000 });
  await Promise.all([alice, bob].map((page, i) => eventually(async () => framesDecoded(await callStats(page)) > 0,
    { timeout: 30_000, interval: 100, message: `${i ? 'Bob' : 'Alice'} decodes remote video (${mode})` })));
  const connectMs = r.connectMs = Date.now() - t1;
  await alice.locator(tid('remote-video')).waitFor();
  await bob.locator(tid('remote-video')).waitFor();
  return { ringMs, connectMs };
}

// --- one scenario ------------------------------------------------------------------------------
const SCENARIOS = [
  { mode: 'routed', n: 3, title: 'routed: (1) no NAT' },
  { mode: 'symmetric', n: 4, title: 'symmetric: (2) symmetric NAT (MASQUERADE fully-random)' },
  { mode: 'udp-drop', n: 5, title: 'udp-drop: (3) firewall drops all UDP: ICE-TCP or TURN/TCP' },
  // The same firewall with one of the two TCP fallbacks closed: each must work on its own.
  { mode: 'udp-drop', label: 'udp-drop-turn', allowTcp: '8000 3478', n: 7, title: 'udp-drop-turn: (3b) UDP and ICE-TCP blocked: TURN over TCP' },
  { mode: 'udp-drop', label: 'udp-drop-icetcp', allowTcp: '8000 7881', n: 8, title: 'udp-drop-icetcp: (3c) UDP and TURN blocked: passive ICE-TCP' },
  // Loss both ways on Alice's line: her uplink is repaired by her browser's simulcast RTX (named by
  // RRID) answering the SFU's NACKs, her downlink by the SFU's RTX answering hers.
  { mode: 'lossy', n: 6, title: 'lossy: (4) 5 % loss + 40 ms delay each way: media keeps flowing' },
];

for (const sc of SCENARIOS) {
  test(sc.title, { timeout: 90_000, todo: sc.todo }, async () => {
    sh(NETNS, ['rules', sc.mode], sc.allowTcp ? { MX_ALLOW_TCP: sc.allowTcp } : {});
    const net = checkNetwork(sc.mode, sc.allowTcp);

    const r = { mode: sc.label || sc.mode, status: 'FAIL' };
    results.push(r);
    const alicePhone = `+120155501${sc.n}1`;
    const bobPhone = `+120155501${sc.n}2`;
    const fromLine = server.lines.length;
    const stale = serverHttpEndpoints();
    const sfuBefore = sfuMetrics();
    const [alice, bob] = await openPages();
    try {
      const { ringMs, connectMs } = await placeCall(alice, bob, alicePhone, bobPhone, sc.mode, r, stale);

      // Media keeps flowing: sample decoded frames every second (10 s on the lossy line, 3 s
      // elsewhere). The fake camera decodes at ~20 frames/s here on a clean line; a working repair
      // path (NACK/RTX, keyframe requests) keeps at least half of that, and no stall over 2 s.
      const seconds = sc.mode === 'lossy' ? 10 : 3;
      const samples = [await Promise.all([alice, bob].map(callStats))];
      for (let i = 0; i < seconds; i++) {
        await sleep(1000);
        samples.push(await Promise.all([alice, bob].map(callStats)));
      }
      const afterStats = samples[samples.length - 1];
      const flow = [0, 1].map((who) => {
        const counts = samples.map((s) => framesDecoded(s[who]));
        let stall = 0, run = 0;
        for (let i = 1; i < counts.length; i++) { run = counts[i] > counts[i - 1] ? 0 : run + 1; stall = Math.max(stall, run); }
        return { fps: (counts[counts.length - 1] - counts[0]) / seconds, stall };
      });
      const fps = flow.map((f) => f.fps);
      for (const [i, who] of ['Alice', 'Bob'].entries()) {
        assert.ok(flow[i].fps >= 10 && flow[i].stall <= 2,
          `${who} keeps decoding over ${seconds} s (${sc.mode}): ${flow[i].fps.toFixed(1)} frames/s, longest stall ${flow[i].stall} s; ` +
          `inbound video: ${videoHealth(afterStats[i])}; the other side's outbound video: ${senderRepair(afterStats[1 - i])}`);
      }

      const alicePairs = selectedPairs(afterStats[0]);
      const bobPairs = selectedPairs(afterStats[1]);
      const extra = [net, `fps alice ${fps[0].toFixed(0)} bob ${fps[1].toFixed(0)}`];
      for (const [who, pairs] of [['Alice', alicePairs], ['Bob', bobPairs]]) {
        assert.equal(pairs.length, 2, `${who} has a publish and a subscribe connection: ${describePairs(pairs)}`);
        // Under loss Chromium shows its selected pair as in-progress while a consent check is
        // outstanding; a pair that has had answers is still the one carrying the media.
        const usable = (pair) => pair && (pair.state === 'succeeded' || (sc.mode === 'lossy' && pair.state === 'in-progress' && pair.responsesReceived > 0));
        for (const p of pairs) assert.ok(usable(p.pair), `${who} ${p.pc} has a selected pair (${p.pair?.state}): ${describePairs(pairs)}`);
      }
      for (const p of bobPairs) assert.equal(p.local.protocol, 'udp', `Bob (no NAT) uses UDP: ${describePairs(bobPairs)}`);
      if (sc.mode === 'udp-drop') {
        for (const p of alicePairs) assert.ok(isTcpPath(p.local), `UDP is blocked: Alice's ${p.pc} path must be TCP or relay over TCP: ${describePairs(alicePairs)}`);
        const open = (sc.allowTcp || '8000 7881 3478').split(' ');
        if (!open.includes('7881')) {
          for (const p of alicePairs) assert.ok(p.local.candidateType === 'relay' && p.local.relayProtocol === 'tcp', `ICE-TCP is blocked too: Alice's ${p.pc} path must be TURN over TCP: ${describePairs(alicePairs)}`);
        }
        if (!open.includes('3478')) {
          for (const p of alicePairs) assert.ok(p.local.protocol === 'tcp' && p.remote.protocol === 'tcp' && p.remote.port === 7881, `TURN is blocked too: Alice's ${p.pc} path must be ICE-TCP to 7881: ${describePairs(alicePairs)}`);
        }
        const counters = inNs('mx-nat', 'nft', ['list', 'table', 'inet', 'mx_fw']);
        const dropped = Number(counters.match(/udp counter packets (\d+)/)?.[1] || 0);
        assert.ok(dropped > 0, `the firewall really dropped Alice's UDP: ${counters}`);
        extra.push(`${dropped} UDP packets dropped`);
      } else {
        for (const p of alicePairs) assert.equal(p.local.protocol, 'udp', `UDP is open: Alice's ${p.pc} path uses it: ${describePairs(alicePairs)}`);
      }
      if (sc.mode === 'lossy') {
        // Which of Alice's pairs really carried each direction: Chromium may nominate an ICE-TCP
        // pair beside the UDP one, and the SFU (ICE-lite) then uses it; TCP repairs loss itself.
        const carrier = (pc, key) => {
          const pairs = afterStats[0].filter((s) => s.pc === pc && s.type === 'candidate-pair');
          const best = pairs.reduce((a, b) => ((b[key] || 0) > (a?.[key] || 0) ? b : a), null);
          return afterStats[0].find((s) => s.pc === pc && s.id === best?.localCandidateId)?.protocol;
        };
        const downOverTcp = carrier('subscribe', 'bytesReceived') === 'tcp';
        const upOverTcp = carrier('publish', 'bytesSent') === 'tcp';
        // Loss reaches Alice's receiver, which asks for retransmissions, and decoding continued above.
        const inbound = inboundVideo(afterStats[0]);
        const nacks = inbound.reduce((n, s) => n + (s.nackCount || 0), 0);
        const lost = inbound.reduce((n, s) => n + (s.packetsLost || 0), 0);
        const rtxIn = inbound.reduce((n, s) => n + (s.retransmittedPacketsReceived || 0), 0);
        if (LOSS_PERCENT > 0 && !downOverTcp) {
          assert.ok(rtxIn > 0, `the SFU repaired Alice's lossy downlink with RTX (nackCount ${nacks}, rtx ${rtxIn})`);
          assert.ok(nacks > 0, `Alice's receiver sent NACKs on the lossy line (nackCount ${nacks}, packetsLost ${lost})`);
        }
        // Her uplink loses too: the SFU asks her browser for the packets (NACK) and her simulcast
        // RTX answers, which the SFU turns back into media for Bob (Bob's frame rate above).
        const out = afterStats[0].filter((s) => s.type === 'outbound-rtp' && s.kind === 'video');
        const nacked = out.reduce((n, s) => n + (s.nackCount || 0), 0);
        const resent = out.reduce((n, s) => n + (s.retransmittedPacketsSent || 0), 0);
        if (LOSS_PERCENT > 0 && !upOverTcp) assert.ok(nacked > 0 && resent > 0, `the SFU NACKed Alice's uplink and she retransmitted (nacks ${nacked}, rtx sent ${resent})`);
        if (downOverTcp || upOverTcp) extra.push(`carried over ICE-TCP: ${[downOverTcp && 'downlink', upOverTcp && 'uplink'].filter(Boolean).join(', ')}`);
        extra.push(`alice inbound video: ${videoHealth(afterStats[0])}; alice outbound video: ${senderRepair(afterStats[0])}; bob inbound video: ${videoHealth(afterStats[1])}`);
      }
      // A receiver asks again only for what it lacks, and its transport-wide-cc feedback confirmed
      // only what it has: a NACK never names a packet the SFU let go on that confirmation.
      const repairs = repairsBetween(sfuBefore, sfuMetrics());
      assert.equal(repairs.released, 0, `no NACK asks for a packet every receiver confirmed: ${JSON.stringify(repairs)}`);
      extra.push(`SFU repairs ${JSON.stringify(repairs)}`);
      Object.assign(r, { ringMs, connectMs, alicePairs: describePairs(alicePairs), bobPairs: describePairs(bobPairs), extra: extra.join(', ') });

      // Hang up: both call windows close.
      await alice.locator(tid('call-hangup')).click();
      for (const page of [alice, bob]) await page.locator(tid('call-window')).waitFor({ state: 'detached', timeout: 15_000 });
      r.status = 'ok';
    } catch (e) {
      r.extra = `${r.extra ? r.extra + '; ' : ''}FAILED: ${String(e.message).split('\n')[0].slice(0, 300)}`;
      await explainFailure(sc.label || sc.mode, alice, bob, fromLine);
      throw e;
    } finally {
      await alice.context().close().catch(() => {});
      await bob.context().close().catch(() => {});
    }
  });
}

// --- an outage ---------------------------------------------------------------------------------
// Alice's line goes dead mid-call (every packet through mx-nat dropped, her WebSocket's too) for as
// long as the SFU takes to give up on her connections. When the line comes back her browser must
// learn that its media session is gone (the `reset` the server sent while she was unreachable, or
// the one it repeats to her stale ICE restart) and start over with new peer connections; the call
// goes on and both decode video again.
test('outage: (5) the line drops until the SFU gives up, then the call recovers', { timeout: 180_000 }, async () => {
  sh(NETNS, ['rules', 'routed']);
  const net = checkNetwork('routed');
  const r = { mode: 'outage', status: 'FAIL' };
  results.push(r);
  const fromLine = server.lines.length;
  const stale = serverHttpEndpoints();
  const [alice, bob] = await openPages();
  const block = () => inNs('mx-nat', 'nft', ['add table inet mx_outage; add chain inet mx_outage forward { type filter hook forward priority filter - 10; policy accept; }; ' +
    'add rule inet mx_outage forward iifname "mx-nat-lan" drop; add rule inet mx_outage forward oifname "mx-nat-lan" drop']);
  const unblock = () => inNs('mx-nat', 'nft', ['delete table inet mx_outage']);
  try {
    await placeCall(alice, bob, '+12015550191', '+12015550192', 'routed', r, stale);
    const t0 = Date.now();
    block();
    await eventually(async () => server.lines.slice(fromLine).some((l) => /media failed; asking the client to start over/.test(l)),
      { timeout: 60_000, interval: 250, message: 'the SFU gives up on Alice\'s connections' });
    const failedAfter = Date.now() - t0;
    unblock();
    const t1 = Date.now();
    await eventually(async () => alice.wsLog.some((f) => f.line === '< sfu.signal {reset}'), { timeout: 60_000, interval: 250, message: 'Alice hears that her media session is gone' });
    // Both decode again: Alice through her new connections, Bob from Alice's new tracks.
    const rate = async (page) => {
      const a = framesDecoded(await callStats(page));
      await sleep(2000);
      return (framesDecoded(await callStats(page)) - a) / 2;
    };
    await eventually(async () => (await rate(alice)) >= 10 && (await rate(bob)) >= 10,
      { timeout: 60_000, interval: 500, message: 'both decode at least 10 frames/s again' });
    const recoveredMs = Date.now() - t1;
    assert.equal(await alice.evaluate(() => window.mesconCall.state), 'active', 'the call is still up');
    const reset = alice.wsLog.findIndex((f) => f.line === '< sfu.signal {reset}');
    assert.ok(alice.wsLog.slice(reset).some((f) => f.line === '> sfu.signal publish offer'), 'Alice offered publish from new connections');
    r.extra = `${net}; SFU gave up after ${failedAfter} ms blocked; unblocked -> both decoding ${recoveredMs} ms`;
    await alice.locator(tid('call-hangup')).click();
    for (const page of [alice, bob]) await page.locator(tid('call-window')).waitFor({ state: 'detached', timeout: 15_000 });
    r.status = 'ok';
  } catch (e) {
    try { unblock(); } catch { /* not blocked */ }
    r.extra = `${r.extra ? r.extra + '; ' : ''}FAILED: ${String(e.message).split('\n')[0].slice(0, 300)}`;
    await explainFailure('outage', alice, bob, fromLine);
    throw e;
  } finally {
    await alice.context().close().catch(() => {});
    await bob.context().close().catch(() => {});
  }
});

// --- a network switch --------------------------------------------------------------------------
// Alice's machine changes address mid-call (as when a laptop moves to another network): her old
// address disappears, so every socket bound to it (media and the chat WebSocket) is dead for good.
// Her browser must notice, reconnect the socket from the new address, restart ICE there, and the
// call goes on with media on the new address.
test('switch: (6) Alice\'s address changes mid-call, the call moves with her', { timeout: 180_000 }, async () => {
  sh(NETNS, ['rules', 'routed']);
  const net = checkNetwork('routed');
  const r = { mode: 'switch', status: 'FAIL' };
  results.push(r);
  const fromLine = server.lines.length;
  const NEW_IP = '10.77.1.3';
  const lan = (...args) => sh('ip', ['-n', 'mx-lan', ...args]);
  const stale = serverHttpEndpoints();
  const [alice, bob] = await openPages();
  try {
    await placeCall(alice, bob, '+12015550193', '+12015550194', 'routed', r, stale);
    // The new address first, then the old one goes (the new one stays the interface's address).
    inNs('mx-lan', 'sysctl', ['-qw', 'net.ipv4.conf.mx-lan0.promote_secondaries=1']);
    lan('addr', 'add', `${NEW_IP}/24`, 'dev', 'mx-lan0');
    const t0 = Date.now();
    lan('addr', 'del', `${LAN_IP}/24`, 'dev', 'mx-lan0');
    try { lan('route', 'add', 'default', 'via', '10.77.1.1'); } catch { /* still there */ }

    const rate = async (page) => {
      const a = framesDecoded(await callStats(page));
      await sleep(2000);
      return (framesDecoded(await callStats(page)) - a) / 2;
    };
    await eventually(async () => {
      const pairs = selectedPairs(await callStats(alice));
      return pairs.length === 2 && pairs.every((p) => p.local?.address === NEW_IP) && (await rate(alice)) >= 10 && (await rate(bob)) >= 10;
    }, { timeout: 90_000, interval: 500, message: 'both decode at least 10 frames/s with Alice\'s media on her new address' });
    const movedMs = Date.now() - t0;
    assert.equal(await alice.evaluate(() => window.mesconCall.state), 'active', 'the call is still up');
    assert.ok(serverHttpPeers(stale).has(NEW_IP), `Alice's socket reconnected from ${NEW_IP}: ${[...serverHttpPeers(stale)]}`);
    r.extra = `${net}; ${LAN_IP} -> ${NEW_IP}: both decoding on the new address after ${movedMs} ms; alice[${describePairs(selectedPairs(await callStats(alice)))}]`;
    await alice.locator(tid('call-hangup')).click();
    for (const page of [alice, bob]) await page.locator(tid('call-window')).waitFor({ state: 'detached', timeout: 15_000 });
    r.status = 'ok';
  } catch (e) {
    r.extra = `${r.extra ? r.extra + '; ' : ''}FAILED: ${String(e.message).split('\n')[0].slice(0, 300)}`;
    await explainFailure('switch', alice, bob, fromLine);
    throw e;
  } finally {
    await alice.context().close().catch(() => {});
    await bob.context().close().catch(() => {});
    try { lan('addr', 'add', `${LAN_IP}/24`, 'dev', 'mx-lan0'); } catch { /* already back */ }
    try { lan('addr', 'del', `${NEW_IP}/24`, 'dev', 'mx-lan0'); } catch { /* not there */ }
    try { lan('route', 'add', 'default', 'via', '10.77.1.1'); } catch { /* still there */ }
  }
});
