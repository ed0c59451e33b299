// Network probe for the NAT matrix, run inside a namespace with `ip netns exec`.
//   node probe.mjs server HOST PORT1 PORT2 [TCPPORT]  echo the sender's address back on two UDP ports
//                                                     (and on a TCP port), until killed
//   node probe.mjs rtt HOST PORT COUNT                UDP round trips: answered count, median RTT
//   node probe.mjs tcp HOST PORT                      connect; prints the address the server saw, or null
//   node probe.mjs client HOST PORT1 PORT2            from ONE UDP socket, ask both ports what address
//                                                     they saw; prints one JSON line
// The client's answer tells the mapping: the address the server saw, and whether the outside port
// changed with the destination (endpoint-dependent mapping = symmetric NAT).
import dgram from 'node:dgram';
import net from 'node:net';

const [mode, host, p1, p2, tcp] = process.argv.slice(2);

if (mode === 'server') {
  for (const port of [p1, p2]) {
    const s = dgram.createSocket('udp4');
    s.on('message', (m, rinfo) => s.send(JSON.stringify({ address: rinfo.address, port: rinfo.port, echo: m.toString() }), rinfo.port, rinfo.address));
    s.bind(Number(port), host);
  }
  if (tcp) net.createServer((c) => c.end(JSON.stringify({ address: c.remoteAddress, port: c.remotePort }))).listen(Number(tcp), host);
  console.log('ready');
} else if (mode === 'client') {
  const s = dgram.createSocket('udp4');
  const seen = {};
  s.on('message', (m, rinfo) => { seen[rinfo.port] = JSON.parse(m.toString()); });
  s.bind(0, () => {
    const local = s.address().port;
    let n = 0;
    const t = setInterval(() => {
      for (const port of [p1, p2]) if (!seen[port]) s.send('probe', Number(port), host);
      if ((seen[p1] && seen[p2]) || ++n >= 10) {
        clearInterval(t);
        s.close();
        console.log(JSON.stringify({ local_port: local, a: seen[p1] || null, b: seen[p2] || null }));
      }
    }, 100);
  });
} else if (mode === 'rtt') {
  // `rtt HOST PORT COUNT`: COUNT numbered UDP pings 20 ms apart; prints loss and the median RTT.
  const count = Number(p2 || 100);
  const s = dgram.createSocket('udp4');
  const sent = new Map();
  const rtts = [];
  s.on('message', (m) => {
    const id = JSON.parse(m.toString()).echo;
    if (sent.has(id)) { rtts.push(performance.now() - sent.get(id)); sent.delete(id); }
  });
  s.bind(0, () => {
    let i = 0;
    const t = setInterval(() => {
      if (i < count) { const id = String(i++); sent.set(id, performance.now()); s.send(id, Number(p1), host); return; }
      clearInterval(t);
      setTimeout(() => {
        s.close();
        rtts.sort((x, y) => x - y);
        const median = rtts.length ? rtts[Math.floor(rtts.length / 2)] : null;
        console.log(JSON.stringify({ sent: count, answered: rtts.length, median_rtt_ms: median && Math.round(median * 10) / 10 }));
      }, 500);
    }, 20);
  });
} else if (mode === 'tcp') {
  const c = net.connect({ host, port: Number(p1), timeout: 1500 });
  let data = '';
  c.on('data', (d) => { data += d; });
  c.on('end', () => { console.log(data || 'null'); });
  c.on('timeout', () => { console.log('null'); c.destroy(); });
  c.on('error', () => { console.log('null'); });
} else {
  console.error('usage: probe.mjs server|client|tcp ...');
  process.exit(2);
}
