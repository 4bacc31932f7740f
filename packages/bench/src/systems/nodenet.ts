/** nodenet through its gRPC API: CreateInterface with the netns extension and two published ports. */
import { createNetworkClient, type NetworkApiClient } from '@nodenet/api';
import { Subnet } from '@nodenet/core';
import type { Slot, Unwired, Wired, WiringSystem } from './types.js';

export const NODENET_SUBNET = '198.19.16.0/20';
export const NODENET_GATEWAY = '198.19.16.1';
/** A dual-stack bench node's IPv6 subnet and gateway (instance i gets the same host part as its IPv4 address). */
export const NODENET_SUBNET6 = 'fd19:0:0:10::/64';
export const NODENET_GATEWAY6 = 'fd19:0:0:10::1';
/** Instance i gets the (FIRST_HOST + i)-th address of the subnet. */
const FIRST_HOST = 10;

export class NodenetSystem implements WiringSystem {
  readonly name = 'nodenet' as const;
  readonly portBase = 20000;
  readonly capacity: number;
  private readonly subnet = Subnet.of(NODENET_SUBNET);
  private readonly clients: NetworkApiClient[] = [];

  constructor(
    private readonly target: string,
    /** Client connections: one per concurrent client of a burst. */
    connections = 1,
    /** The daemon's pid now (it changes when the daemon restarts). */
    private readonly daemonPid: () => number | undefined = () => undefined,
    /** Dual-stack instances (the CNI holds NODENET_SUBNET6): each create asks for an IPv6 address too. */
    private readonly ipv6 = false,
  ) {
    this.capacity = this.subnet.size - FIRST_HOST - 1;
    this.connect(connections);
  }

  /** Makes sure there are `count` client connections, each its own channel (no shared subchannel). */
  connect(count: number): void {
    while (this.clients.length < count) {
      this.clients.push(createNetworkClient(this.target, { channelOptions: { 'grpc.use_local_subchannel_pool': 1 } }));
    }
  }

  /** Connects every client now, so no create pays for a connection. */
  async ready(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.waitForReady(Date.now() + 10_000)));
  }

  cpuAccount() {
    return { pid: this.daemonPid(), includeSelf: true };
  }

  get api(): NetworkApiClient {
    return this.clients[0]!;
  }

  addressFor(index: number): string {
    if (index >= this.capacity)
      throw new Error(`nodenet's bench subnet ${NODENET_SUBNET} holds ${this.capacity} instances, not ${index + 1}`);
    return this.subnet.nth(FIRST_HOST + index);
  }

  async create(slot: Slot, worker = 0): Promise<Wired> {
    const address = this.addressFor(slot.index);
    const client = this.client(worker);
    const started = performance.now();
    const ipv6Address = this.ipv6 ? `fd19:0:0:10::${(FIRST_HOST + slot.index).toString(16)}` : undefined;
    const r = await client.createInterface({
      ipAddress: address,
      ...(ipv6Address ? { ipv6Address } : {}),
      ports: [...slot.ports],
      netns: slot.ns,
    });
    return { handle: r.interfaceName, address, ms: performance.now() - started };
  }

  async delete(_slot: Slot, wired: Wired, worker = 0): Promise<Unwired> {
    const client = this.client(worker);
    const started = performance.now();
    await client.deleteInterface({ interfaceName: wired.handle });
    return { ms: performance.now() - started };
  }

  close(): void {
    for (const c of this.clients.splice(0)) c.close();
  }

  private client(worker: number): NetworkApiClient {
    return this.clients[worker % this.clients.length]!;
  }
}
