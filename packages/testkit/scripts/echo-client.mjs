// A TCP or UDP echo client for tests, run inside a namespace by the test kit.
// Usage: node echo-client.mjs '{"protocol":"tcp","host":"198.18.0.1","port":8080,"payload":"x","timeoutMs":2000,"bind":"198.19.1.9","localPort":40000}'
// Prints one JSON line: {"ok":true,"reply":...,"localAddress":...,"localPort":...} or {"ok":false,"error":...}.
// TCP: connect, send the payload, half-close, read the reply to the end. UDP: send the datagram (again
// every 250 ms, since a first datagram can be lost while a neighbour is resolved) until a reply arrives.
import net from 'node:net';
import dgram from 'node:dgram';

const { protocol, host, port, payload, timeoutMs = 2000, bind, localPort } = JSON.parse(process.argv[2] ?? '{}');
let finished = false;
const finish = (o) => {
  if (finished) return;
  finished = true;
  process.stdout.write(`${JSON.stringify(o)}\n`);
  process.exit(0);
};
setTimeout(() => finish({ ok: false, error: `timeout after ${timeoutMs} ms` }), timeoutMs);

if (protocol === 'tcp') {
  const socket = net.connect({
    host,
    port,
    allowHalfOpen: true,
    ...(bind ? { localAddress: bind } : {}),
    ...(localPort ? { localPort } : {}),
  });
  const chunks = [];
  socket.on('connect', () => socket.end(payload));
  socket.on('data', (c) => chunks.push(c));
  socket.on('end', () =>
    finish({ ok: true, reply: Buffer.concat(chunks).toString('utf8'), localAddress: socket.localAddress, localPort: socket.localPort }),
  );
  socket.on('error', (e) => finish({ ok: false, error: e.code ?? e.message }));
} else if (protocol === 'udp') {
  // An IPv6 host (it holds a ':') needs an IPv6 socket.
  const socket = dgram.createSocket(String(host).includes(':') ? 'udp6' : 'udp4');
  socket.on('message', (msg, rinfo) => {
    const a = socket.address();
    finish({ ok: true, reply: msg.toString('utf8'), from: rinfo.address, localAddress: a.address, localPort: a.port });
  });
  socket.on('error', (e) => finish({ ok: false, error: e.code ?? e.message }));
  socket.bind({ port: localPort ?? 0, ...(bind ? { address: bind } : {}) }, () => {
    const send = () => socket.send(payload, port, host, (e) => e && finish({ ok: false, error: e.code ?? e.message }));
    send();
    setInterval(send, 250).unref();
  });
} else {
  finish({ ok: false, error: `unknown protocol ${protocol}` });
}
