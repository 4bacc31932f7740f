/**
 * What "a peer is routed" means on each backend, as facts the node's kernel (and switch) shows, and the
 * monitor lines those facts arrive in. Pure: the cluster suite feeds it `ip monitor route neigh` and
 * `ovs-ofctl monitor watch:` lines and asks when a set of peers became routed, or cleaned up.
 *
 *   iproute2 (vxlan): the route to the peer's subnet on nodenet-vx, the permanent neighbour entry of the
 *     peer's network address, and the FDB entry sending its VTEP MAC to its underlay address (`ip monitor`
 *     shows an FDB entry as a neighbour line whose address is the `dst`).
 *   ovs (vxlan): the route to the peer's subnet into nodenet0, the neighbour entry of its network address on
 *     nodenet0, and the peer's flows on nodenet0 (found by the cookie the backend gives them).
 */
import { Subnet, parseIpv4Address, type NodeRecord } from '@nodenet/core';

export type BackendName = 'iproute2' | 'ovs';
export const BACKEND_NAMES: readonly BackendName[] = ['iproute2', 'ovs'];

/** The device a backend's overlay routes peers over. */
export const PEER_DEVICE: Readonly<Record<BackendName, string>> = { iproute2: 'nodenet-vx', ovs: 'nodenet0' };

/** The simulated peer `i`: name sim-<i>, underlay 198.18.<1 + i/250>.<1 + i%250>, subnet the i-th /28 from 198.19.16.0. */
export function simulatedPeer(i: number): NodeRecord {
  if (!Number.isInteger(i) || i < 0 || i >= 4096) throw new Error(`simulated peer index ${i} is not in 0..4095`);
  const s = 256 + i; // /28s from 198.19.16.0 (clear of the nodes' own 198.19.1.0/24 ... 198.19.15.0/24)
  return {
    name: `sim-${i}`,
    underlayAddress: parseIpv4Address(`198.18.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`, 'underlay'),
    subnet: Subnet.of(`198.19.${s >> 4}.${(s & 15) * 16}/28`),
  };
}

/**
 * The cookie the ovs backend gives a peer's flows: 0x6e6e ('nn'), class 0x03 (peer), 0, the underlay IPv4
 * address as 32 bits (packages/backend-ovs/src/flows.ts; restated so the bench reads the switch as an outsider).
 */
export function ovsPeerCookie(underlayAddress: string): string {
  const n = underlayAddress.split('.').reduce((acc, b) => acc * 256 + Number(b), 0);
  return `0x6e6e0300${n.toString(16).padStart(8, '0')}`;
}

/** The facts that together say `peer` is routed on `backend` (each absent once it is cleaned up). */
export function peerFacts(peer: NodeRecord, backend: BackendName): string[] {
  const dev = PEER_DEVICE[backend];
  // The bench's simulated peers are IPv4 (one subnet each).
  if (!peer.subnet) throw new Error(`bench peer ${peer.name} has no IPv4 subnet`);
  const facts = [`route ${peer.subnet.toString()} dev ${dev}`, `addr ${peer.subnet.network} dev ${dev}`];
  facts.push(backend === 'iproute2' ? `addr ${peer.underlayAddress} dev ${dev}` : `flow ${ovsPeerCookie(peer.underlayAddress)}`);
  return facts;
}

/** One change a monitor reported: a fact appeared (+1) or went (-1). */
export interface FactEvent {
  readonly fact: string;
  readonly delta: 1 | -1;
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * A line of `ip monitor route neigh`: a route (`SUBNET via ... dev DEV ...`) or a neighbour / FDB entry
 * (`ADDRESS dev DEV lladdr MAC ... PERMANENT`); `Deleted ` in front for removals. A neighbour entry without a
 * permanent link-layer address (FAILED, INCOMPLETE while it is flushed) counts as gone. Null: not a fact.
 */
export function parseIpMonitorLine(line: string): FactEvent | null {
  let text = line.trim();
  let delta: 1 | -1 = 1;
  if (text.startsWith('Deleted ')) {
    delta = -1;
    text = text.slice('Deleted '.length);
  }
  const tokens = text.split(/\s+/);
  const dev = tokens[tokens.indexOf('dev') + 1];
  if (!tokens.includes('dev') || dev === undefined) return null;
  const first = tokens[0]!;
  if (first.includes('/') && IPV4.test(first.split('/')[0]!)) return { fact: `route ${first} dev ${dev}`, delta };
  if (!IPV4.test(first)) return null;
  if (tokens.includes('via') || tokens.includes('proto')) return { fact: `route ${first}/32 dev ${dev}`, delta };
  if (delta === 1 && !(tokens.includes('lladdr') && tokens.includes('PERMANENT'))) return { fact: `addr ${first} dev ${dev}`, delta: -1 };
  return { fact: `addr ${first} dev ${dev}`, delta };
}

/** A wait for peers to be routed or cleaned up: `done` resolves with the time it happened. */
export interface FactWait {
  readonly done: Promise<number>;
  cancel(): void;
  /** A few of the facts still in the way (for error messages). */
  missing(): string[];
}

interface Waiter {
  readonly want: 'present' | 'absent';
  /** fact -> the tracked peers (indices into `facts`) that need it. */
  readonly byFact: Map<string, number[]>;
  readonly facts: readonly (readonly string[])[];
  readonly remaining: Set<number>;
  resolve(at: number): void;
}

/**
 * The facts present now (a count per fact: a peer has several flows, and a neighbour entry may be reported
 * twice), and waiters for a set of peers to be all routed or all cleaned: a waiter resolves with the time of
 * the event that completed it.
 */
export class FactTracker {
  private readonly counts = new Map<string, number>();
  private readonly waiters = new Set<Waiter>();

  apply(event: FactEvent, at: number): void {
    const before = this.counts.get(event.fact) ?? 0;
    // Neighbour and route lines say "is now there" or "is now gone"; flows come and go one by one.
    this.set(event.fact, event.fact.startsWith('flow ') ? Math.max(0, before + event.delta) : event.delta > 0 ? 1 : 0, at);
  }

  /** Sets how many of `fact` there are now (e.g. flows with a cookie, from a dump). */
  set(fact: string, count: number, at: number): void {
    if (count === (this.counts.get(fact) ?? 0)) return;
    if (count === 0) this.counts.delete(fact);
    else this.counts.set(fact, count);
    for (const w of this.waiters) {
      const owners = w.byFact.get(fact);
      if (!owners) continue;
      for (const i of owners) {
        if (this.satisfies(w.facts[i]!, w.want)) w.remaining.delete(i);
        else w.remaining.add(i);
      }
      if (w.remaining.size === 0) {
        this.waiters.delete(w);
        w.resolve(at);
      }
    }
  }

  /** Every fact starting with `prefix` set to what a dump counted (absent from it: none). */
  replace(prefix: string, counts: ReadonlyMap<string, number>, at: number): void {
    for (const fact of [...this.counts.keys()]) if (fact.startsWith(prefix) && !counts.has(fact)) this.set(fact, 0, at);
    for (const [fact, n] of counts) this.set(fact, n, at);
  }

  /** Whether anyone waits. */
  get waiting(): boolean {
    return this.waiters.size > 0;
  }

  has(fact: string): boolean {
    return (this.counts.get(fact) ?? 0) > 0;
  }

  /** How many of `peers` (each a list of facts) are complete (`present`) or fully gone (`absent`). */
  count(peers: readonly (readonly string[])[], want: 'present' | 'absent'): number {
    return peers.filter((facts) => this.satisfies(facts, want)).length;
  }

  /**
   * Resolves with the time of the event after which every peer's facts are all present (or all absent);
   * at once (with `now()`) when they are already. `cancel` drops the waiter.
   */
  when(peers: readonly (readonly string[])[], want: 'present' | 'absent', now: () => number): FactWait {
    const byFact = new Map<string, number[]>();
    const remaining = new Set<number>();
    peers.forEach((facts, i) => {
      for (const f of facts) byFact.set(f, [...(byFact.get(f) ?? []), i]);
      if (!this.satisfies(facts, want)) remaining.add(i);
    });
    const missing = () => [...remaining].flatMap((i) => peers[i]!.filter((f) => this.has(f) !== (want === 'present'))).slice(0, 5);
    if (remaining.size === 0) return { done: Promise.resolve(now()), cancel: () => undefined, missing };
    let waiter!: Waiter;
    const done = new Promise<number>((resolve) => {
      waiter = { want, byFact, facts: peers, remaining, resolve };
    });
    this.waiters.add(waiter);
    return { done, cancel: () => void this.waiters.delete(waiter), missing };
  }

  private satisfies(facts: readonly string[], want: 'present' | 'absent'): boolean {
    return want === 'present' ? facts.every((f) => this.has(f)) : facts.every((f) => !this.has(f));
  }
}
