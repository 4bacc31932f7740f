// Conformance: CreateInterface (CONTRACT.md, "CreateInterface" and "Inputs, precisely"), with the node's
// bridge netfilter off (net.bridge.bridge-nf-call-*=0); br-netfilter.int.test.ts repeats the traffic with it on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InterfaceKind, Protocol, type CreateInterfaceRequest, type DeepPartial } from '@nodenet/api';
import { macForAddress, parseIpv4Address } from '@nodenet/core';
import {
  adoptInterface,
  echo,
  ipv4AddressesOf,
  link,
  ping,
  routes,
  rpcError,
  startEchoServer,
  startEchoServers,
  startNamespaceHolder,
} from '@nodenet/testkit';
import {
  BACKENDS,
  NODE_GATEWAY,
  NODE_PREFIX_LENGTH,
  NodeFixture,
  antiSpoofing,
  loopbackGuard,
  backendProfile,
  instanceToInstance,
  publishedFromInstances,
  publishedFromNode,
  publishedFromNodeLoopback,
  publishedFromWorld,
  publishedInstance,
} from '../src/index.js';

const HANDLE_RE = /^nni-[0-9a-f]{8}$/;
const RESERVED_FROM_CONFIG = 2222;
const mac = (address: string) => macForAddress(parseIpv4Address(address, 'address'));

describe.each(BACKENDS)('CreateInterface (%s backend)', (backend) => {
  let f: NodeFixture;
  beforeAll(async () => {
    f = await NodeFixture.start({ backend, config: { reservedPorts: [RESERVED_FROM_CONFIG] } });
  });
  afterAll(() => f?.close());

  describe('the interface', () => {
    it('is a veth whose instance end is left in the node namespace under the returned handle', async () => {
      const address = f.nextAddress();
      const r = await f.api.createInterface({ ipAddress: address });
      expect(r.interfaceName).toMatch(HANDLE_RE);
      expect(r.interfaceName.length).toBeLessThanOrEqual(15);
      const instanceEnd = await link(f.ns, r.interfaceName);
      expect(instanceEnd, 'the instance end is in the node namespace').toBeDefined();
      expect(instanceEnd!.linkinfo?.info_kind).toBe('veth');
      const hostEnd = await link(f.ns, r.hostInterfaceName!);
      expect(hostEnd).toMatchObject({ ifalias: `nodenet:${r.interfaceName}` });
      expect(await backendProfile(backend).switchOf(f.node, r.hostInterfaceName!), 'the host end is a port of the CNI').toBe('nodenet0');
      expect(hostEnd!.flags).toContain('UP');
    });

    it('can be moved, renamed and configured by the runtime, keeps its handle, and then talks', async () => {
      const address = f.nextAddress();
      const r = await f.api.createInterface({ ipAddress: address });
      const ns = await f.topology.createInstanceNamespace();
      await adoptInterface({
        nodeNs: f.ns,
        handle: r.interfaceName,
        instanceNs: ns,
        address,
        prefixLength: NODE_PREFIX_LENGTH,
        gateway: NODE_GATEWAY,
        rename: 'eth0',
      });
      expect(await link(f.ns, r.interfaceName)).toBeUndefined();
      for (const target of [NODE_GATEWAY, f.node.address, f.world.address]) {
        const p = await ping(ns, target);
        expect(p.ok, p.output).toBe(true);
      }
      // The handle stays the interface's name for the daemon: an identical request returns it, delete takes it.
      expect((await f.api.createInterface({ ipAddress: address })).interfaceName).toBe(r.interfaceName);
      await f.api.deleteInterface({ interfaceName: r.interfaceName });
      expect(await link(ns, 'eth0')).toBeUndefined();
    });

    it('response: handle, host-side name, MAC, gateway, prefix length and MTU match the kernel', async () => {
      const address = f.nextAddress();
      const r = await f.api.createInterface({ ipAddress: address });
      expect(r.hostInterfaceName).toBe(`nnh-${r.interfaceName.slice(4)}`);
      expect(r.macAddress).toBe(mac(address));
      expect(r.gateway).toBe(NODE_GATEWAY);
      expect(r.prefixLength).toBe(NODE_PREFIX_LENGTH);
      expect(r.mtu).toBe(f.instanceMtu);
      const instanceEnd = await link(f.ns, r.interfaceName);
      expect(instanceEnd).toMatchObject({ address: r.macAddress, mtu: r.mtu });
      expect((await link(f.ns, r.hostInterfaceName!))?.mtu).toBe(r.mtu);
    });

    it('netns extension (by name): moved, named eth0, addressed, up with lo, MTU and default route; talks at once', async () => {
      const inst = await f.addInstance(undefined, { via: 'netns' });
      expect(inst.response.interfaceName).toMatch(HANDLE_RE);
      expect(await link(f.ns, inst.handle), 'nothing left in the node namespace under the handle').toBeUndefined();
      const eth0 = await link(inst.ns!, 'eth0');
      expect(eth0).toMatchObject({ mtu: f.instanceMtu, address: mac(inst.address) });
      expect(eth0!.flags).toContain('UP');
      expect((await link(inst.ns!, 'lo'))!.flags).toContain('UP');
      expect(await ipv4AddressesOf(inst.ns!, 'eth0')).toEqual([`${inst.address}/${NODE_PREFIX_LENGTH}`]);
      expect(await routes(inst.ns!)).toContainEqual(expect.objectContaining({ dst: 'default', gateway: NODE_GATEWAY }));
      const p = await ping(inst.ns!, NODE_GATEWAY);
      expect(p.ok, p.output).toBe(true);
    });

    it('netns extension (by /proc/PID/ns/net path) with ifname', async () => {
      const ns = await f.topology.createInstanceNamespace();
      const holder = await startNamespaceHolder(f.scope, ns);
      const address = f.nextAddress();
      const r = await f.api.createInterface({ ipAddress: address, netns: holder.path, ifname: 'net0' });
      expect(r.interfaceName).toMatch(HANDLE_RE);
      expect(await ipv4AddressesOf(ns, 'net0')).toEqual([`${address}/${NODE_PREFIX_LENGTH}`]);
      const p = await ping(ns, NODE_GATEWAY);
      expect(p.ok, p.output).toBe(true);
    });

    it('TAP (kind extension): a bridge port named with the handle', async () => {
      const address = f.nextAddress();
      const r = await f.api.createInterface({ ipAddress: address, kind: InterfaceKind.TAP });
      expect(r.interfaceName).toMatch(HANDLE_RE);
      expect(r.hostInterfaceName).toBe(r.interfaceName);
      expect(r.macAddress).toBe(mac(address));
      const tap = await link(f.ns, r.interfaceName);
      expect(tap).toMatchObject({ ifalias: `nodenet:${r.interfaceName}` });
      expect(await backendProfile(backend).switchOf(f.node, r.interfaceName), 'the TAP is a port of the CNI').toBe('nodenet0');
      expect(tap!.linkinfo?.info_kind).toBe('tun');
      expect(tap!.linkinfo?.info_data).toMatchObject({ type: 'tap' });
    });
  });

  describe('traffic', () => {
    it('two instances ping each other and the gateway, and talk TCP and UDP with their own addresses', () => instanceToInstance(f));
    it('a published port (TCP and UDP) is reachable from the world', () => publishedFromWorld(f));
    it('a published port is reachable from the node itself, on its underlay and gateway addresses', () => publishedFromNode(f));
    it('a published port is reachable from the node itself on 127.0.0.1', () => publishedFromNodeLoopback(f));
    it('a published port is reachable from instances through the node addresses (hairpin, also to itself)', () =>
      publishedFromInstances(f));
    it('anti-spoofing: packets from an instance with another source address are dropped', () => antiSpoofing(f));
    it("no instance reaches services on the node's 127.0.0.1", () => loopbackGuard(f));

    it('a port mapping publishes another host port, for one protocol only', async () => {
      const [tcpHost, udpHost] = [f.nextPort(), f.nextPort()];
      const inst = await f.addInstance(undefined, {
        portMappings: [
          { hostPort: tcpHost, instancePort: 80, protocol: Protocol.TCP },
          { hostPort: udpHost, instancePort: 53, protocol: Protocol.UDP },
        ],
      });
      const [tcp80, udp80, udp53, tcp53] = await Promise.all([
        startEchoServer(f.scope, inst.ns!, { protocol: 'tcp', port: 80 }),
        startEchoServer(f.scope, inst.ns!, { protocol: 'udp', port: 80 }),
        startEchoServer(f.scope, inst.ns!, { protocol: 'udp', port: 53 }),
        startEchoServer(f.scope, inst.ns!, { protocol: 'tcp', port: 53 }),
      ]);
      const t = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port: tcpHost });
      expect(t.ok, t.error).toBe(true);
      expect(tcp80.receivedPayload(t.payload)).toHaveLength(1);
      const u = await echo(f.world.ns, { protocol: 'udp', host: f.node.address, port: udpHost });
      expect(u.ok, u.error).toBe(true);
      expect(udp53.receivedPayload(u.payload).length).toBeGreaterThan(0);
      // The other protocol on each host port is not published.
      const uOnTcpPort = await echo(f.world.ns, { protocol: 'udp', host: f.node.address, port: tcpHost, timeoutMs: 1000 });
      expect(uOnTcpPort.ok).toBe(false);
      expect(udp80.received).toEqual([]);
      const tOnUdpPort = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port: udpHost, timeoutMs: 1000 });
      expect(tOnUdpPort.ok).toBe(false);
      expect(tcp53.received).toEqual([]);
    });

    it('traffic to other destinations on a published port number is not rewritten', async () => {
      const p = await publishedInstance(f);
      const other = await f.addInstance();
      const third = await f.addInstance();
      const [worldTcp, worldUdp, thirdTcp] = await Promise.all([
        startEchoServer(f.scope, f.world.ns, { protocol: 'tcp', port: p.port }),
        startEchoServer(f.scope, f.world.ns, { protocol: 'udp', port: p.port, host: f.world.address }),
        startEchoServer(f.scope, third.ns!, { protocol: 'tcp', port: p.port }),
      ]);
      const cases = [
        { from: other.ns!, protocol: 'tcp', host: f.world.address, server: worldTcp, seen: f.node.address },
        { from: other.ns!, protocol: 'udp', host: f.world.address, server: worldUdp, seen: f.node.address },
        { from: f.ns, protocol: 'tcp', host: f.world.address, server: worldTcp, seen: f.node.address },
        { from: other.ns!, protocol: 'tcp', host: third.address, server: thirdTcp, seen: other.address },
      ] as const;
      for (const c of cases) {
        const r = await echo(c.from, { protocol: c.protocol, host: c.host, port: p.port });
        expect(r.ok, `${c.protocol} to ${c.host}:${p.port}: ${r.error}`).toBe(true);
        expect(c.server.receivedPayload(r.payload)[0]).toMatchObject({ peerAddress: c.seen });
      }
      expect(p.tcp.received, 'the publishing instance got nothing').toEqual([]);
      expect(p.udp.received).toEqual([]);
    });

    it('a seed-only client works end to end', async () => {
      const seed = f.daemon.seed();
      const address = f.nextAddress();
      const port = f.nextPort();
      const r = await seed.createInterface({ ip_address: address, ports: [port] });
      expect(Object.keys(r)).toEqual(['interface_name']);
      expect(r.interface_name).toMatch(HANDLE_RE);
      const ns = await f.topology.createInstanceNamespace();
      await adoptInterface({
        nodeNs: f.ns,
        handle: r.interface_name,
        instanceNs: ns,
        address,
        prefixLength: NODE_PREFIX_LENGTH,
        gateway: NODE_GATEWAY,
        rename: 'eth0',
      });
      const { tcp } = await startEchoServers(f.scope, ns, port);
      const p = await ping(ns, NODE_GATEWAY);
      expect(p.ok, p.output).toBe(true);
      const t = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port });
      expect(t.ok, t.error).toBe(true);
      expect(tcp.receivedPayload(t.payload)).toHaveLength(1);
      expect((await seed.createInterface({ ip_address: address, ports: [port] })).interface_name).toBe(r.interface_name);
      expect(await seed.deleteInterface({ interface_name: r.interface_name })).toEqual({});
      expect(await link(ns, 'eth0')).toBeUndefined();
      expect((await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port, timeoutMs: 1000 })).ok).toBe(false);
    });
  });

  describe('idempotency and conflicts', () => {
    it('an identical request returns the same name and changes nothing', async () => {
      const address = f.nextAddress();
      const request = { ipAddress: address, ports: [f.nextPort(), f.nextPort()] };
      const first = await f.api.createInterface(request);
      const before = await f.snapshot();
      const again = await f.api.createInterface(request);
      expect(again.interfaceName).toBe(first.interfaceName);
      expect(again).toEqual(first);
      expect(await f.snapshot()).toEqual(before);
    });

    it('an address in use with a different request: ALREADY_EXISTS, nothing changes', async () => {
      const address = f.nextAddress();
      const port = f.nextPort();
      await f.api.createInterface({ ipAddress: address, ports: [port] });
      const before = await f.snapshot();
      for (const request of [
        { ipAddress: address },
        { ipAddress: address, ports: [port, f.nextPort()] },
        { ipAddress: address, ports: [port], kind: InterfaceKind.TAP },
      ]) {
        const e = await rpcError(f.api.createInterface(request));
        expect(e.codeName, JSON.stringify(request)).toBe('ALREADY_EXISTS');
        expect(e.details).toContain(address);
      }
      expect(await f.snapshot()).toEqual(before);
    });

    it('a port another instance publishes: ALREADY_EXISTS, nothing changes, the address stays free', async () => {
      const port = f.nextPort();
      await f.api.createInterface({ ipAddress: f.nextAddress(), ports: [port] });
      const address = f.nextAddress();
      const before = await f.snapshot();
      const requests: Array<DeepPartial<CreateInterfaceRequest>> = [
        { ipAddress: address, ports: [port] },
        { ipAddress: address, ports: [f.nextPort(), port] },
        { ipAddress: address, portMappings: [{ hostPort: port, instancePort: 8080, protocol: Protocol.TCP }] },
        { ipAddress: address, portMappings: [{ hostPort: port, protocol: Protocol.UDP }] },
      ];
      for (const request of requests) {
        const e = await rpcError(f.api.createInterface(request));
        expect(e.codeName, JSON.stringify(request)).toBe('ALREADY_EXISTS');
        expect(e.details).toContain(String(port));
      }
      expect(await f.snapshot()).toEqual(before);
      // The host port is what must be unique: the same instance port behind another host port is fine.
      const ok = await f.api.createInterface({ ipAddress: address, portMappings: [{ hostPort: f.nextPort(), instancePort: port }] });
      expect(ok.interfaceName).toMatch(HANDLE_RE);
    });

    it.each([
      ['the overlay UDP port 4789 (seed ports)', { ports: [4789] }, '4789'],
      ['the overlay UDP port 4789 (UDP mapping)', { portMappings: [{ hostPort: 4789, instancePort: 53, protocol: Protocol.UDP }] }, '4789'],
      [`a config reservedPorts entry (${RESERVED_FROM_CONFIG})`, { ports: [RESERVED_FROM_CONFIG] }, String(RESERVED_FROM_CONFIG)],
      [
        'a config reservedPorts entry (TCP mapping)',
        { portMappings: [{ hostPort: RESERVED_FROM_CONFIG, instancePort: 22, protocol: Protocol.TCP }] },
        String(RESERVED_FROM_CONFIG),
      ],
    ] as Array<[string, DeepPartial<CreateInterfaceRequest>, string]>)(
      'a reserved port, %s: FAILED_PRECONDITION, nothing changes',
      async (_what, extra, mentioned) => {
        const before = await f.snapshot();
        const address = f.nextAddress();
        const e = await rpcError(f.api.createInterface({ ipAddress: address, ...extra }));
        expect(e.codeName).toBe('FAILED_PRECONDITION');
        expect(e.details).toContain(mentioned);
        expect(await f.snapshot()).toEqual(before);
      },
    );
  });

  describe('invalid requests', () => {
    const cases: Array<[string, DeepPartial<CreateInterfaceRequest>, string]> = [
      ['address outside the node subnet', { ipAddress: '198.19.2.5' }, '198.19.2.5'],
      ['the subnet network address', { ipAddress: '198.19.1.0' }, '198.19.1.0'],
      ['the subnet broadcast address', { ipAddress: '198.19.1.255' }, '198.19.1.255'],
      ['the gateway address', { ipAddress: NODE_GATEWAY }, NODE_GATEWAY],
      ['a non-canonical address (leading zero)', { ipAddress: '198.19.1.010' }, '198.19.1.010'],
      ['a non-canonical address (short form)', { ipAddress: '198.19.266' }, '198.19.266'],
      ['an IPv6 address', { ipAddress: 'fd00::5' }, 'fd00::5'],
      ['an IPv4-mapped IPv6 address', { ipAddress: '::ffff:198.19.1.5' }, '::ffff:198.19.1.5'],
      ['an empty address', { ipAddress: '' }, 'ip_address'],
      ['port 0', { ipAddress: '198.19.1.240', ports: [0] }, '0'],
      ['port 65536', { ipAddress: '198.19.1.240', ports: [65536] }, '65536'],
      ['a negative port', { ipAddress: '198.19.1.240', ports: [-1] }, '-1'],
      ['a duplicate port', { ipAddress: '198.19.1.240', ports: [8080, 8080] }, '8080'],
      [
        'a port in ports and a mapping',
        { ipAddress: '198.19.1.240', ports: [8080], portMappings: [{ hostPort: 8080, protocol: Protocol.TCP }] },
        '8080',
      ],
      ['a mapping with host port 0', { ipAddress: '198.19.1.240', portMappings: [{ hostPort: 0, instancePort: 80 }] }, 'port'],
      [
        'a mapping with instance port 70000',
        { ipAddress: '198.19.1.240', portMappings: [{ hostPort: 8080, instancePort: 70000 }] },
        '70000',
      ],
      ['a malformed ifname', { ipAddress: '198.19.1.240', netns: 'whatever', ifname: 'a/b' }, 'a/b'],
      ['a 16-character ifname', { ipAddress: '198.19.1.240', netns: 'whatever', ifname: 'abcdefghijklmnop' }, 'abcdefghijklmnop'],
    ];
    let before: Awaited<ReturnType<NodeFixture['snapshot']>>;
    beforeAll(async () => {
      before = await f.snapshot();
    });

    it.each(cases)('INVALID_ARGUMENT: %s', async (_what, request, mentioned) => {
      const e = await rpcError(f.api.createInterface(request));
      expect(e.codeName).toBe('INVALID_ARGUMENT');
      expect(e.details).toContain(mentioned);
    });

    it('none of them changed anything', async () => {
      expect(await f.snapshot()).toEqual(before);
    });
  });

  describe('failed creates leave nothing behind', () => {
    it.each([
      ['a namespace name that does not exist', `nnt-${process.pid}-does-not-exist`],
      ['a namespace path that does not exist', '/proc/999999999/ns/net'],
    ])('%s: NOT_FOUND; links, nftables and records as before; the address and port are free again', async (_what, netns) => {
      const address = f.nextAddress();
      const port = f.nextPort();
      const before = await f.snapshot();
      const e = await rpcError(f.api.createInterface({ ipAddress: address, ports: [port], netns }));
      expect(e.codeName).toBe('NOT_FOUND');
      expect(e.details).toContain(netns);
      expect(await f.snapshot()).toEqual(before);
      const inst = await f.addInstance(address, { ports: [port], via: 'netns' });
      const { tcp } = await startEchoServers(f.scope, inst.ns!, port);
      const t = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port });
      expect(t.ok, t.error).toBe(true);
      expect(tcp.receivedPayload(t.payload)).toHaveLength(1);
    });
  });
});

describe.each(BACKENDS)('CreateInterface with the daemon on TCP (%s backend)', (backend) => {
  let f: NodeFixture;
  beforeAll(async () => {
    f = await NodeFixture.start({ backend, tcpPort: 50051 });
  });
  afterAll(() => f?.close());

  it("the daemon's own TCP port: FAILED_PRECONDITION", async () => {
    const e = await rpcError(f.api.createInterface({ ipAddress: f.nextAddress(), ports: [50051] }));
    expect(e.codeName).toBe('FAILED_PRECONDITION');
    expect(e.details).toContain('50051');
  });
});
