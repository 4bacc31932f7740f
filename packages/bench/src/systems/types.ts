/** What the latency, burst and scale suites drive: something that wires an instance into a namespace and unwires it. */

export type SystemName = 'nodenet' | 'cni' | 'netavark';

export const SYSTEM_NAMES: readonly SystemName[] = ['nodenet', 'cni', 'netavark'];

export const SYSTEM_LABELS: Readonly<Record<SystemName, string>> = {
  nodenet: 'nodenet',
  cni: 'CNI plugins',
  netavark: 'netavark',
};

/** One instance to wire: its namespace (under /run/netns), its index (address and ports derive from it). */
export interface Slot {
  readonly index: number;
  readonly ns: string;
  /** Published ports: each for TCP and UDP, host port = instance port. */
  readonly ports: readonly number[];
}

export interface Wired {
  /** What delete needs: nodenet's handle, the container id of a peer. */
  readonly handle: string;
  readonly address: string;
  /** Wall time of the whole create as the caller sees it (gRPC round trip; plugin or netavark process lifetimes). */
  readonly ms: number;
  /** Parts of `ms` (e.g. the bridge and portmap plugins). */
  readonly steps?: Readonly<Record<string, number>>;
  /** State a peer keeps for its delete (the CNI result). */
  readonly state?: unknown;
}

export interface Unwired {
  readonly ms: number;
  readonly steps?: Readonly<Record<string, number>>;
}

export interface WiringSystem {
  readonly name: SystemName;
  /** How many instances can be wired at once (the size of its address range). */
  readonly capacity: number;
  /** First published port; instance i publishes portBase + 2i and portBase + 2i + 1. */
  readonly portBase: number;
  /**
   * Whose CPU time is the system's work: nodenet's daemon (itself and the commands it runs), or the
   * runner that starts a peer's processes (those processes only: the runner stands for the runtime).
   */
  cpuAccount(): { readonly pid: number | undefined; readonly includeSelf: boolean };
  /** `worker` picks the client connection (burst runs use one per concurrent client). */
  create(slot: Slot, worker?: number): Promise<Wired>;
  delete(slot: Slot, wired: Wired, worker?: number): Promise<Unwired>;
}

/** The two published ports of instance `index` of a system. */
export function portsFor(system: Pick<WiringSystem, 'portBase'>, index: number): number[] {
  return [system.portBase + 2 * index, system.portBase + 2 * index + 1];
}
