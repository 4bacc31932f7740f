/**
 * Shared pieces of the integration tests: a node (testkit topology: fabric, world, node namespaces) with
 * a private Open vSwitch (userspace datapath) in its namespace, the backend running in-process against it
 * (`netns: <node>`), and specs built the way core builds them.
 */
import { CNI_NAME, Subnet, VXLAN_OVERHEAD, macForAddress, parseIpv4Address, type CniSpec, type InstanceSpec } from '@nodenet/core';
import { PrivateOvs, type NodeHost, type TestScope } from '@nodenet/testkit';
import { instanceSpecFor, type InstanceOptions } from '@nodenet/testkit/instance-specs';
import { LinuxHostProbe } from '@nodenet/linux';
import { OvsDataplane } from '../src/index.js';

export function cniSpecFor(index: number, underlayMtu = 1500): CniSpec {
  const gateway = parseIpv4Address(`198.19.${index}.1`, 'gateway');
  return {
    name: CNI_NAME,
    ipv4: { gateway, subnet: Subnet.of(`198.19.${index}.0/24`) },
    mtu: underlayMtu - VXLAN_OVERHEAD,
    mac: macForAddress(gateway),
  };
}

export { cniRecordOf } from '@nodenet/testkit/instance-specs';

let idCounter = 0;

/** The next instance on `cni` at its `hostOctet`-th address; handles are unique per process. */
export function instanceSpec(cni: CniSpec, hostOctet: number, options: InstanceOptions = {}): InstanceSpec {
  return instanceSpecFor(cni, 0x0e000000 + process.pid * 256 + ++idCounter, hostOctet, options);
}

export interface OvsNode {
  readonly host: NodeHost;
  readonly ovs: PrivateOvs;
  readonly dataplane: OvsDataplane;
  /** The node's host probe (the underlay is the kernel's, not the backend's). */
  readonly hostProbe: LinuxHostProbe;
}

export async function ovsNode(scope: TestScope, host: NodeHost, options: { timeoutSeconds?: number } = {}): Promise<OvsNode> {
  const ovs = await PrivateOvs.start(scope, host.ns);
  const dataplane = new OvsDataplane({
    ...ovs.config,
    netns: host.ns,
    ...(options.timeoutSeconds ? { timeoutSeconds: options.timeoutSeconds } : {}),
  });
  scope.defer(`close the dataplane of ${host.ns}`, () => dataplane.close());
  return { host, ovs, dataplane, hostProbe: new LinuxHostProbe({ netns: host.ns }) };
}

/** external_ids of an OVSDB row as a plain object (`ovs-vsctl --format=json` map). */
export async function externalIds(ovs: PrivateOvs, table: 'Bridge' | 'Interface', name: string): Promise<Record<string, string>> {
  const out = (await ovs.vsctl(['--format=json', '--columns=external_ids', 'list', table, name])).stdout;
  const map = (JSON.parse(out) as { data: [[['map', [string, string][]]]] }).data[0][0][1];
  return Object.fromEntries(map);
}

export async function ofportOf(ovs: PrivateOvs, name: string): Promise<number> {
  return Number((await ovs.vsctl(['get', 'Interface', name, 'ofport'])).stdout.trim());
}

/** Takes a port off nodenet0 together with its registry entry (the bridge's nodenet-port-<port> key), as a lost OVSDB would. */
export async function removePortAndRegistry(ovs: PrivateOvs, port: string): Promise<void> {
  await ovs.vsctl(['del-port', 'nodenet0', port, '--', 'remove', 'Bridge', 'nodenet0', 'external_ids', `nodenet-port-${port}`]);
}
