#!/usr/bin/env node
// Latency of one CreateInterface through the real daemon (gRPC over its unix socket), per backend: the
// netns extension (the daemon moves, names and addresses eth0 in an existing namespace) plus two published
// ports, measured sequentially on a node that already has N other instance ports (created with no netns,
// left in the node namespace, as a runtime-style create). Each measured create is deleted again before the
// next (the delete is timed too), so the node stays at N ports. Namespaces (nnt-<pid>-*) are removed at the end.
// Runs on the built packages: `npm run build` at the repository root first. As root:
//
//   node packages/conformance/scripts/create-latency.mjs [--backends iproute2,ovs] [--ports 0,10,100,200] [--creates 50]
//
// Prints one line per backend and port count: p50/p90/max of create and delete in ms.
import { parseArgs } from 'node:util';
import { NodeFixture } from '../dist/fixture.js';

const { values } = parseArgs({
  options: {
    backends: { type: 'string', default: 'iproute2,ovs' },
    ports: { type: 'string', default: '0,10,100,200' },
    creates: { type: 'string', default: '50' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('see the comment at the top of packages/conformance/scripts/create-latency.mjs');
  process.exit(0);
}
const list = (name) =>
  values[name]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
const levels = list('ports').map(Number);
const creates = Number(values.creates);
if (levels.some((n) => !Number.isInteger(n) || n < 0 || n > 3000) || !Number.isInteger(creates) || creates < 1) {
  console.error('--ports takes whole numbers 0..3000, --creates a positive whole number');
  process.exit(2);
}
levels.sort((a, b) => a - b);

const SUBNET = '198.19.16.0/20';
const GATEWAY = '198.19.16.1';
/** Host i of the /20 (i from 0): 198.19.16.2 onwards. */
const addressOf = (i) => `198.19.${16 + Math.floor((i + 2) / 256)}.${(i + 2) % 256}`;

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}
function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const f = (x) => x.toFixed(1);
  return `p50 ${f(quantile(s, 0.5))}  p90 ${f(quantile(s, 0.9))}  max ${f(s.at(-1))}`;
}

for (const backend of list('backends')) {
  const f = await NodeFixture.start({ backend, cni: false, config: { reconcileIntervalSeconds: 86_400 } });
  try {
    await f.api.createContainerNetworkInterface({ ipAddress: GATEWAY, subNetwork: SUBNET });
    // One namespace per measured create is not needed: after DeleteInterface the namespace is empty again.
    const ns = await f.topology.createInstanceNamespace();
    let filled = 0;
    let port = 20000;
    for (const level of levels) {
      // Fill up to `level` ports (25 at a time).
      while (filled < level) {
        const batch = [];
        for (let j = filled; j < Math.min(filled + 25, level); j++) batch.push(f.api.createInterface({ ipAddress: addressOf(j) }));
        await Promise.all(batch);
        filled = Math.min(filled + 25, level);
      }
      const createMs = [];
      const deleteMs = [];
      for (let i = 0; i < creates; i++) {
        const address = addressOf(3000 + i);
        const ports = [port++, port++];
        const t0 = performance.now();
        const r = await f.api.createInterface({ ipAddress: address, ports, netns: ns });
        const t1 = performance.now();
        await f.api.deleteInterface({ interfaceName: r.interfaceName });
        const t2 = performance.now();
        createMs.push(t1 - t0);
        deleteMs.push(t2 - t1);
      }
      console.log(
        `${backend.padEnd(8)} ${String(level).padStart(4)} other ports: create (netns + 2 ports) ${stats(createMs)} ms | delete ${stats(deleteMs)} ms (${creates} each)`,
      );
    }
  } finally {
    await f.close();
  }
}
process.exit(0);
