/**
 * Shared pieces of the integration tests: a node (testkit topology: fabric, world, node namespaces) with
 * a private Open vSwitch (userspace datapath) in its namespace, the backend running in-process against it
 * (`netns: <node>`), and specs built the way core builds them.
 */
import {
  CNI_NAME,
  Subnet,
  macForAddress,
  parseIfName,
  parseIpv4Address,
  parseNetnsRef,
  type CniRecord,
  type CniSpec,
  type InstanceKind,
  type InstanceRecord,
  type InstanceSpec,
} from '@nodenet/core';
import { PrivateOvs, type NodeHost, type TestScope } from '@nodenet/testkit';
import { OvsDataplane } from '../src/index.js';

export const VXLAN_OVERHEAD = 50;

export function cniSpecFor(index: number, underlayMtu = 1500): CniSpec {
  const gateway = parseIpv4Address(`198.19.${index}.1`, 'gateway');
  return { name: CNI_NAME, gateway, subnet: Subnet.of(`198.19.${index}.0/24`), mtu: underlayMtu - VXLAN_OVERHEAD, mac: macForAddress(gateway) };
}

export function cniRecordOf(spec: CniSpec): CniRecord {
  return { ...spec, subnet: spec.subnet.toString(), createdAt: new Date().toISOString() };
}

let idCounter = 0;

export function instanceSpec(cni: CniSpec, hostOctet: number, options: { kind?: InstanceKind; netns?: string; ifname?: string } = {}): InstanceSpec {
  const id = (0x0e000000 + process.pid * 256 + ++idCounter).toString(16).padStart(8, '0').slice(-8);
  const handle = parseIfName(`nni-${id}`, 'handle');
  const network = cni.subnet.network.split('.').slice(0, 3).join('.');
  const address = parseIpv4Address(`${network}.${hostOctet}`, 'address');
  const kind = options.kind ?? 'veth';
  return {
    handle,
    hostIfname: kind === 'tap' ? handle : parseIfName(`nnh-${id}`, 'host'),
    kind,
    address,
    mac: macForAddress(address),
    mtu: cni.mtu,
    cni,
    ...(options.netns ? { netns: parseNetnsRef(options.netns, 'netns'), ifname: parseIfName(options.ifname ?? 'eth0', 'ifname') } : {}),
  };
}

export function recordOf(spec: InstanceSpec, netnsId?: string): InstanceRecord {
  return {
    handle: spec.handle,
    hostIfname: spec.hostIfname,
    kind: spec.kind,
    address: spec.address,
    ports: [],
    mac: spec.mac,
    mtu: spec.mtu,
    createdAt: new Date().toISOString(),
    ...(spec.netns ? { netns: spec.netns, ifname: spec.ifname!, ...(netnsId ? { netnsId } : {}) } : {}),
  };
}

export interface OvsNode {
  readonly host: NodeHost;
  readonly ovs: PrivateOvs;
  readonly dataplane: OvsDataplane;
}

export async function ovsNode(scope: TestScope, host: NodeHost, options: { timeoutSeconds?: number } = {}): Promise<OvsNode> {
  const ovs = await PrivateOvs.start(scope, host.ns);
  const dataplane = new OvsDataplane({ ...ovs.config, netns: host.ns, ...(options.timeoutSeconds ? { timeoutSeconds: options.timeoutSeconds } : {}) });
  scope.defer(`close the dataplane of ${host.ns}`, () => dataplane.close());
  return { host, ovs, dataplane };
}

/** external_ids of an OVSDB row as a plain object (`ovs-vsctl --format=json` map). */
export async function externalIds(ovs: PrivateOvs, table: 'Bridge' | 'Interface', name: string): Promise<Record<string, string>> {
  const out = (await ovs.vsctl(['--format=json', '--columns=external_ids', 'list', table, name])).stdout;
  const map = (JSON.parse(out) as { data: [[['map', [string, string][]]]] }).data[0]![0][1];
  return Object.fromEntries(map);
}

export async function ofportOf(ovs: PrivateOvs, name: string): Promise<number> {
  return Number((await ovs.vsctl(['get', 'Interface', name, 'ofport'])).stdout.trim());
}
