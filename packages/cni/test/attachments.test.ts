// CniAttachments on a fake network (pure logic, a real store in a temp dir): what load() makes of records a
// crash left, allocation after a restart, DEL tolerance.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CniRecord, CreateInterfaceInput, InstanceRecord, Ipv4Address } from '@nodenet/core';
import { AttachmentStore, CniAttachments, type AttachmentNetwork, type AttachmentRecord } from '../src/index.js';

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
  async createContainerNetworkInterface(_input: { ipAddress: string; subNetwork: string }): Promise<unknown> {
    return undefined;
  }
  async createInterface(input: CreateInterfaceInput) {
    const handle = `nni-${String(++this.n).padStart(8, '0')}`;
    this.instances.push({
      handle,
      address: input.ipAddress,
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
      msg: expect.stringContaining("give 'subnet' and 'gateway'") as unknown,
    });
    await expect(a.handle({ ...req('STATUS', ''), config: { ...conf, cniVersion: '1.1.0' } })).rejects.toMatchObject({ code: 50 });
    await expect(
      a.handle({ ...req('STATUS', ''), config: { ...conf, cniVersion: '1.1.0', subnet: '198.19.1.0/24', gateway: '198.19.1.1' } }),
    ).resolves.toBeNull();
    let created: unknown;
    network.createContainerNetworkInterface = async (input: { ipAddress: string; subNetwork: string }) => {
      created = input;
      network.cniRecord = cni;
    };
    await a.handle({ ...req('ADD', 'c1'), config: { ...conf, subnet: '198.19.1.0/24', gateway: '198.19.1.1' } });
    expect(created).toEqual({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
  });

  it('a repeated ADD answers the same; an ADD with other settings for the same key is refused; DEL of the unknown is OK', async () => {
    const a = make();
    await a.load();
    const r1 = await a.handle(req('ADD', 'c1'));
    expect(await a.handle(req('ADD', 'c1'))).toEqual(r1);
    await expect(a.handle(req('ADD', 'c1', '/run/netns/other'))).rejects.toMatchObject({ code: 101 });
    await expect(a.handle(req('DEL', 'never', ''))).resolves.toBeNull();
  });
});
