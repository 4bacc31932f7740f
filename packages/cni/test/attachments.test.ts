// CniAttachments on a fake network (pure logic, a real store in a temp dir): what load() makes of records a
// crash left, allocation after a restart, DEL tolerance.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CniRecord, CreateInterfaceInput, InstanceRecord, Ipv4Address } from '@nodenet/core';
import { AttachmentStore, CniAttachments, type AttachmentNetwork, type AttachmentRecord, type CreateCniRequest } from '../src/index.js';

const cni = {
  name: 'nodenet0',
  gateway: '198.19.1.1',
  subnet: '198.19.1.0/24',
  mtu: 1450,
  mac: '02:6e:c6:13:01:01',
  createdAt: '',
} as unknown as CniRecord;

class FakeNetwork implements AttachmentNetwork {
  cniRecord: CniRecord | null = cni;
  instances: InstanceRecord[] = [];
  private n = 0;
  listInstances() {
    return this.instances;
  }
  async createContainerNetworkInterface(_input: CreateCniRequest): Promise<unknown> {
    return undefined;
  }
  async createInterface(input: CreateInterfaceInput) {
    const handle = `nni-${String(++this.n).padStart(8, '0')}`;
    this.instances.push({
      handle,
      address: input.ipAddress,
      ...(input.ipv6Address ? { ipv6Address: input.ipv6Address } : {}),
      netns: input.netns,
      ifname: input.ifname,
      mac: `02:6e:00:00:00:0${this.n}`,
    } as unknown as InstanceRecord);
    return {
      interfaceName: handle,
      hostInterfaceName: handle,
      macAddress: `02:6e:00:00:00:0${this.n}`,
      gateway: cni.gateway,
      prefixLength: 24,
      mtu: 1450,
    } as never;
  }
  async deleteInterface({ interfaceName }: { interfaceName: string }) {
    this.instances = this.instances.filter((i) => i.handle !== interfaceName);
  }
}

const conf = { cniVersion: '1.0.0', name: 'net', type: 'nodenet' };
const req = (command: string, containerId: string, netns = '/run/netns/a') => ({
  command,
  containerId,
  netns,
  ifname: 'eth0',
  args: '',
  path: '',
  config: conf,
});

describe('CniAttachments', () => {
  let dir: string;
  let network: FakeNetwork;
  const make = () =>
    new CniAttachments({ network, store: new AttachmentStore(dir), probe: { inspect: async () => ({}) }, publishedPorts: async () => [] });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nodenet-cni-'));
    network = new FakeNetwork();
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('load() completes a record an ADD left without handle when its instance exists, and drops it when not', async () => {
    const store = new AttachmentStore(dir);
    await store.load();
    const base = { ifname: 'eth0', network: 'net', allocated: true, ports: [], createdAt: '2026-01-01T00:00:00Z' };
    const made: AttachmentRecord = { ...base, containerId: 'made', netns: '/run/netns/m', address: '198.19.1.5' as Ipv4Address };
    const lost: AttachmentRecord = { ...base, containerId: 'lost', netns: '/run/netns/l', address: '198.19.1.6' as Ipv4Address };
    await store.save(made);
    await store.save(lost);
    network.instances.push({
      handle: 'nni-0000000a',
      address: '198.19.1.5',
      netns: '/run/netns/m',
      ifname: 'eth0',
      mac: '02:6e:c6:13:01:05',
    } as unknown as InstanceRecord);
    const a = make();
    await a.load();
    expect(a.list()).toEqual([expect.objectContaining({ containerId: 'made', handle: 'nni-0000000a', mac: '02:6e:c6:13:01:05' })]);
    expect(await readdir(join(dir, 'cni-attachments'))).toHaveLength(1);
    // DEL after the restart finds the instance through the completed record.
    await a.handle(req('DEL', 'made', ''));
    expect(network.instances).toEqual([]);
  });

  it('an IPv6 hostIP on a node whose CNI holds only IPv4: code 7 naming the mapping and what to do; nothing recorded or made', async () => {
    const a = make();
    await a.load();
    const portMappings = [
      { hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '198.18.0.5' },
      { hostPort: 8443, containerPort: 443, protocol: 'tcp', hostIP: '2001:db8:18::5' },
    ];
    const add = { ...req('ADD', 'c1'), config: { ...conf, runtimeConfig: { portMappings } } };
    await expect(a.handle(add)).rejects.toMatchObject({
      code: 7,
      msg: "runtimeConfig.portMappings[1].hostIP 2001:db8:18::5 is an IPv6 address, but this node's CNI holds only IPv4 198.19.1.0/24, so the container gets no IPv6 address to publish it to: give an IPv4 address of the node (podman: -p ADDRESS:8443:443), or none to publish on every address (podman: -p 8443:443), or give the node's CNI an IPv6 subnet",
    });
    expect(network.instances).toEqual([]);
    expect(a.list()).toEqual([]);
    expect(await readdir(join(dir, 'cni-attachments')).catch(() => [])).toEqual([]);
    // The IPv4 one alone is published.
    await a.handle({ ...add, config: { ...conf, runtimeConfig: { portMappings: [portMappings[0]] } } });
    expect(network.instances).toHaveLength(1);
  });

  it('allocation resumes after the last address handed out, across a restart, and never reuses a released one at once', async () => {
    const a = make();
    await a.load();
    const first = (await a.handle(req('ADD', 'c1'))) as { ips: { address: string }[] };
    const second = (await a.handle(req('ADD', 'c2', '/run/netns/b'))) as { ips: { address: string }[] };
    expect([first.ips[0]!.address, second.ips[0]!.address]).toEqual(['198.19.1.2/24', '198.19.1.3/24']);
    await a.handle(req('DEL', 'c2', '/run/netns/b'));
    const b = make(); // a restart
    await b.load();
    const third = (await b.handle(req('ADD', 'c3', '/run/netns/c'))) as { ips: { address: string }[] };
    expect(third.ips[0]!.address).toBe('198.19.1.4/24');
  });

  it('without a node CNI: ADD is code 11 saying how to create it (or creates it from subnet/gateway); STATUS is 50', async () => {
    network.cniRecord = null;
    const a = make();
    await a.load();
    await expect(a.handle(req('ADD', 'c1'))).rejects.toMatchObject({
      code: 11,
      msg: expect.stringContaining("give 'subnet' and 'gateway' (IPv4) and/or 'ipv6Subnet' and 'ipv6Gateway' (IPv6)") as unknown,
    });
    await expect(a.handle({ ...req('STATUS', ''), config: { ...conf, cniVersion: '1.1.0' } })).rejects.toMatchObject({ code: 50 });
    await expect(
      a.handle({ ...req('STATUS', ''), config: { ...conf, cniVersion: '1.1.0', subnet: '198.19.1.0/24', gateway: '198.19.1.1' } }),
    ).resolves.toBeNull();
    let created: unknown;
    network.createContainerNetworkInterface = async (input: CreateCniRequest) => {
      created = input;
      network.cniRecord = cni;
    };
    await a.handle({ ...req('ADD', 'c1'), config: { ...conf, subnet: '198.19.1.0/24', gateway: '198.19.1.1' } });
    expect(created).toEqual({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
  });

  it('creates a dual-stack or an IPv6-only node CNI from the conflist alone, with the API fields of each shape', async () => {
    const dual = { ...cni, ipv6Gateway: 'fd19:0:0:1::1', ipv6Subnet: 'fd19:0:0:1::/64' } as unknown as CniRecord;
    const only6 = { ...cni, gateway: 'fd19:0:0:2::1', subnet: 'fd19:0:0:2::/64' } as unknown as CniRecord;
    for (const { keys, record, request, ips } of [
      {
        keys: { subnet: '198.19.1.0/24', gateway: '198.19.1.1', ipv6Subnet: 'fd19:0:0:1::/64', ipv6Gateway: 'fd19:0:0:1::1' },
        record: dual,
        request: { ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24', ipv6Address: 'fd19:0:0:1::1', ipv6SubNetwork: 'fd19:0:0:1::/64' },
        ips: ['198.19.1.2/24', 'fd19:0:0:1::2/64'],
      },
      {
        keys: { ipv6Subnet: 'fd19:0:0:2::/64', ipv6Gateway: 'fd19:0:0:2::1' },
        record: only6,
        request: { ipAddress: 'fd19:0:0:2::1', subNetwork: 'fd19:0:0:2::/64' },
        ips: ['fd19:0:0:2::2/64'],
      },
    ]) {
      network = new FakeNetwork();
      network.cniRecord = null;
      const created: CreateCniRequest[] = [];
      network.createContainerNetworkInterface = async (input: CreateCniRequest) => {
        created.push(input);
        network.cniRecord = record;
      };
      const a = make();
      await a.load();
      const r = (await a.handle({ ...req('ADD', `c-${ips.length}`), config: { ...conf, ...keys } })) as { ips: { address: string }[] };
      expect(created).toEqual([request]);
      expect(r.ips.map((i) => i.address)).toEqual(ips);
    }
  });

  it('a conflist CNI must match the node CNI in every family it gives; a family it leaves out is the node CNI', async () => {
    const a = make(); // the node is IPv4-only (198.19.1.0/24)
    await a.load();
    const v6 = { ipv6Subnet: 'fd19:0:0:1::/64', ipv6Gateway: 'fd19:0:0:1::1' };
    await expect(
      a.handle({ ...req('ADD', 'c1'), config: { ...conf, subnet: '198.19.1.0/24', gateway: '198.19.1.1', ...v6 } }),
    ).rejects.toMatchObject({
      code: 7,
      msg: expect.stringContaining(
        "'ipv6Subnet' fd19:0:0:1::/64 and 'ipv6Gateway' fd19:0:0:1::1: the node's CNI has no IPv6 subnet",
      ) as unknown,
    });
    await expect(
      a.handle({ ...req('ADD', 'c1'), config: { ...conf, subnet: '198.19.2.0/24', gateway: '198.19.2.1' } }),
    ).rejects.toMatchObject({
      code: 7,
      msg: expect.stringContaining(
        "'subnet' 198.19.2.0/24 and 'gateway' 198.19.2.1: the node's are 198.19.1.0/24 and 198.19.1.1",
      ) as unknown,
    });
    // A dual-stack node: the IPv4-only conflist of before attaches with both families.
    network.cniRecord = { ...cni, ipv6Gateway: 'fd19:0:0:1::1', ipv6Subnet: 'fd19:0:0:1::/64' } as unknown as CniRecord;
    const r = (await a.handle({ ...req('ADD', 'c2'), config: { ...conf, subnet: '198.19.1.0/24', gateway: '198.19.1.1' } })) as {
      ips: { address: string }[];
    };
    expect(r.ips.map((i) => i.address)).toEqual(['198.19.1.2/24', 'fd19:0:0:1::2/64']);
    await expect(a.handle({ ...req('ADD', 'c3', '/run/netns/c'), config: { ...conf, ...v6 } })).resolves.toBeDefined();
  });

  it('a repeated ADD answers the same; an ADD with other settings for the same key is refused; DEL of the unknown is OK', async () => {
    const a = make();
    await a.load();
    const r1 = await a.handle(req('ADD', 'c1'));
    expect(await a.handle(req('ADD', 'c1'))).toEqual(r1);
    await expect(a.handle(req('ADD', 'c1', '/run/netns/other'))).rejects.toMatchObject({ code: 101 });
    await expect(a.handle(req('DEL', 'never', ''))).resolves.toBeNull();
  });

  describe('on a dual-stack node', () => {
    const dual = { ...cni, ipv6Gateway: 'fd19:0:0:1::1', ipv6Subnet: 'fd19:0:0:1::/64' } as unknown as CniRecord;
    type Result = { ips: { address: string; gateway: string }[]; routes: { dst: string; gw: string }[] };

    it('ADD allocates one address per family, both given to CreateInterface; the cursors survive a restart', async () => {
      network.cniRecord = dual;
      const a = make();
      await a.load();
      const first = (await a.handle(req('ADD', 'c1'))) as Result;
      expect(first.ips).toEqual([
        { address: '198.19.1.2/24', gateway: '198.19.1.1', interface: 0 },
        { address: 'fd19:0:0:1::2/64', gateway: 'fd19:0:0:1::1', interface: 0 },
      ]);
      expect(first.routes).toEqual([
        { dst: '0.0.0.0/0', gw: '198.19.1.1' },
        { dst: '::/0', gw: 'fd19:0:0:1::1' },
      ]);
      expect(network.instances[0]).toMatchObject({ address: '198.19.1.2', ipv6Address: 'fd19:0:0:1::2' });
      await a.handle(req('DEL', 'c1', ''));
      expect(network.instances).toEqual([]);
      const b = make(); // a restart: the freed addresses are not the next ones
      await b.load();
      const second = (await b.handle(req('ADD', 'c2', '/run/netns/b'))) as Result;
      expect(second.ips.map((i) => i.address)).toEqual(['198.19.1.3/24', 'fd19:0:0:1::3/64']);
    });

    it("skips an IPv6 address the gRPC API's instances hold; honours a static IPv6 address and allocates the IPv4 one", async () => {
      network.cniRecord = dual;
      network.instances.push({ handle: 'nni-x', address: '198.19.1.9', ipv6Address: 'fd19:0:0:1::2' } as unknown as InstanceRecord);
      const a = make();
      await a.load();
      const r = (await a.handle(req('ADD', 'c1'))) as Result;
      expect(r.ips.map((i) => i.address)).toEqual(['198.19.1.2/24', 'fd19:0:0:1::3/64']);
      const s = (await a.handle({
        ...req('ADD', 'c2', '/run/netns/b'),
        config: { ...conf, runtimeConfig: { ips: ['fd19:0:0:1::77/64'] } },
      })) as Result;
      expect(s.ips.map((i) => i.address)).toEqual(['198.19.1.3/24', 'fd19:0:0:1::77/64']);
      await expect(
        a.handle({ ...req('ADD', 'c3', '/run/netns/c'), config: { ...conf, runtimeConfig: { ips: ['fd19:0:0:1::78/96'] } } }),
      ).rejects.toMatchObject({ code: 7, msg: expect.stringContaining('the prefix length is 64') as unknown });
    });

    it('an IPv6-only node: the IPv6 address is the seed one; a static IPv4 address is refused naming the families', async () => {
      network.cniRecord = { ...cni, gateway: 'fd19:0:0:2::1', subnet: 'fd19:0:0:2::/64' } as unknown as CniRecord;
      const a = make();
      await a.load();
      const r = (await a.handle(req('ADD', 'c1'))) as Result;
      expect(r.ips).toEqual([{ address: 'fd19:0:0:2::2/64', gateway: 'fd19:0:0:2::1', interface: 0 }]);
      expect(r.routes).toEqual([{ dst: '::/0', gw: 'fd19:0:0:2::1' }]);
      expect(network.instances[0]).toMatchObject({ address: 'fd19:0:0:2::2' });
      expect(network.instances[0]).not.toHaveProperty('ipv6Address');
      await expect(
        a.handle({ ...req('ADD', 'c2', '/run/netns/b'), config: { ...conf, runtimeConfig: { ips: ['198.19.1.5/24'] } } }),
      ).rejects.toMatchObject({ code: 7, msg: expect.stringContaining('holds IPv6 fd19:0:0:2::/64 only') as unknown });
    });

    it('CHECK wants both addresses and both default routes', async () => {
      network.cniRecord = dual;
      let state = {
        link: { mac: '02:6e:00:00:00:01', up: true, addresses: ['198.19.1.2/24', 'fd19:0:0:1::2/64'] },
        defaultGateway: '198.19.1.1',
        defaultIpv6Gateway: 'fd19:0:0:1::1',
      };
      const a = new CniAttachments({
        network,
        store: new AttachmentStore(dir),
        probe: { inspect: async () => state },
        publishedPorts: async () => [],
      });
      await a.load();
      await a.handle(req('ADD', 'c1'));
      await expect(a.handle(req('CHECK', 'c1'))).resolves.toBeNull();
      state = { ...state, link: { ...state.link, addresses: ['198.19.1.2/24'] }, defaultIpv6Gateway: undefined as unknown as string };
      await expect(a.handle(req('CHECK', 'c1'))).rejects.toMatchObject({
        code: 102,
        msg: expect.stringMatching(/not fd19:0:0:1::2\/64.*IPv6 default route goes nowhere, not via fd19:0:0:1::1/) as unknown,
      });
    });
  });
});
