/**
 * The daemon's normal mode: it runs inside the node namespace (`ip netns exec NODE nodenetd`) and the
 * backend has no `netns` option, so it runs plain `ip -batch -` and writes /proc/sys itself. A child Node
 * process started in a test namespace exercises that path (built code from dist, like the daemon).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '@nodenet/sys';
import { TestNamespaces, ipJson, ping, sh } from './netns-fixture.js';

const namespaces = new TestNamespaces();
let node = '';
let pod = '';

const CHILD = `
import { writeFile } from 'node:fs/promises';
import { Iproute2Dataplane } from '@nodenet/backend-iproute2';
import { LinuxHostProbe } from '@nodenet/linux';
import { CNI_NAME, Subnet, macForAddress, parseIfName, parseIpv4Address, parseNetnsRef } from '@nodenet/core';
const pod = process.argv[1];
const dp = new Iproute2Dataplane();
const host = await new LinuxHostProbe().probeHost();
const gateway = parseIpv4Address('198.19.2.1', 'gateway');
const cni = { name: CNI_NAME, ipv4: { gateway, subnet: Subnet.of('198.19.2.0/24') }, mtu: host.underlayMtu - 50, mac: macForAddress(gateway) };
const repairs = [await dp.ensureCni(cni), await dp.ensureCni(cni)];
// The test's node namespace (this process runs inside it): drift forwarding and the bridge, then repair.
await writeFile('/proc/sys/net/ipv4/ip_forward', '0');
await writeFile('/proc/sys/net/ipv4/conf/nodenet0/route_localnet', '0');
repairs.push(await dp.ensureCni(cni), await dp.ensureCni(cni));
const noop = [];
for (let i = 0; i < 40; i++) {
  const t = performance.now();
  const r = await dp.ensureCni(cni);
  noop.push(performance.now() - t);
  if (r.length > 0) throw new Error('no-op ensureCni repaired ' + r.join(', '));
}
noop.sort((a, b) => a - b);
const address = parseIpv4Address('198.19.2.9', 'address');
await dp.createInstance({
  handle: parseIfName('nni-00000001', 'h'), hostIfname: parseIfName('nnh-00000001', 'h'), kind: 'veth',
  address, ipv4: address, mac: macForAddress(address), mtu: cni.mtu, cni, netns: parseNetnsRef(pod, 'netns'), ifname: parseIfName('eth0', 'i'),
});
console.log(JSON.stringify({ underlay: host.underlayAddress, interface: host.underlayInterface, mtu: host.underlayMtu, repairs, noopMedianMs: noop[20] }));
`;

beforeAll(async () => {
  ({ node } = await namespaces.addNode(1500));
  pod = await namespaces.add('ownpod');
});

afterAll(async () => {
  await namespaces.cleanup();
});

describe('Iproute2Dataplane in its own namespace (no netns option)', () => {
  it('probes, creates the CNI with its sysctls read and written through /proc/sys (repairs reported, [] when all is right), and wires an instance', async () => {
    const out = await run('ip', ['netns', 'exec', node, process.execPath, '--input-type=module', '-e', CHILD, pod], {
      step: 'test: run the backend inside the node namespace',
      timeoutMs: 60_000,
    });
    const result = JSON.parse(out.stdout.trim().split('\n').pop()!) as { noopMedianMs: number };
    expect(result).toEqual({
      underlay: '198.18.0.1',
      interface: 'u0',
      mtu: 1500,
      repairs: [
        ['nodenet0 was missing: created', 'net.ipv4.ip_forward was 0: set to 1'],
        [],
        ['net.ipv4.ip_forward was 0: set to 1', 'net.ipv4.conf.nodenet0.route_localnet was 0: set to 1'],
        [],
      ],
      noopMedianMs: expect.any(Number) as unknown,
    });
    console.log(`[iproute2] no-op ensureCni in its own namespace (n=40): median ${result.noopMedianMs.toFixed(1)} ms`);
    const sysctls = await sh('ip', [
      'netns',
      'exec',
      node,
      'sysctl',
      '-n',
      'net.ipv4.ip_forward',
      'net.ipv4.conf.nodenet0.route_localnet',
      'net.ipv6.conf.nodenet0.disable_ipv6',
    ]);
    expect(sysctls.trim().split('\n')).toEqual(['1', '1', '1']);
    const bridge = (await ipJson<{ mtu: number; ifalias?: string }[]>(node, ['link', 'show', 'dev', 'nodenet0']))[0]!;
    expect(bridge).toMatchObject({ mtu: 1450, ifalias: 'nodenet:cni' });
    expect(await ping(pod, '198.19.2.1')).toBe(0);
  });
});
