/**
 * Property-based fuzzing of the whole API (Network and NetworkAdmin) against the real daemon in a test
 * namespace. fast-check generates requests for every RPC, a part of them mutated as wire bytes, and sends
 * them as raw bytes. After each case:
 *   - no INTERNAL or UNKNOWN status (a message that does not decode is INVALID_ARGUMENT);
 *   - a refused request changed nothing: the node's links and IPv4 routes, nodenet's nftables tables, the
 *     state directory, the links of the instance namespaces and (ovs) the switch's ports and flows are as
 *     before it;
 *   - the daemon answers health with SERVING.
 * Then batches of 8 requests at once (a tenth as many batches as cases): no INTERNAL/UNKNOWN, SERVING, and
 * after each batch the instances the kernel shows are exactly the recorded ones and the ones reported OK.
 * Both backends: iproute2 with NODENET_FUZZ_RUNS cases (default 200; the soak runs 10,000), ovs with a
 * quarter as many. NODENET_FUZZ_SEED replays a run (fast-check prints the seed of a failing one).
 */
import { statfsSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import fc from 'fast-check';
import { CreateInterfaceResponse } from '@nodenet/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  API_METHODS,
  Daemon,
  PrivateOvs,
  RawApiClient,
  TestScope,
  Topology,
  completeUnderlayChecksums,
  links,
  nftRuleset,
  routes,
  summarizeLink,
  withoutVolatile,
} from '@nodenet/testkit';
import { apiCases, oneOfEach, type FuzzCase } from './fuzz/api-requests.js';

const RUNS = Number(process.env.NODENET_FUZZ_RUNS ?? 200);
const SEED = process.env.NODENET_FUZZ_SEED === undefined ? undefined : Number(process.env.NODENET_FUZZ_SEED);
const HEALTH_CHECK = '/grpc.health.v1.Health/Check';
const SERVING = Buffer.from([0x08, 0x01]);
/** statfs f_type of nsfs: a file of that type is a namespace. */
const NSFS_MAGIC = 0x6e736673;

const BACKENDS: readonly { readonly backend: 'iproute2' | 'ovs'; readonly runs: number }[] = [
  { backend: 'iproute2', runs: RUNS },
  { backend: 'ovs', runs: Math.max(1, Math.ceil(RUNS / 4)) },
];

describe.each(BACKENDS)('API fuzzing ($backend)', ({ backend, runs }) => {
  let scope: TestScope;
  let daemon: Daemon;
  let client: RawApiClient;
  let namespaces: string[];
  let ovs: PrivateOvs | undefined;
  const live = new Set<string>();

  beforeAll(async () => {
    scope = await TestScope.create();
    const topo = await Topology.create(scope, { nodes: 1 });
    const node = topo.node(1);
    namespaces = [await topo.createInstanceNamespace(), await topo.createInstanceNamespace()];
    let config: Record<string, unknown> = { reconcileIntervalSeconds: 86400 };
    if (backend === 'ovs') {
      // The userspace datapath (no openvswitch module here) needs complete checksums from the underlay.
      await completeUnderlayChecksums(node.ns, node.underlayIfname);
      ovs = await PrivateOvs.start(scope, node.ns);
      config = { ...config, backend: 'ovs', ovs: ovs.config };
    }
    daemon = await Daemon.start({ scope, node, config });
    await daemon.network().createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
    client = new RawApiClient(daemon.target);
  });
  afterAll(async () => {
    client?.close();
    await scope?.cleanup();
  });

  /** What a refused request must leave as it was (one string, so a difference shows in the failure). */
  async function nodeState(): Promise<string> {
    const [nodeLinks, nodeRoutes, ruleset, state, switchState, ...instanceLinks] = await Promise.all([
      links(daemon.node.ns),
      routes(daemon.node.ns),
      nftRuleset(daemon.node.ns),
      daemon.readState(),
      ovs
        ? Promise.all([
            ovs.vsctl(['list-ports', 'nodenet0']).then((r) => r.stdout.split('\n').sort()),
            ovs.flows('nodenet0').then((f) => f.sort()),
          ])
        : null,
      ...namespaces.map((ns) => links(ns)),
    ]);
    const nodenetTables = ruleset.filter((entry) => {
      const body = Object.values(entry as Record<string, { table?: string; name?: string }>)[0];
      return 'table' in (entry as object) ? body?.name === 'nodenet' : body?.table === 'nodenet';
    });
    return JSON.stringify(
      {
        links: nodeLinks.map(summarizeLink),
        // Without flags: `linkdown` follows the carrier, which the kernel settles after the request.
        routes: nodeRoutes.map(({ flags: _flags, ...route }) => route),
        nftables: withoutVolatile(nodenetTables),
        state,
        switch: switchState,
        instanceNamespaces: instanceLinks.map((ls) => ls.map(summarizeLink)),
      },
      null,
      1,
    );
  }

  /**
   * Whether the request may be sent: a `netns` it names must not reach a namespace that is not this test's
   * (a flipped digit can turn one name into another test's). Paths under /proc/self are the daemon's own,
   * which lives in the test's node namespace.
   */
  function safeToSend(method: string, bytes: Uint8Array): { decodes: boolean; safe: boolean } {
    let request: { netns?: string };
    try {
      request = API_METHODS[method]!.decode(Buffer.from(bytes)) as { netns?: string };
    } catch {
      return { decodes: false, safe: true };
    }
    const netns = request.netns;
    if (netns === undefined || netns === '' || netns.includes('\0') || namespaces.includes(netns)) return { decodes: true, safe: true };
    if (/^\/proc\/(self|thread-self)\//.test(netns)) return { decodes: true, safe: true };
    const path = isAbsolute(netns) ? netns : join('/run/netns', netns);
    try {
      return { decodes: true, safe: statfsSync(path).type !== NSFS_MAGIC };
    } catch {
      return { decodes: true, safe: true }; // does not exist (or cannot be reached): no namespace behind it
    }
  }

  it(
    `${runs} generated requests for every RPC, some as mutated wire bytes: no INTERNAL/UNKNOWN, refused ones change nothing, SERVING throughout`,
    async () => {
      const tally = new Map<string, number>();
      let skipped = 0;
      let before = await nodeState();
      const started = performance.now();
      const world = { gateway: '198.19.1.1', subnet: '198.19.1.0/24', namespaces, liveHandles: () => [...live] };

      await fc.assert(
        fc.asyncProperty(apiCases(world), async (c: FuzzCase) => {
          const bytes = c.bytes();
          const { decodes, safe } = safeToSend(c.method, bytes);
          if (!safe) {
            skipped++;
            return;
          }
          const outcome = await client.call(c.method, bytes, { timeoutMs: 20_000 });
          const key = `${c.method} ${outcome.codeName}`;
          tally.set(key, (tally.get(key) ?? 0) + 1);
          const context = `${c.description} -> ${outcome.codeName}: ${outcome.details}`;

          expect(['INTERNAL', 'UNKNOWN', 'DEADLINE_EXCEEDED'], context).not.toContain(outcome.codeName);
          if (!decodes) expect(outcome.codeName, context).toBe('INVALID_ARGUMENT');

          if (outcome.codeName === 'OK') {
            if (c.method === 'Network/CreateInterface') live.add(CreateInterfaceResponse.decode(outcome.response!).interfaceName);
            if (c.method === 'Network/DeleteInterface') {
              const name = (API_METHODS[c.method]!.decode(Buffer.from(bytes)) as { interfaceName: string }).interfaceName;
              live.delete(name);
            }
          }
          const after = await nodeState();
          if (outcome.codeName !== 'OK') expect(after, `a refused request changed the node: ${context}`).toBe(before);
          before = after;

          const health = await client.call(HEALTH_CHECK, Buffer.alloc(0), { timeoutMs: 5000 });
          expect(health.response, `health after ${context}`).toEqual(SERVING);
        }),
        {
          numRuns: runs,
          endOnFailure: true,
          examples: oneOfEach(world).map((c): [FuzzCase] => [c]),
          ...(SEED !== undefined ? { seed: SEED } : {}),
        },
      );
      const summary = [...tally.entries()].sort().map(([k, n]) => `${k}: ${n}`);
      const msPerCase = Math.round((performance.now() - started) / runs);
      console.log(
        `api fuzz (${backend}): ${runs} cases (${msPerCase} ms each with the checks), ${skipped} not sent (netns of another owner), ${live.size} instances alive\n  ${summary.join('\n  ')}`,
      );
      // The generators reach past validation: some creates succeed, every RPC is exercised.
      expect(summary.some((s) => s.startsWith('Network/CreateInterface OK'))).toBe(true);
      expect(new Set([...tally.keys()].map((k) => k.split(' ')[0])).size).toBe(Object.keys(API_METHODS).length);
    },
    Math.max(180_000, runs * 1000),
  ); // a case takes 0.1-0.25 s on a busy 2-core machine

  /** Instance handles the kernel shows (link aliases `nodenet:nni-...` in the node namespace) and the state dir records. */
  async function kernelAndRecords(): Promise<{ kernel: string[]; records: string[] }> {
    const [nodeLinks, state] = await Promise.all([links(daemon.node.ns), daemon.readState()]);
    const kernel = new Set(
      nodeLinks.map((l) => /^nodenet:(nni-[0-9a-f]{8})$/.exec(l.ifalias ?? '')?.[1]).filter((h): h is string => h !== undefined),
    );
    const records = Object.keys(state)
      .map((f) => /^instances\/(nni-[0-9a-f]{8})\.json$/.exec(f)?.[1])
      .filter((h): h is string => h !== undefined);
    return { kernel: [...kernel].sort(), records: records.sort() };
  }

  const batches = Math.max(2, Math.ceil(runs / 10));
  it(
    `${batches} batches of 8 concurrent generated requests: no INTERNAL/UNKNOWN, SERVING, the kernel's instances are the recorded ones after each batch`,
    async () => {
      const world = { gateway: '198.19.1.1', subnet: '198.19.1.0/24', namespaces, liveHandles: () => [...live] };
      await fc.assert(
        fc.asyncProperty(fc.array(apiCases(world), { minLength: 8, maxLength: 8 }), async (batch: FuzzCase[]) => {
          const sendable = batch.map((c) => ({ c, bytes: c.bytes() })).filter(({ c, bytes }) => safeToSend(c.method, bytes).safe);
          const outcomes = await Promise.all(sendable.map(({ c, bytes }) => client.call(c.method, bytes, { timeoutMs: 20_000 })));
          outcomes.forEach((o, i) => {
            const { c, bytes } = sendable[i]!;
            expect(['INTERNAL', 'UNKNOWN', 'DEADLINE_EXCEEDED'], `${c.description} -> ${o.codeName}: ${o.details}`).not.toContain(
              o.codeName,
            );
            if (o.codeName === 'OK' && c.method === 'Network/CreateInterface')
              live.add(CreateInterfaceResponse.decode(o.response!).interfaceName);
            if (o.codeName === 'OK' && c.method === 'Network/DeleteInterface')
              live.delete((API_METHODS[c.method]!.decode(Buffer.from(bytes)) as { interfaceName: string }).interfaceName);
          });
          const { kernel, records } = await kernelAndRecords();
          expect(kernel, `after ${sendable.map(({ c }, i) => `${c.description} -> ${outcomes[i]!.codeName}`).join('; ')}`).toEqual(records);
          expect(records).toEqual([...live].sort());
          const health = await client.call(HEALTH_CHECK, Buffer.alloc(0), { timeoutMs: 5000 });
          expect(health.response).toEqual(SERVING);
        }),
        { numRuns: batches, endOnFailure: true, ...(SEED !== undefined ? { seed: SEED } : {}) },
      );
    },
    Math.max(180_000, batches * 8 * 1000),
  );
});
