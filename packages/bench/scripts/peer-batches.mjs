// Peers in batches (issue 16), measured through the overlays directly: for each backend (vxlan mode), a node
// of a testkit topology programs N simulated peers in one ensurePeers call (time to all programmed), then 10%
// of them leave in one removePeers call; for comparison, the same peers one ensurePeer call at a time (what
// PeerSync did before batching). Reported, not asserted. Run as root after `npm run build`:
//   node packages/bench/scripts/peer-batches.mjs [--sizes 100,500,1000] [--one-at-a-time 100] [--backends iproute2,ovs]
// The simulated peers' records carry underlay addresses from 198.18.0.10 upwards (past 198.18.0.255 for more
// than 245 peers: records only; nothing is sent to them except, with ovs netdev, the priming packet-outs,
// which stay in the test namespace) and subnets 198.19.16.0/28 upwards.
import { parseArgs } from 'node:util';
import { Subnet, parseIpv4Address } from '@nodenet/core';
import { Iproute2Overlay } from '@nodenet/backend-iproute2';
import { OvsDataplane, OvsOverlay } from '@nodenet/backend-ovs';
import { LinuxHostProbe } from '@nodenet/linux';
import { PrivateOvs, TestScope, Topology } from '@nodenet/testkit';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100,500,1000' },
    'one-at-a-time': { type: 'string', default: '100' },
    backends: { type: 'string', default: 'iproute2,ovs' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const oneAtATime = values['one-at-a-time'].split(',').filter(Boolean).map(Number);
const backends = values.backends.split(',');

function simulatedPeers(count) {
  return Array.from({ length: count }, (_, i) => {
    const u = 10 + i;
    const s = 256 + i; // 198.19.16.0/28 upwards: clear of the node's own 198.19.1.0/24
    return {
      name: `sim-${i}`,
      underlayAddress: parseIpv4Address(`198.18.${u >> 8}.${u & 255}`, 'underlay'),
      subnet: Subnet.of(`198.19.${s >> 4}.${(s & 15) * 16}/28`),
    };
  });
}

/** Warnings and errors of the overlays (e.g. a priming packet-out refused), printed; the rest dropped. */
const logger = {
  warn: (o, m) => console.error('WARN', m, JSON.stringify(o)),
  error: (o, m) => console.error('ERROR', m, JSON.stringify(o)),
  info: () => {},
  debug: () => {},
  trace: () => {},
  fatal: () => {},
  child: () => logger,
};

const ms = (t0) => Math.round((performance.now() - t0) * 10) / 10;

async function check(result, what) {
  if (result.failed.size > 0)
    throw new Error(`${what}: ${result.failed.size} peers failed, e.g. ${[...result.failed.values()][0]?.message}`);
}

async function measure(backend, overlay) {
  const rows = [];
  for (const n of sizes) {
    const peers = simulatedPeers(n);
    await overlay.removeStalePeers([]);
    let t0 = performance.now();
    await check(await overlay.ensurePeers(peers), `join ${n}`);
    const joinMs = ms(t0);
    const leaving = peers.filter((_, i) => i % 10 === 0);
    t0 = performance.now();
    await check(await overlay.removePeers(leaving), `leave ${leaving.length}`);
    const leaveMs = ms(t0);
    await check(await overlay.removePeers(peers), 'clean up');
    rows.push({ backend, peers: n, mode: 'batch', joinMs, leaveMs, leaving: leaving.length });
    console.log(JSON.stringify(rows.at(-1)));
  }
  for (const n of oneAtATime) {
    const peers = simulatedPeers(n);
    await overlay.removeStalePeers([]);
    let t0 = performance.now();
    for (const p of peers) await overlay.ensurePeer(p);
    const joinMs = ms(t0);
    const leaving = peers.filter((_, i) => i % 10 === 0);
    t0 = performance.now();
    for (const p of leaving) await overlay.removePeer(p);
    const leaveMs = ms(t0);
    await check(await overlay.removePeers(peers), 'clean up');
    rows.push({ backend, peers: n, mode: 'one-at-a-time', joinMs, leaveMs, leaving: leaving.length });
    console.log(JSON.stringify(rows.at(-1)));
  }
  return rows;
}

const scope = await TestScope.create();
const rows = [];
try {
  const topology = await Topology.create(scope, { nodes: 2 });
  if (backends.includes('iproute2')) {
    const node = topology.node(1);
    const host = await new LinuxHostProbe({ netns: node.ns }).probeHost(parseIpv4Address(node.address, 'underlay'));
    const overlay = new Iproute2Overlay({ mode: 'vxlan', vni: 4242, port: 4789, host, netns: node.ns, logger });
    await overlay.ensureEndpoint({ name: node.name, underlayAddress: host.underlayAddress, subnet: Subnet.of('198.19.1.0/24') });
    rows.push(...(await measure('iproute2', overlay)));
  }
  if (backends.includes('ovs')) {
    const node = topology.node(2);
    const ovs = await PrivateOvs.start(scope, node.ns);
    const dataplane = new OvsDataplane({ ...ovs.config, netns: node.ns });
    scope.defer('close the dataplane', () => dataplane.close());
    const gateway = parseIpv4Address('198.19.2.1', 'gateway');
    const { macForAddress, CNI_NAME } = await import('@nodenet/core');
    await dataplane.ensureCni({ name: CNI_NAME, gateway, subnet: Subnet.of('198.19.2.0/24'), mtu: 1450, mac: macForAddress(gateway) });
    const host = await new LinuxHostProbe({ netns: node.ns }).probeHost(parseIpv4Address(node.address, 'underlay'));
    const overlay = new OvsOverlay({ mode: 'vxlan', vni: 4242, port: 4789, host, ...ovs.config, netns: node.ns, logger });
    scope.defer('close the overlay', () => overlay.close());
    await overlay.ensureEndpoint({ name: node.name, underlayAddress: host.underlayAddress, subnet: Subnet.of('198.19.2.0/24') });
    rows.push(...(await measure('ovs', overlay)));
    // The bulk priming of the last large batch runs in the background: give it a moment to report.
    await new Promise((r) => setTimeout(r, 3000));
  }
} finally {
  await scope.cleanup();
}
console.table(rows);
