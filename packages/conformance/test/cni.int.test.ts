// Conformance: CreateContainerNetworkInterface (CONTRACT.md, "CreateContainerNetworkInterface").
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { macForAddress, parseIpv4Address } from '@nodenet/core';
import { echo, link, ipv4AddressesOf, ping, readSysctls, rpcError, startEchoServer } from '@nodenet/testkit';
import { BACKENDS, NODE_GATEWAY, NODE_SUBNET, NodeFixture } from '../src/index.js';

describe.each(BACKENDS)('CreateContainerNetworkInterface (%s backend)', (backend) => {
  describe('refused requests (no CNI yet)', () => {
    let f: NodeFixture;
    beforeAll(async () => {
      f = await NodeFixture.start({ backend, cni: false });
    });
    afterAll(() => f?.close());

    const invalid: Array<[string, string, string, string]> = [
      // [what, ip_address, sub_network, text the message must contain]
      ['gateway = network address', '198.19.1.0', '198.19.1.0/24', '198.19.1.0'],
      ['gateway = broadcast address', '198.19.1.255', '198.19.1.0/24', '198.19.1.255'],
      ['gateway outside the subnet', '198.19.2.1', '198.19.1.0/24', '198.19.2.1'],
      ['subnet with host bits set', '198.19.1.1', '198.19.1.1/24', '198.19.1.1/24'],
      ['non-canonical address (leading zero)', '198.19.01.1', '198.19.1.0/24', '198.19.01.1'],
      ['non-canonical subnet address', '198.19.1.1', '198.19.01.0/24', '198.19.01.0'],
      ['integer address form', '3323134209', '198.19.1.0/24', '3323134209'],
      ['hex address form', '0xc6.0x13.1.1', '198.19.1.0/24', '0xc6.0x13.1.1'],
      ['padded address', ' 198.19.1.1', '198.19.1.0/24', '198.19.1.1'],
      // IPv6 in the seed fields makes an IPv6-only CNI (ipv6-node.int.test.ts); these are still wrong.
      ['IPv6 subnet shorter than /64', 'fd00::1', 'fd00::/48', '/64 to /120'],
      ['IPv6 gateway, IPv4 subnet', 'fd00::1', '198.19.1.0/24', 'give both in one family'],
      ['IPv6 gateway outside its subnet', 'fd01::1', 'fd00::/64', 'fd01::1'],
      ['non-canonical IPv6 gateway', 'FD00::1', 'fd00::/64', 'write fd00::1'],
      ['subnet without a prefix', '198.19.1.1', '198.19.1.0', '198.19.1.0'],
      ['prefix beyond 32', '198.19.1.1', '198.19.1.0/33', '198.19.1.0/33'],
      ['empty address', '', '198.19.1.0/24', 'ip_address'],
      ['empty subnet', '198.19.1.1', '', 'sub_network'],
    ];

    it.each(invalid)('INVALID_ARGUMENT: %s', async (_what, ipAddress, subNetwork, mentioned) => {
      const e = await rpcError(f.api.createContainerNetworkInterface({ ipAddress, subNetwork }));
      expect(e.codeName).toBe('INVALID_ARGUMENT');
      expect(e.details).toContain(mentioned.trim());
    });

    it.each([
      ['the underlay network itself', '198.18.0.50', '198.18.0.0/24'],
      ['a supernet of the underlay', '198.16.0.1', '198.16.0.0/14'],
      ['a part of the underlay without the node address', '198.18.0.129', '198.18.0.128/25'],
    ])('FAILED_PRECONDITION naming the underlay: %s', async (_what, ipAddress, subNetwork) => {
      const e = await rpcError(f.api.createContainerNetworkInterface({ ipAddress, subNetwork }));
      expect(e.codeName).toBe('FAILED_PRECONDITION');
      expect(e.details).toMatch(/198\.18\.0\.(0\/24|1\b)/);
    });

    it('left nothing behind: no CNI link, no nftables table, no record', async () => {
      expect(await link(f.ns, 'nodenet0')).toBeUndefined();
      const { node, state } = await f.snapshot();
      expect(node.links.map((l) => l.ifname).sort()).toEqual(['eth0', 'lo']);
      expect(node.ruleset).toEqual([expect.objectContaining({ metainfo: expect.anything() as unknown })]);
      // Whatever the state dir holds, it records no CNI.
      expect(JSON.stringify(state)).not.toContain('198.19.1.');
    });

    it('CreateInterface before the CNI: FAILED_PRECONDITION saying to create the CNI first (full and seed client)', async () => {
      const e = await rpcError(f.api.createInterface({ ipAddress: '198.19.1.2', ports: [8080] }));
      expect(e.codeName).toBe('FAILED_PRECONDITION');
      expect(e.details).toContain('CreateContainerNetworkInterface');
      const s = await rpcError(f.daemon.seed().createInterface({ ip_address: '198.19.1.2', ports: [] }));
      expect(s.codeName).toBe('FAILED_PRECONDITION');
      expect((await f.snapshot()).node.links.map((l) => l.ifname).sort()).toEqual(['eth0', 'lo']);
    });
  });

  describe('a created CNI', () => {
    let f: NodeFixture;
    let firstName: string;
    beforeAll(async () => {
      f = await NodeFixture.start({ backend, cni: false });
      firstName = (await f.api.createContainerNetworkInterface({ ipAddress: NODE_GATEWAY, subNetwork: NODE_SUBNET })).interfaceName;
    });
    afterAll(() => f?.close());

    it('returns the CNI name and creates it with the gateway address, up, tagged, with the derived MAC', async () => {
      expect(firstName).toBe('nodenet0');
      const cni = await link(f.ns, 'nodenet0');
      expect(cni).toBeDefined();
      expect(cni!.flags).toContain('UP');
      expect(cni!.ifalias).toBe('nodenet:cni');
      expect(cni!.address).toBe(macForAddress(parseIpv4Address(NODE_GATEWAY, 'gateway')));
      expect(await ipv4AddressesOf(f.ns, 'nodenet0')).toEqual(['198.19.1.1/24']);
      if (backend === 'iproute2') expect(cni!.linkinfo?.info_kind).toBe('bridge');
    });

    it('turns on IPv4 forwarding in the node', async () => {
      expect(await readSysctls(f.ns, ['net.ipv4.ip_forward'])).toEqual({ 'net.ipv4.ip_forward': '1' });
    });

    it('is idempotent: the same arguments return the same name and change nothing', async () => {
      const before = await f.snapshot();
      const again = await f.api.createContainerNetworkInterface({ ipAddress: NODE_GATEWAY, subNetwork: NODE_SUBNET });
      expect(again.interfaceName).toBe(firstName);
      const viaSeed = await f.daemon.seed().createContainerNetworkInterface({ ip_address: NODE_GATEWAY, sub_network: NODE_SUBNET });
      expect(viaSeed.interface_name).toBe(firstName);
      expect(await f.snapshot()).toEqual(before);
    });

    it.each([
      ['another gateway', '198.19.1.2', NODE_SUBNET, /ip_address/],
      ['another subnet', '198.19.2.1', '198.19.2.0/24', /sub_network/],
      ['another prefix', NODE_GATEWAY, '198.19.0.0/16', /sub_network/],
    ])('other arguments (%s): FAILED_PRECONDITION naming what differs, nothing changes', async (_what, ipAddress, subNetwork, names) => {
      const before = await f.snapshot();
      const e = await rpcError(f.api.createContainerNetworkInterface({ ipAddress, subNetwork }));
      expect(e.codeName).toBe('FAILED_PRECONDITION');
      expect(e.details).toMatch(names);
      expect(await f.snapshot()).toEqual(before);
    });

    it('the daemon logs one JSON object per line on stdout', () => {
      expect(f.daemon.logs.length).toBeGreaterThan(0);
      expect(f.daemon.nonJsonStdout).toEqual([]);
    });

    it('an invalid request stays INVALID_ARGUMENT once a CNI exists', async () => {
      const e = await rpcError(f.api.createContainerNetworkInterface({ ipAddress: '198.19.1.255', subNetwork: NODE_SUBNET }));
      expect(e.codeName).toBe('INVALID_ARGUMENT');
    });

    it('masquerades instance traffic leaving the cluster: the world sees the node address', async () => {
      const a = await f.addInstance();
      const [tcp, udp] = await Promise.all([
        startEchoServer(f.scope, f.world.ns, { protocol: 'tcp', port: 7100 }),
        startEchoServer(f.scope, f.world.ns, { protocol: 'udp', port: 7100, host: f.world.internetAddress }),
      ]);
      const p = await ping(a.ns!, f.world.address);
      expect(p.ok, p.output).toBe(true);
      const t = await echo(a.ns!, { protocol: 'tcp', host: f.world.address, port: 7100 });
      expect(t.ok, t.error).toBe(true);
      expect(tcp.receivedPayload(t.payload)).toEqual([expect.objectContaining({ peerAddress: f.node.address })]);
      const u = await echo(a.ns!, { protocol: 'udp', host: f.world.internetAddress, port: 7100 });
      expect(u.ok, u.error).toBe(true);
      expect(u.from).toBe(f.world.internetAddress);
      expect(udp.receivedPayload(u.payload)[0]).toMatchObject({ peerAddress: f.node.address });
    });

    it('does not masquerade traffic inside the node subnet or to the node', async () => {
      const [a, b] = await Promise.all([f.addInstance(), f.addInstance()]);
      const server = await startEchoServer(f.scope, b.ns!, { protocol: 'tcp', port: 7200 });
      const t = await echo(a.ns!, { protocol: 'tcp', host: b.address, port: 7200 });
      expect(t.ok, t.error).toBe(true);
      expect(server.receivedPayload(t.payload)).toEqual([expect.objectContaining({ peerAddress: a.address })]);
      const atNode = await startEchoServer(f.scope, f.ns, { protocol: 'tcp', port: 7201 });
      const n = await echo(a.ns!, { protocol: 'tcp', host: NODE_GATEWAY, port: 7201 });
      expect(n.ok, n.error).toBe(true);
      expect(atNode.receivedPayload(n.payload)).toEqual([expect.objectContaining({ peerAddress: a.address })]);
    });
  });

  describe('with a known peer (static membership)', () => {
    let f: NodeFixture;
    beforeAll(async () => {
      f = await NodeFixture.start({
        backend,
        cni: false,
        config: { membership: { type: 'static', peers: [{ name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' }] } },
      });
    });
    afterAll(() => f?.close());

    it.each([
      ["the peer's subnet", '198.19.2.1', '198.19.2.0/24'],
      ["a supernet of the peer's subnet", '198.19.1.1', '198.19.0.0/16'],
      ["a part of the peer's subnet", '198.19.2.129', '198.19.2.128/25'],
    ])('FAILED_PRECONDITION naming the peer: %s', async (_what, ipAddress, subNetwork) => {
      const before = await f.snapshot();
      const e = await rpcError(f.api.createContainerNetworkInterface({ ipAddress, subNetwork }));
      expect(e.codeName).toBe('FAILED_PRECONDITION');
      expect(e.details).toContain('198.19.2.0/24');
      expect(e.details).toContain('node-2');
      expect(await f.snapshot()).toEqual(before);
    });

    it('a subnet beside the peer is accepted', async () => {
      expect((await f.api.createContainerNetworkInterface({ ipAddress: NODE_GATEWAY, subNetwork: NODE_SUBNET })).interfaceName).toBe(
        'nodenet0',
      );
    });
  });
});
