import { describe, expect, it } from 'vitest';
import type { NodeNetwork } from '@nodenet/core';
import { ReconcileLoop, type ClusterLink } from '../src/cluster-link.js';
import { createLogger } from '../src/logger.js';

const silent = createLogger({ level: 'error', destination: { write: () => undefined } });

/** A node whose reconcile pass never ends until `finish` is called (a pass held up by a hung command). */
function hangingNode() {
  let started!: () => void;
  let finish!: () => void;
  const inPass = new Promise<void>((r) => (started = r));
  const finished = new Promise<void>((r) => (finish = r));
  const network = {
    reconcile: async () => {
      started();
      await finished;
      return { repairs: [], repairCounts: {} };
    },
  } as unknown as NodeNetwork;
  const cluster = { resync: async () => [] } as unknown as ClusterLink;
  return { network, cluster, inPass, finish: () => finish() };
}

describe('ReconcileLoop.stop', () => {
  it('waits for a pass in flight no longer than it is given', async () => {
    const node = hangingNode();
    const loop = new ReconcileLoop(node.network, node.cluster, 5, silent);
    loop.start();
    await node.inPass;
    const t0 = performance.now();
    let stopped = false;
    const stopping = loop.stop(50).then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(stopped).toBe(false); // it does wait while there is time left
    await stopping;
    expect(performance.now() - t0).toBeGreaterThanOrEqual(45);
    node.finish();
  });

  it('without a limit, returns once the pass in flight has ended', async () => {
    const node = hangingNode();
    const loop = new ReconcileLoop(node.network, node.cluster, 5, silent);
    loop.start();
    await node.inPass;
    let stopped = false;
    const stopping = loop.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 60));
    expect(stopped).toBe(false);
    node.finish();
    await stopping;
    expect(stopped).toBe(true);
  });
});
