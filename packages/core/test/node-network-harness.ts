/** NodeNetwork over the fakes, for unit tests: the fakes a test reads back, and the failures it expects. */
import { NodeNetwork, type NodeNetworkOptions, type NodenetError } from '@nodenet/core';
import { FakeDataplane, FakePacketFilter, MemoryStateStore } from './fakes.js';

export class NodeNetworkHarness {
  readonly dp = new FakeDataplane();
  readonly pf = new FakePacketFilter();
  readonly store = new MemoryStateStore();
  /** Link names come from this count, so that they are the same in every run. */
  private counter = 0;

  /** `defaults`: options every `make()` of this harness gets (beside no reserved ports and overhead 50). */
  constructor(private readonly defaults: Partial<NodeNetworkOptions> = {}) {}

  /** A NodeNetwork over these fakes, loaded from the store: called again, it is the node after a restart. */
  async make(options: Partial<NodeNetworkOptions> = {}): Promise<NodeNetwork> {
    const n = new NodeNetwork({
      dataplane: this.dp,
      namespaces: this.dp,
      packetFilter: this.pf,
      store: this.store,
      host: await this.dp.probeHost(),
      reservedPorts: new Map(),
      overlayOverhead: 50,
      randomUint32: () => ++this.counter,
      ...this.defaults,
      ...options,
    });
    await n.load();
    return n;
  }
}

/** The error `p` rejects with; fails the test if `p` succeeds. */
export async function errorOf(p: Promise<unknown>): Promise<NodenetError> {
  try {
    await p;
  } catch (e) {
    return e as NodenetError;
  }
  throw new Error('expected a failure');
}

/** `OK`, or the code of the NodenetError `p` rejects with. */
export async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as NodenetError).code ?? 'NOT A NODENET ERROR';
  }
  return 'OK';
}
