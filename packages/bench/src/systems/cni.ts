/**
 * The CNI reference plugins as a runtime (containerd's default bridge network) calls them: bridge with
 * host-local IPAM (gateway, masquerade, default route), then portmap chained with the bridge's result; DEL in
 * reverse order. Each plugin is a process started by the peer runner inside the node namespace, with the
 * CNI_* environment and the network config on stdin (CNI spec 1.0). Its own bridge and subnet.
 */
import { join } from 'node:path';
import type { PeerRunner } from '../peer-runner.js';
import { CommandFailedError } from '../peer-runner.js';
import type { Slot, Unwired, Wired, WiringSystem } from './types.js';

export const CNI_PLUGIN_DIR = '/usr/lib/cni';
export const CNI_SUBNET = '198.19.200.0/24';
export const CNI_BRIDGE = 'nnbench-cni0';
const NETWORK_NAME = 'nodenet-bench-cni';
const CNI_VERSION = '1.0.0';

interface CniResult {
  readonly ips?: ReadonlyArray<{ readonly address?: string }>;
}

export class CniPeer implements WiringSystem {
  readonly name = 'cni' as const;
  readonly portBase = 30000;
  /** host-local hands out .2 - .254. */
  readonly capacity = 250;
  private containers = 0;

  constructor(
    private readonly runner: PeerRunner,
    /** host-local's data dir lives here. */
    private readonly dir: string,
  ) {}

  private bridgeConfig(): Record<string, unknown> {
    return {
      cniVersion: CNI_VERSION,
      name: NETWORK_NAME,
      type: 'bridge',
      bridge: CNI_BRIDGE,
      isGateway: true,
      ipMasq: true,
      hairpinMode: true,
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: CNI_SUBNET }]],
        routes: [{ dst: '0.0.0.0/0' }],
        dataDir: join(this.dir, 'host-local'),
      },
    };
  }

  private portmapConfig(ports: readonly number[], prevResult: unknown): Record<string, unknown> {
    return {
      cniVersion: CNI_VERSION,
      name: NETWORK_NAME,
      type: 'portmap',
      capabilities: { portMappings: true },
      snat: true,
      runtimeConfig: {
        portMappings: ports.flatMap((p) => [
          { hostPort: p, containerPort: p, protocol: 'tcp' },
          { hostPort: p, containerPort: p, protocol: 'udp' },
        ]),
      },
      prevResult,
    };
  }

  cpuAccount() {
    return { pid: this.runner.pid, includeSelf: false };
  }

  private invoke(plugin: 'bridge' | 'portmap', command: 'ADD' | 'DEL', containerId: string, ns: string, config: unknown) {
    return this.runner.run({
      file: join(CNI_PLUGIN_DIR, plugin),
      env: {
        CNI_COMMAND: command,
        CNI_CONTAINERID: containerId,
        CNI_NETNS: `/run/netns/${ns}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: CNI_PLUGIN_DIR,
      },
      input: JSON.stringify(config),
    });
  }

  async create(slot: Slot): Promise<Wired> {
    this.containers += 1;
    const containerId = `nnbench-${process.pid}-${this.containers}`;
    const bridge = await this.invoke('bridge', 'ADD', containerId, slot.ns, this.bridgeConfig());
    if (bridge.exitCode !== 0) throw new CommandFailedError(`CNI bridge ADD ${containerId}`, bridge);
    const result = JSON.parse(bridge.stdout) as CniResult;
    const portmap = await this.invoke('portmap', 'ADD', containerId, slot.ns, this.portmapConfig(slot.ports, result));
    if (portmap.exitCode !== 0) {
      await this.invoke('bridge', 'DEL', containerId, slot.ns, this.bridgeConfig()).catch(() => undefined);
      throw new CommandFailedError(`CNI portmap ADD ${containerId}`, portmap);
    }
    const address = (result.ips?.[0]?.address ?? '').split('/')[0] ?? '';
    return { handle: containerId, address, ms: bridge.ms + portmap.ms, steps: { bridge: bridge.ms, portmap: portmap.ms }, state: result };
  }

  async delete(slot: Slot, wired: Wired): Promise<Unwired> {
    const portmap = await this.invoke('portmap', 'DEL', wired.handle, slot.ns, this.portmapConfig(slot.ports, wired.state));
    if (portmap.exitCode !== 0) throw new CommandFailedError(`CNI portmap DEL ${wired.handle}`, portmap);
    const bridge = await this.invoke('bridge', 'DEL', wired.handle, slot.ns, { ...this.bridgeConfig(), prevResult: wired.state });
    if (bridge.exitCode !== 0) throw new CommandFailedError(`CNI bridge DEL ${wired.handle}`, bridge);
    return { ms: portmap.ms + bridge.ms, steps: { portmap: portmap.ms, bridge: bridge.ms } };
  }
}
