#!/usr/bin/env node
/**
 * Records what ovs-ofctl sends to ovs-vswitchd and what comes back (strace of its socket calls), as the
 * fixtures the OpenFlow codec's unit tests compare against. Run as root against a running switch:
 *   node scripts/record-openflow.mjs unix:/path/BRIDGE.mgmt > test/fixtures/openflow-recorded.json
 *   node scripts/record-openflow.mjs unix:/path/BRIDGE.mgmt packet-out > test/fixtures/openflow-packet-out-recorded.json
 * (the packet-out cases need a port 1 on the bridge, e.g. a flow-based VXLAN port with ofport_request=1).
 * Each case: the ovs-ofctl arguments and the messages (hex) in each direction, table-features and
 * port-desc traffic (ovs-ofctl's own probing) left out. One case fails on purpose (table 254 is read-only:
 * the switch's error reply).
 */
import { straceSocketCalls } from './strace-socket.mjs';

const target = process.argv[2];
const caseSet = process.argv[3] ?? 'flows';
if (!target || !['flows', 'packet-out'].includes(caseSet))
  throw new Error('usage: record-openflow.mjs unix:/path/BRIDGE.mgmt [flows|packet-out]');

const CASES = [
  ['add-flow', 'cookie=0x6e6e000000000000,table=0,priority=0,actions=drop'],
  ['add-flow', 'cookie=0x6e6e000000000000,table=0,priority=100,in_port=LOCAL,actions=goto_table:10'],
  ['add-flow', 'cookie=0x6e6e000000000000,table=10,priority=0,actions=NORMAL'],
  [
    'add-flow',
    'cookie=0x6e6e000000000000,table=30,priority=100,ip,nw_dst=198.19.5.1,actions=set_field:02:00:00:00:05:01->eth_dst,output:LOCAL',
  ],
  ['add-flow', 'cookie=0x6e6e010000001a2b,table=0,priority=200,ip,in_port=3,nw_src=198.19.5.7,actions=goto_table:10'],
  ['add-flow', 'cookie=0x6e6e010000001a2b,table=0,priority=200,arp,in_port=3,arp_spa=198.19.5.7,actions=goto_table:10'],
  [
    'add-flow',
    'cookie=0x6e6e010000001a2b,table=30,priority=100,ip,nw_dst=198.19.5.7,actions=set_field:02:00:00:00:05:01->eth_src,set_field:02:aa:bb:cc:dd:07->eth_dst,dec_ttl,output:3',
  ],
  ['add-flow', 'cookie=0x6e6e0300c6120002,table=0,priority=150,ip,tun_src=198.18.0.2,in_port=1,nw_src=198.19.6.0/24,actions=goto_table:30'],
  [
    'add-flow',
    'cookie=0x6e6e0300c6120002,table=10,priority=110,ip,in_port=LOCAL,nw_dst=198.19.6.0/24,actions=set_field:198.18.0.2->tun_dst,output:1',
  ],
  [
    'add-flow',
    'cookie=0x6e6e0300c6120002,table=10,priority=100,ip,nw_dst=198.19.6.0/24,actions=dec_ttl,set_field:198.18.0.2->tun_dst,output:1',
  ],
  ['add-flow', 'table=10,priority=5,in_port=2,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,arp,arp_spa=1.2.3.4,actions=output:3'],
  ['mod-flows', 'cookie=0x6e6e000000000000/-1,table=10,actions=drop'],
  ['mod-flows', '--strict', 'table=10,priority=0,actions=NORMAL'],
  ['del-flows', 'cookie=0x6e6e010000001a2b/-1'],
  ['del-flows', 'cookie=0x6e6e030000000000/0xffffff0000000000'],
  ['del-flows', '--strict', 'table=30,priority=100,ip,nw_dst=198.19.5.1'],
  ['add-flow', 'table=254,priority=1,actions=drop'],
  ['probe'],
  ['show'],
  ['dump-flows', 'cookie=0x6e6e000000000000/0xffffff0000000000'],
  [
    '--bundle',
    'add-flows',
    '-',
    'add cookie=0x6e6e010000000001,table=0,priority=200,ip,in_port=4,nw_src=198.19.5.8,actions=goto_table:10\ndelete cookie=0x6e6e010000001a2b/-1\n',
  ],
];

/** Packet-outs as backend-ovs sends them (the userspace datapath's tunnel neighbour priming) and plain ones. */
const PACKET_OUT_CASES = [
  [
    'packet-out',
    'in_port=LOCAL,packet=ffffffffffff0200000000000800450000140000000040fdb3d900000000c6120002,actions=set_field:198.18.0.2->tun_dst,output:1',
  ],
  [
    'packet-out',
    'in_port=LOCAL,packet=ffffffffffff0200000000000800450000140000000040fdb1e600000000c61201f5,actions=set_field:198.18.1.245->tun_dst,output:1',
  ],
  ['packet-out', 'in_port=LOCAL,packet=ffffffffffff02000000000108004500001400000000400100000000000000000000,actions=output:1'],
];

/** Splits a byte stream into OpenFlow messages by the header's length. */
function messages(stream) {
  const out = [];
  for (let off = 0; off + 8 <= stream.length;) {
    const len = stream.readUInt16BE(off + 2);
    out.push(stream.subarray(off, off + len));
    off += len;
  }
  return out;
}

const probing = (m) => (m[1] === 18 || m[1] === 19) && [12, 13].includes(m.readUInt16BE(8));

const recorded = [];
for (const c of caseSet === 'flows' ? CASES : PACKET_OUT_CASES) {
  const bundle = c[0] === '--bundle';
  const argv = bundle ? ['--bundle', 'add-flows', target, '-'] : [c[0], target, ...c.slice(1)];
  const r = straceSocketCalls('ovs-ofctl', ['-O', 'OpenFlow14', ...argv], bundle ? c[3] : '');
  if (r.status !== 0 && !argv.includes('table=254,priority=1,actions=drop'))
    throw new Error(`ovs-ofctl ${argv.join(' ')}: ${r.stderr.slice(-2000)}`);
  const sent = Buffer.concat(r.sent);
  const received = Buffer.concat(r.received);
  recorded.push({
    command: ['ovs-ofctl', '-O', 'OpenFlow14', ...argv.map((a) => (a === target ? 'SWITCH' : a))],
    ...(bundle ? { stdin: c[3] } : {}),
    sent: messages(sent)
      .filter((m) => !probing(m))
      .map((m) => m.toString('hex')),
    received: messages(received)
      .filter((m) => !probing(m))
      .map((m) => m.toString('hex')),
    exitCode: r.status,
    stdout: r.stdout,
  });
}
process.stdout.write(`${JSON.stringify(recorded, null, 1)}\n`);
