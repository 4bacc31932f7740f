/**
 * netavark as podman calls it: `netavark --config DIR setup|teardown NETNS_PATH` with the container's
 * network options as JSON on stdin (container id and name, the network's definition, a static address,
 * port mappings). Started by the peer runner inside the node namespace; the iptables firewall driver is
 * chosen explicitly (NETAVARK_FW), which spares it probing for firewalld. Its own bridge and subnet.
 */
import { createHash } from 'node:crypto';
import type { PeerRunner } from '../peer-runner.js';
import { CommandFailedError } from '../peer-runner.js';
import type { Slot, Unwired, Wired, WiringSystem } from './types.js';

export const NETAVARK_BINARY = '/usr/lib/podman/netavark';
export const NETAVARK_SUBNET = '198.19.201.0/24';
export const NETAVARK_GATEWAY = '198.19.201.1';
export const NETAVARK_BRIDGE = 'nnbench-nav0';
const NETWORK_NAME = 'nodenet-bench-nav';
const NETWORK_ID = createHash('sha256').update(NETWORK_NAME).digest('hex');
/** Instance i gets 198.19.201.(FIRST_HOST + i). */
const FIRST_HOST = 3;

export class NetavarkPeer implements WiringSystem {
  readonly name = 'netavark' as const;
  readonly portBase = 40000;
  readonly capacity = 254 - FIRST_HOST;
  private containers = 0;

  constructor(
    private readonly runner: PeerRunner,
    /** netavark's --config dir (aardvark-dns state; unused without DNS). */
    private readonly configDir: string,
  ) {}

  addressFor(index: number): string {
    if (index >= this.capacity)
      throw new Error(`netavark's bench subnet ${NETAVARK_SUBNET} holds ${this.capacity} instances, not ${index + 1}`);
    return `198.19.201.${FIRST_HOST + index}`;
  }

  options(containerId: string, name: string, address: string, ports: readonly number[]): Record<string, unknown> {
    return {
      container_id: containerId,
      container_name: name,
      port_mappings: ports.flatMap((p) =>
        ['tcp', 'udp'].map((protocol) => ({ host_ip: '', container_port: p, host_port: p, range: 1, protocol })),
      ),
      networks: { [NETWORK_NAME]: { static_ips: [address], interface_name: 'eth0' } },
      network_info: {
        [NETWORK_NAME]: {
          name: NETWORK_NAME,
          id: NETWORK_ID,
          driver: 'bridge',
          network_interface: NETAVARK_BRIDGE,
          subnets: [{ subnet: NETAVARK_SUBNET, gateway: NETAVARK_GATEWAY }],
          ipv6_enabled: false,
          internal: false,
          dns_enabled: false,
          ipam_options: { driver: 'host-local' },
        },
      },
    };
  }

  cpuAccount() {
    return { pid: this.runner.pid, includeSelf: false };
  }

  private invoke(command: 'setup' | 'teardown', ns: string, options: unknown) {
    return this.runner.run({
      file: NETAVARK_BINARY,
      args: ['--config', this.configDir, command, `/run/netns/${ns}`],
      env: { NETAVARK_FW: 'iptables' },
      input: JSON.stringify(options),
    });
  }

  /** Wires a container at `address` (the anchor uses this with its own address). */
  async setup(ns: string, address: string, ports: readonly number[]): Promise<Wired> {
    this.containers += 1;
    const containerId = createHash('sha256').update(`nnbench-${process.pid}-${this.containers}`).digest('hex');
    const options = this.options(containerId, `nnbench-${this.containers}`, address, ports);
    const setup = await this.invoke('setup', ns, options);
    if (setup.exitCode !== 0) throw new CommandFailedError(`netavark setup ${containerId.slice(0, 12)}`, setup);
    return { handle: containerId, address, ms: setup.ms, state: options };
  }

  create(slot: Slot): Promise<Wired> {
    return this.setup(slot.ns, this.addressFor(slot.index), slot.ports);
  }

  async delete(slot: Slot, wired: Wired): Promise<Unwired> {
    const teardown = await this.invoke('teardown', slot.ns, wired.state);
    if (teardown.exitCode !== 0) throw new CommandFailedError(`netavark teardown ${wired.handle.slice(0, 12)}`, teardown);
    return { ms: teardown.ms };
  }
}
