/**
 * A consumer of @nodenet/backend-iproute2 and @nodenet/core installed from their tarballs
 * (consumption.int.test.ts): the Linux bridge dataplane as a library, without the daemon, public names only.
 * It builds the bridge in node namespace NODE and one instance in each of the namespaces given, named
 * eth0 there and addressed from 198.19.7.0/24 (.11, .12, ...), then prints the instances as one JSON line.
 *
 *   node iproute2-library.js NODE INSTANCE_NS...
 *
 * The one file to adjust if the backend's public names change.
 */
import { Iproute2Dataplane } from '@nodenet/backend-iproute2';
import { Subnet, macForAddress, parseIfName, parseIpv4Address, parseNetnsRef, type CniSpec, type InstanceSpec } from '@nodenet/core';

const [node, ...instanceNamespaces] = process.argv.slice(2);
if (!node || instanceNamespaces.length === 0) throw new Error('give the node namespace and at least one instance namespace');

const gateway = parseIpv4Address('198.19.7.1', 'gateway');
const subnet = Subnet.of('198.19.7.0/24');
const cni: CniSpec = { name: parseIfName('nodenet0', 'bridge'), ipv4: { gateway, subnet }, mtu: 1450, mac: macForAddress(gateway) };

const dataplane = new Iproute2Dataplane({ netns: node });
try {
  await dataplane.ensureCni(cni);
  const instances = [];
  for (const [i, ns] of instanceNamespaces.entries()) {
    const id = (0xc0de00 + i).toString(16).padStart(8, '0');
    const address = subnet.nth(11 + i);
    const spec: InstanceSpec = {
      handle: parseIfName(`nni-${id}`, 'handle'),
      hostIfname: parseIfName(`nnh-${id}`, 'host interface'),
      kind: 'veth',
      address,
      ipv4: address,
      mac: macForAddress(address),
      mtu: cni.mtu,
      cni,
      netns: parseNetnsRef(ns, 'netns'),
      ifname: parseIfName('eth0', 'ifname'),
    };
    await dataplane.createInstance(spec);
    instances.push({ ns, address, hostIfname: spec.hostIfname });
  }
  console.log(JSON.stringify(instances));
} finally {
  await dataplane.close();
}
