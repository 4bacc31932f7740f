import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, InvalidArgumentError, Subnet, parseIpv4Address, type HostInfo, type NodeRecord } from '@nodenet/core';
import { commandInNamespace, formatIpBatch, programmedPeersOf, type IpLine } from '@nodenet/linux';
import { Iproute2Overlay } from '../src/index.js';
import {
  OVERLAY_LINE,
  createVxlanScript,
  foreignDeviceProblem,
  parseFdbEntries,
  parseNeighbours,
  parseVxlanDevice,
  removeVxlanPeerScripts,
  repairVxlanScript,
  stalePeerScripts,
  vxlanEndpointSpec,
  vxlanPeerScripts,
  vxlanRecreateReasons,
  type VxlanDeviceState,
} from '../src/overlay-scripts.js';
import { netns } from './specs.js';

const ip = (s: string) => parseIpv4Address(s, 'address');
const node = (name: string, underlay: string, subnet: string): NodeRecord => ({
  name,
  underlayAddress: ip(underlay),
  subnet: Subnet.of(subnet),
});

const self = node('node-1', '198.18.0.1', '198.19.1.0/24');
const peer2 = node('node-2', '198.18.0.2', '198.19.2.0/24');
const peer3 = node('node-3', '198.18.0.3', '198.19.3.0/24');
const host: HostInfo = {
  underlayAddress: ip('198.18.0.1'),
  underlayInterface: 'u0',
  underlayMtu: 1500,
  localNetworks: [
    { interface: 'u0', subnet: Subnet.of('198.18.0.0/24') },
    { interface: 'mgmt0', subnet: Subnet.of('10.0.0.0/8') },
  ],
};
const spec = vxlanEndpointSpec(self, host, 4242, 4789);

const text = (lines: readonly IpLine[]) => formatIpBatch(lines).trimEnd().split('\n');

/** `ip -j -d addr show dev nodenet-vx` as iproute2 6.1 prints it for a device made by createVxlanScript (trimmed). */
const deviceJson = [
  {
    ifindex: 3,
    ifname: 'nodenet-vx',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    mtu: 1450,
    operstate: 'UNKNOWN',
    address: '02:6f:c6:12:00:01',
    linkinfo: {
      info_kind: 'vxlan',
      info_data: {
        id: 4242,
        local: '198.18.0.1',
        link: 'u0',
        port_range: { low: 0, high: 0 },
        port: 4789,
        learning: false,
        ttl: 0,
        df: 'unset',
      },
    },
    ifalias: 'nodenet:overlay',
    addr_info: [{ family: 'inet', local: '198.19.1.0', prefixlen: 32, scope: 'global', label: 'nodenet-vx' }],
  },
];
const device = parseVxlanDevice(deviceJson)!;

describe('the VXLAN endpoint', () => {
  it('takes MTU = underlay MTU - 50, the VTEP MAC of its underlay address and its subnet network address', () => {
    expect(spec).toEqual({
      name: 'nodenet-vx',
      vni: 4242,
      port: 4789,
      local: '198.18.0.1',
      underlayLink: 'u0',
      mtu: 1450,
      mac: '02:6f:c6:12:00:01',
      address: '198.19.1.0',
    });
  });

  it("refuses an underlay MTU too small for VXLAN, and a record whose underlay is not the host's", () => {
    expect(() => vxlanEndpointSpec(self, { ...host, underlayMtu: 100 }, 1, 4789)).toThrow(FailedPreconditionError);
    expect(() => vxlanEndpointSpec(self, { ...host, underlayMtu: 100 }, 1, 4789)).toThrow(/MTU 100, too small/);
    expect(() => vxlanEndpointSpec(node('node-1', '198.18.0.9', '198.19.1.0/24'), host, 1, 4789)).toThrow(/underlay address 198\.18\.0\.9/);
  });

  it('creates the device with VNI, port, local address, underlay link, nolearning; addrgenmode before up', () => {
    expect(text(createVxlanScript(spec))).toEqual([
      'link add name nodenet-vx address 02:6f:c6:12:00:01 mtu 1450 type vxlan id 4242 dstport 4789 local 198.18.0.1 dev u0 nolearning',
      'link set dev nodenet-vx alias nodenet:overlay addrgenmode none',
      'address add 198.19.1.0/32 dev nodenet-vx',
      'link set dev nodenet-vx up',
    ]);
  });

  it('parses the kernel view of the device', () => {
    expect(device).toEqual({
      ifname: 'nodenet-vx',
      kind: 'vxlan',
      alias: 'nodenet:overlay',
      mtu: 1450,
      mac: '02:6f:c6:12:00:01',
      up: true,
      vxlan: { vni: 4242, port: 4789, local: '198.18.0.1', link: 'u0', learning: false },
      addresses: [{ family: 'inet', local: '198.19.1.0', prefixlen: 32, secondary: false }],
    });
    expect(parseVxlanDevice([])).toBeNull();
  });

  it('needs no repair when the device matches', () => {
    expect(repairVxlanScript(spec, device)).toEqual([]);
    expect(vxlanRecreateReasons(spec, device)).toEqual([]);
    expect(foreignDeviceProblem(device)).toBeNull();
  });

  it('repairs MAC, MTU, local/link/learning, stale and missing addresses, IPv6 and down in place', () => {
    const broken: VxlanDeviceState = {
      ...device,
      mtu: 1400,
      mac: '02:00:00:00:00:01',
      up: false,
      vxlan: { ...device.vxlan, local: '198.18.0.7', learning: true },
      addresses: [
        { family: 'inet', local: '198.19.9.0', prefixlen: 32, secondary: false },
        { family: 'inet6', local: 'fe80::1', prefixlen: 64, secondary: false },
      ],
    };
    expect(text(repairVxlanScript(spec, broken))).toEqual([
      'link set dev nodenet-vx address 02:6f:c6:12:00:01',
      'link set dev nodenet-vx mtu 1450',
      'link set dev nodenet-vx type vxlan local 198.18.0.1 dev u0 nolearning',
      'link set dev nodenet-vx addrgenmode none',
      'address del 198.19.9.0/32 dev nodenet-vx',
      'address del fe80::1/64 dev nodenet-vx',
      'address add 198.19.1.0/32 dev nodenet-vx',
      'link set dev nodenet-vx up',
    ]);
  });

  it('recreates (not repairs) for another VNI or port, which the kernel cannot change on a live device', () => {
    const other = vxlanEndpointSpec(self, host, 7, 8472);
    expect(vxlanRecreateReasons(other, device)).toEqual(['VNI 4242 -> 7', 'UDP port 4789 -> 8472']);
  });

  it("calls a link without nodenet's alias, or a non-vxlan link with it, foreign", () => {
    expect(foreignDeviceProblem({ ...device, alias: 'theirs' })).toMatch(/was not made by nodenet \(its alias is 'theirs'/);
    const { alias: _alias, ...noAlias } = device;
    expect(foreignDeviceProblem(noAlias)).toMatch(/its alias is unset/);
    expect(foreignDeviceProblem({ ...device, kind: 'veth' })).toMatch(/is not a VXLAN device \(it is a veth link\)/);
  });
});

describe('vxlan peers', () => {
  it('programs neighbour then onlink route (proto 78) in ip, and the FDB entry in bridge', () => {
    const s = vxlanPeerScripts(peer2);
    expect(text(s.ip)).toEqual([
      'neigh replace 198.19.2.0 lladdr 02:6f:c6:12:00:02 dev nodenet-vx nud permanent',
      'route replace 198.19.2.0/24 via 198.19.2.0 dev nodenet-vx onlink proto 78',
    ]);
    expect(text(s.bridge)).toEqual(['fdb replace 02:6f:c6:12:00:02 dev nodenet-vx dst 198.18.0.2 self permanent']);
  });

  it("removes the superseded FDB entry when a peer's underlay address changed", () => {
    const moved = node('node-2', '198.18.0.22', '198.19.2.0/24');
    const s = vxlanPeerScripts(moved, peer2);
    expect(text(s.ip)).toEqual([
      'neigh replace 198.19.2.0 lladdr 02:6f:c6:12:00:16 dev nodenet-vx nud permanent',
      'route replace 198.19.2.0/24 via 198.19.2.0 dev nodenet-vx onlink proto 78',
    ]);
    expect(text(s.bridge)).toEqual([
      'fdb del 02:6f:c6:12:00:02 dev nodenet-vx self',
      'fdb replace 02:6f:c6:12:00:16 dev nodenet-vx dst 198.18.0.22 self permanent',
    ]);
  });

  it("removes the superseded route and neighbour entry when a peer's subnet changed", () => {
    const renumbered = node('node-2', '198.18.0.2', '198.19.20.0/24');
    const s = vxlanPeerScripts(renumbered, peer2);
    expect(text(s.ip)).toEqual([
      'route del 198.19.2.0/24 proto 78',
      'neigh flush to 198.19.2.0 dev nodenet-vx nud all',
      'neigh replace 198.19.20.0 lladdr 02:6f:c6:12:00:02 dev nodenet-vx nud permanent',
      'route replace 198.19.20.0/24 via 198.19.20.0 dev nodenet-vx onlink proto 78',
    ]);
    expect(text(s.bridge)).toEqual(['fdb replace 02:6f:c6:12:00:02 dev nodenet-vx dst 198.18.0.2 self permanent']);
  });

  it("removes route (only nodenet's: proto 78), neighbour and FDB entry", () => {
    const s = removeVxlanPeerScripts(peer2);
    expect(text(s.ip)).toEqual(['route del 198.19.2.0/24 proto 78', 'neigh flush to 198.19.2.0 dev nodenet-vx nud all']);
    expect(text(s.bridge)).toEqual(['fdb del 02:6f:c6:12:00:02 dev nodenet-vx self']);
    expect(s.ip.map((l) => l.id)).toEqual([OVERLAY_LINE.deleteRoute, OVERLAY_LINE.deleteNeighbour]);
  });
});

describe('reading what is programmed', () => {
  it('parses neighbour and FDB listings', () => {
    expect(
      parseNeighbours([
        { dst: '198.19.2.0', lladdr: '02:6f:c6:12:00:02', state: ['PERMANENT'] },
        { dst: '198.19.4.0', state: ['FAILED'] },
      ]),
    ).toEqual([
      { dst: '198.19.2.0', lladdr: '02:6f:c6:12:00:02', state: ['PERMANENT'] },
      { dst: '198.19.4.0', state: ['FAILED'] },
    ]);
    expect(parseFdbEntries([{ mac: '02:6f:c6:12:00:02', dst: '198.18.0.2', flags: ['self'], state: 'permanent' }])).toEqual([
      { mac: '02:6f:c6:12:00:02', dst: '198.18.0.2', state: 'permanent' },
    ]);
    expect(() => parseNeighbours({})).toThrow(/expected a JSON array/);
  });

  it('plans the removal of entries no wanted peer uses, and keeps the wanted ones', () => {
    const routes = programmedPeersOf([
      { dst: '198.19.2.0/24', gateway: '198.19.2.0', dev: 'nodenet-vx', metric: 0 },
      { dst: '198.19.3.0/24', gateway: '198.18.0.3', dev: 'u0', metric: 0 },
    ]);
    const neighbours = [
      { dst: '198.19.2.0', lladdr: '02:6f:c6:12:00:02', state: ['PERMANENT'] },
      { dst: '198.19.3.0', lladdr: '02:6f:c6:12:00:03', state: ['PERMANENT'] },
    ];
    const fdb = [
      { mac: '02:6f:c6:12:00:02', dst: '198.18.0.2' },
      { mac: '02:6f:c6:12:00:03', dst: '198.18.0.3' },
    ];
    const plan = stalePeerScripts([peer2], routes, neighbours, fdb);
    expect(text(plan.ip)).toEqual(['route del 198.19.3.0/24 proto 78', 'neigh flush to 198.19.3.0 dev nodenet-vx nud all']);
    expect(text(plan.bridge)).toEqual(['fdb del 02:6f:c6:12:00:03 dev nodenet-vx self']);
    expect(plan.removed).toEqual([
      'route 198.19.3.0/24 via 198.18.0.3 dev u0',
      'neighbour 198.19.3.0 lladdr 02:6f:c6:12:00:03',
      'fdb 02:6f:c6:12:00:03 dst 198.18.0.3',
    ]);
    const all = stalePeerScripts([peer2, peer3], routes, neighbours, fdb);
    expect([...all.ip, ...all.bridge]).toEqual([]);
  });
});

describe('Iproute2Overlay options', () => {
  it('has overhead 50 for vxlan and 0 for host-gw', () => {
    expect(new Iproute2Overlay({ mode: 'vxlan', vni: 4242, port: 4789, host }).overhead).toBe(50);
    expect(new Iproute2Overlay({ mode: 'host-gw', vni: 4242, port: 4789, host }).overhead).toBe(0);
  });

  it.each([
    [{ vni: -1 }, /overlay\.vni/],
    [{ vni: 0 }, /overlay\.vni: 0 is not a VXLAN network identifier: use an integer 1\.\.16777215/],
    [{ vni: 2 ** 24 }, /overlay\.vni/],
    [{ vni: 1.5 }, /overlay\.vni/],
    [{ port: 0 }, /overlay\.port/],
    [{ port: 65536 }, /overlay\.port/],
    [{ mode: 'geneve' }, /overlay\.mode/],
    [{ netns: 'bad name' }, /netns/],
  ])('refuses %j', (bad, message) => {
    const options = { mode: 'vxlan' as const, vni: 4242, port: 4789, host, ...bad } as ConstructorParameters<typeof Iproute2Overlay>[0];
    expect(() => new Iproute2Overlay(options)).toThrow(InvalidArgumentError);
    expect(() => new Iproute2Overlay(options)).toThrow(message);
  });

  it('runs bridge with -n in a named namespace, like ip', () => {
    expect(commandInNamespace(netns('node-1'), 'bridge', ['-batch', '-'])).toEqual({
      file: 'bridge',
      args: ['-n', 'node-1', '-batch', '-'],
    });
    expect(commandInNamespace(netns('/proc/42/ns/net'), 'bridge', ['-batch', '-'])).toEqual({
      file: 'nsenter',
      args: ['--net=/proc/42/ns/net', '--', 'bridge', '-batch', '-'],
    });
  });
});
