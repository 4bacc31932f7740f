// A TCP or UDP echo server for tests, run inside a namespace by the test kit.
// Usage: node echo-server.mjs '{"protocol":"tcp","port":8080,"host":"0.0.0.0"}'
// Prints one JSON line per event on stdout: {"event":"listening",...}, then for every TCP connection
// (after the client half-closes) or UDP datagram {"event":"received","peerAddress":...,"payload":...},
// and sends the payload back unchanged.
import net from 'node:net';
import dgram from 'node:dgram';

const { protocol, port, host = '0.0.0.0' } = JSON.parse(process.argv[2] ?? '{}');
const emit = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

if (protocol === 'tcp') {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const chunks = [];
    const peer = {
      peerAddress: socket.remoteAddress,
      peerPort: socket.remotePort,
      localAddress: socket.localAddress,
      localPort: socket.localPort,
    };
    socket.on('data', (c) => chunks.push(c));
    socket.on('end', () => {
      const payload = Buffer.concat(chunks).toString('utf8');
      emit({ event: 'received', protocol, ...peer, payload });
      socket.end(payload);
    });
    socket.on('error', (e) => emit({ event: 'error', message: e.message, ...peer }));
  });
  server.on('error', (e) => {
    emit({ event: 'fatal', message: e.message });
    process.exit(1);
  });
  server.listen(port, host, () => emit({ event: 'listening', protocol, host, port: server.address().port }));
} else if (protocol === 'udp') {
  // An IPv6 host (it holds a ':') needs an IPv6 socket.
  const socket = dgram.createSocket(String(host).includes(':') ? 'udp6' : 'udp4');
  socket.on('message', (msg, rinfo) => {
    emit({ event: 'received', protocol, peerAddress: rinfo.address, peerPort: rinfo.port, payload: msg.toString('utf8') });
    socket.send(msg, rinfo.port, rinfo.address);
  });
  socket.on('error', (e) => {
    emit({ event: 'fatal', message: e.message });
    process.exit(1);
  });
  socket.bind(port, host, () => emit({ event: 'listening', protocol, host, port: socket.address().port }));
} else {
  emit({ event: 'fatal', message: `unknown protocol ${protocol}` });
  process.exit(2);
}
process.on('SIGTERM', () => process.exit(0));
