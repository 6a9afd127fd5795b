// An independent check of fan-out, with a client that is not the project's own load generator:
// Node's `ws` library. One publisher and N subscribers join one room of a running arqonbusd;
// the publisher sends M messages of about 110 bytes, keeping W in flight (counted at the first
// subscriber); the figure is deliveries per second of the server's CPU time (utime + stime from
// /proc/PID/stat over the run), the measure docs/benchmarks.md uses.
//
//   npm install --prefix DIR ws
//   NODE_PATH=DIR/node_modules node bench/node-fanout.mjs PORT SERVER_PID [N [M [W]]]
//
// Prints one JSON line. Defaults: N 100 subscribers, M 20000 messages, W 100 in flight.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const WebSocket = require('ws');

const [port, pid] = process.argv.slice(2, 4).map(Number);
const subscribers = Number(process.argv[4] ?? 100);
const messages = Number(process.argv[5] ?? 20000);
const window = Number(process.argv[6] ?? 100);
if (!port || !pid) {
  console.error('usage: node-fanout.mjs PORT SERVER_PID [SUBSCRIBERS [MESSAGES [WINDOW]]]');
  process.exit(2);
}
const room = `node-fanout-${process.pid}`;
const ticks = 100; // USER_HZ

function serverCpuSeconds() {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / ticks; // utime, stime
}

function open(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
    ws.once('error', reject);
    ws.once('message', () => resolve(ws)); // the welcome
  });
}

let joins = 0;
function join(ws) {
  return new Promise((resolve, reject) => {
    const id = `arq_${Date.now()}_${++joins}_a0b1c2`; // the protocol's id form
    const onMessage = (data) => {
      const m = JSON.parse(data);
      if (m.request_id !== id) return;
      ws.off('message', onMessage);
      if (m.status === 'success') resolve();
      else reject(new Error(JSON.stringify(m)));
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ type: 'command', id, command: 'join_room', args: { room } }));
  });
}

const subs = await Promise.all(Array.from({ length: subscribers }, () => open('/')));
await Promise.all(subs.map(join));
const pub = await open('/?ack=0');
await join(pub);

let delivered = 0;
let atFirst = 0;
let sent = 0;
let done;
const finished = new Promise((resolve) => { done = resolve; });
const total = subscribers * messages;
const payload = 'x'.repeat(40);
function pump() {
  while (sent < messages && sent - atFirst < window) {
    pub.send(`{"type":"message","room":"${room}","payload":{"n":${sent},"p":"${payload}"}}`);
    sent++;
  }
}
subs.forEach((ws, i) => ws.on('message', () => {
  delivered++;
  if (i === 0) {
    atFirst++;
    pump();
  }
  if (delivered === total) done();
}));

const cpu0 = serverCpuSeconds();
const t0 = process.hrtime.bigint();
pump();
await finished;
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = serverCpuSeconds() - cpu0;
console.log(JSON.stringify({
  client: `ws ${require('ws/package.json').version}`, subscribers, messages, window,
  deliveries: delivered, seconds: +seconds.toFixed(3), server_cpu_s: +cpu.toFixed(2),
  deliveries_per_s: Math.round(delivered / seconds),
  deliveries_per_server_cpu_s: cpu > 0 ? Math.round(delivered / cpu) : null,
}));
for (const ws of [...subs, pub]) ws.terminate();
