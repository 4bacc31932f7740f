// A tiny TCP/UDP echo server for the integration tests, run inside a namespace:
//   node echo-server.mjs tcp|udp PORT NAME [BIND]
// Answers every connection / datagram with `NAME peer=ADDRESS got=PAYLOAD` and logs the same line on
// stdout (after a first line `ready`), so a test sees both what the client got and who the server saw.
import net from 'node:net';
import dgram from 'node:dgram';

const [proto, portText, name, bind = '0.0.0.0'] = process.argv.slice(2);
const port = Number(portText);
const line = (peer, data) => `${name} peer=${peer} got=${String(data).trim()}`;

if (proto === 'tcp') {
  const server = net.createServer((socket) => {
    socket.once('data', (data) => {
      const text = line(socket.remoteAddress, data);
      console.log(text);
      socket.end(text + '\n');
    });
    socket.on('error', () => {});
  });
  server.listen(port, bind, () => console.log('ready'));
} else if (proto === 'udp') {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (data, rinfo) => {
    const text = line(rinfo.address, data);
    console.log(text);
    socket.send(text + '\n', rinfo.port, rinfo.address);
  });
  socket.bind(port, bind, () => console.log('ready'));
} else {
  console.error(`unknown protocol ${proto}`);
  process.exit(2);
}
process.on('SIGTERM', () => process.exit(0));
