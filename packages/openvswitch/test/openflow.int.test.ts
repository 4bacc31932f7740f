/**
 * OpenFlowConnection against a real ovs-vswitchd (a private OVS in a test namespace, userspace datapath,
 * fail_mode secure): flows added in a bundle let two veth-attached namespaces ping each other, and
 * ovs-ofctl dump-flows shows them as sent; modify and delete by cookie change traffic accordingly; a
 * bundle refused in the middle changes nothing; a refused flow-mod outside a bundle is reported by index;
 * packet-outs reach the port their actions name (an ARP request the receiving namespace learns from), a
 * refused one is reported by index.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateOvs, TestScope, exec, ping } from '@nodenet/testkit';
import { OpenFlowConnection, OpenFlowError, PORT, flowModOf, formatFlowStats, packetOutOf, type FlowMod } from '../src/index.js';

const BRIDGE = 'nnof0';
const A = { address: '198.19.7.1', ofport: 1, cookie: 0x6e6e0100000000a1n };
const B = { address: '198.19.7.2', ofport: 2, cookie: 0x6e6e0100000000b2n };
const BASE = 0x6e6e000000000000n;
const hex = (c: bigint) => `0x${c.toString(16)}`;

/** Anti-spoofing for one port (as backend-ovs's instanceFlows) then NORMAL switching in table 10. */
function portFlows(p: typeof A): string[] {
  return [
    `cookie=${hex(p.cookie)},table=0,priority=200,ip,in_port=${p.ofport},nw_src=${p.address},actions=goto_table:10`,
    `cookie=${hex(p.cookie)},table=0,priority=200,arp,in_port=${p.ofport},arp_spa=${p.address},actions=goto_table:10`,
  ];
}
const baseFlows = [`cookie=${hex(BASE)},table=0,priority=0,actions=drop`, `cookie=${hex(BASE)},table=10,priority=0,actions=NORMAL`];
const adds = (flows: readonly string[]): FlowMod[] => flows.map((f) => flowModOf('add', f));
/** The flows as dump-flows prints them once added, from the flow-mods that add them. */
const asDumped = (flows: readonly string[]): string[] =>
  adds(flows)
    .map((m) =>
      formatFlowStats({
        table: m.table ?? 0,
        cookie: m.cookie ?? 0n,
        priority: m.priority ?? 0,
        match: m.match ?? {},
        instructions: m.instructions ?? {},
      }),
    )
    .sort();

describe('OpenFlowConnection against ovs-vswitchd', () => {
  let scope: TestScope;
  let ovs: PrivateOvs;
  let of: OpenFlowConnection;
  let nsA: string;
  let nsB: string;

  /** ovs-ofctl's view, in its --no-stats form. */
  const dump = async () => (await ovs.flows(BRIDGE)).sort();

  /** Adds `flows` (all with `cookie`) in a bundle; ovs-ofctl's view of them, checked equal to ours. */
  const addAndReadBack = async (cookie: bigint, flows: readonly string[]): Promise<string[]> => {
    await of.bundle(adds(flows));
    const switchView = (await dump()).filter((l) => l.includes(hex(cookie)));
    const ours = (await of.dumpFlows({ cookie, cookieMask: 0xffffffffffffffffn })).map(formatFlowStats).sort();
    expect(switchView).toEqual(ours);
    return ours;
  };
  /** Deletes every flow with `cookie` and checks that ovs-ofctl shows none left. */
  const deleteAll = async (cookie: bigint) => {
    await of.flowMods([flowModOf('delete', `cookie=${hex(cookie)}/-1`)]);
    expect((await dump()).some((l) => l.includes(hex(cookie)))).toBe(false);
  };

  beforeAll(async () => {
    scope = await TestScope.create();
    const host = await scope.createNamespace();
    [nsA, nsB] = [await scope.createNamespace(), await scope.createNamespace()];
    ovs = await PrivateOvs.start(scope, host);
    await ovs.vsctl(['add-br', BRIDGE, '--', 'set', 'Bridge', BRIDGE, 'datapath_type=netdev', 'fail_mode=secure']);
    for (const [ns, p, name] of [
      [nsA, A, 'nnofa'],
      [nsB, B, 'nnofb'],
    ] as const) {
      await exec('ip', ['-n', host, 'link', 'add', name, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await exec('ip', ['-n', host, 'link', 'set', name, 'up']);
      await exec('ip', ['-n', ns, 'addr', 'add', `${p.address}/24`, 'dev', 'eth0']);
      await exec('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      await ovs.vsctl(['add-port', BRIDGE, name, '--', 'set', 'Interface', name, `ofport_request=${p.ofport}`]);
    }
    of = await OpenFlowConnection.connect({ target: `unix:${ovs.dir}/${BRIDGE}.mgmt` });
    scope.defer('close the OpenFlow connection', () => of.close());
  });
  afterAll(() => scope?.cleanup());

  it('negotiates OpenFlow 1.4 and reads the features', () => {
    expect(of.features?.nTables).toBeGreaterThan(200);
  });

  it('a bundle of flows lets the two ports talk; dump-flows shows what was sent', async () => {
    expect((await ping(nsA, B.address, { timeoutSec: 1 })).ok).toBe(false);
    const flows = [...baseFlows, ...portFlows(A), ...portFlows(B)];
    await of.bundle(adds(flows));
    const r = await ping(nsA, B.address, { count: 2 });
    expect(r.ok, r.output).toBe(true);
    // ovs-ofctl's dump and ours agree, and both are the flows sent (in dump-flows' text form).
    const ours = (await of.dumpFlows()).map(formatFlowStats).sort();
    expect(await dump()).toEqual(ours);
    expect(ours).toEqual(asDumped(flows));
  });

  it('reads flows back by cookie and mask', async () => {
    const mine = await of.dumpFlows({ cookie: A.cookie, cookieMask: 0xffffffffffffffffn });
    expect(mine.map((f) => f.cookie)).toEqual([A.cookie, A.cookie]);
    const instances = await of.dumpFlows({ cookie: 0x6e6e010000000000n, cookieMask: 0xffffff0000000000n });
    expect(instances).toHaveLength(4);
  });

  it('counts flows by cookie and mask (aggregate stats) as the dump does', async () => {
    const instanceClass = { cookie: 0x6e6e010000000000n, cookieMask: 0xffffff0000000000n };
    expect((await of.aggregate(instanceClass)).flowCount).toBe((await of.dumpFlows(instanceClass)).length);
    expect((await of.aggregate({ cookie: A.cookie, cookieMask: 0xffffffffffffffffn })).flowCount).toBe(2);
    expect((await of.aggregate()).flowCount).toBe((await dump()).length);
    expect((await of.aggregate({ cookie: 0x6e6e0300000000ffn, cookieMask: 0xffffffffffffffffn })).flowCount).toBe(0);
  });

  it('modify (strict) and delete by cookie change traffic accordingly', async () => {
    await of.flowMods([flowModOf('modifyStrict', `table=10,priority=0,actions=drop`)]);
    expect((await ping(nsA, B.address, { timeoutSec: 1 })).ok).toBe(false);
    await of.flowMods([flowModOf('modifyStrict', `table=10,priority=0,actions=NORMAL`)]);
    expect((await ping(nsA, B.address, { count: 2 })).ok).toBe(true);
    await of.flowMods([flowModOf('delete', `cookie=${hex(B.cookie)}/-1`)]);
    expect((await dump()).some((l) => l.includes(hex(B.cookie)))).toBe(false);
    expect((await dump()).filter((l) => l.includes(hex(A.cookie)))).toHaveLength(2);
    expect((await ping(nsA, B.address, { timeoutSec: 1 })).ok).toBe(false);
    await of.bundle(adds(portFlows(B)));
    expect((await ping(nsA, B.address, { count: 2 })).ok).toBe(true);
  });

  it('a bundle refused in the middle changes nothing', async () => {
    const before = await dump();
    const error = await of
      .bundle([
        flowModOf('delete', `cookie=${hex(A.cookie)}/-1`),
        flowModOf('add', 'cookie=0x6e6e0100000000c3,table=254,priority=1,actions=drop'),
        flowModOf('add', 'cookie=0x6e6e0100000000c3,table=0,priority=300,ip,actions=drop'),
      ])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenFlowError);
    expect((error as Error).message).toContain(`${BRIDGE}.mgmt`);
    expect((error as Error).message).toMatch(/BAD_REQUEST code 5|BUNDLE_FAILED/);
    expect(await dump()).toEqual(before);
    expect((await ping(nsA, B.address, { count: 2 })).ok).toBe(true);
  });

  it('outside a bundle, the refused flow-mod is named by index and the others are applied', async () => {
    const error = await of
      .flowMods([
        flowModOf('add', 'cookie=0x6e6e0100000000d4,table=20,priority=1,actions=drop'),
        flowModOf('add', 'table=254,priority=1,actions=drop'),
      ])
      .catch((e: unknown) => e);
    expect((error as OpenFlowError).index).toBe(1);
    expect((error as Error).message).toMatch(/flow-mod 1: BAD_REQUEST code 5/);
    expect((await dump()).some((l) => l.includes('0x6e6e0100000000d4'))).toBe(true);
  });

  it('IPv6 matches (ipv6_src, icmp6 type and code, nd_target, udp6 tp_src) are taken and read back as ovs-ofctl prints them', async () => {
    const cookie = 0x6e6e0100000000e5n;
    const c = `cookie=${hex(cookie)},table=20`;
    const flows = [
      `${c},priority=300,icmp6,in_port=1,icmp_type=134,actions=drop`,
      `${c},priority=300,udp6,in_port=1,tp_src=547,actions=drop`,
      `${c},priority=250,icmp6,in_port=1,ipv6_src=fe80::ff:fe00:701,icmp_type=136,icmp_code=0,nd_target=fd19:0:0:7::1,actions=goto_table:30`,
      `${c},priority=230,icmp6,in_port=1,ipv6_src=::,icmp_type=135,icmp_code=0,nd_target=fe80::ff:fe00:701,actions=goto_table:30`,
      `${c},priority=200,ipv6,in_port=1,ipv6_src=fd19:0:0:7::1,actions=goto_table:30`,
    ];
    const ours = await addAndReadBack(cookie, flows);
    expect(ours).toEqual(asDumped(flows));
    await deleteAll(cookie);
  });

  it('IPv6 prefixes and the IPv6 tunnel fields (an overlay peer over either underlay) are taken and read back as ovs-ofctl prints them', async () => {
    const cookie = 0x6e6e0300000000e6n;
    const c = `cookie=${hex(cookie)}`;
    const flows = [
      `${c},table=0,priority=150,ipv6,tun_src=198.18.0.2,in_port=1,ipv6_src=fd19:0:0:2::/64,actions=goto_table:30`,
      `${c},table=0,priority=150,ipv6,tun_ipv6_src=2001:db8:18::2,in_port=1,ipv6_src=fd19:0:0:2::/64,actions=goto_table:30`,
      `${c},table=10,priority=110,ipv6,in_port=LOCAL,ipv6_dst=fd19:0:0:2::/64,actions=set_field:2001:db8:18::2->tun_ipv6_dst,output:1`,
      `${c},table=10,priority=100,ipv6,ipv6_dst=fd19:0:0:2::/64,actions=dec_ttl,set_field:198.18.0.2->tun_dst,output:1`,
      `${c},table=30,priority=100,ipv6,ipv6_dst=fd19:0:0:1::7,actions=set_field:02:00:00:00:00:01->eth_src,set_field:02:00:00:00:00:07->eth_dst,dec_ttl,output:1`,
    ];
    const ours = await addAndReadBack(cookie, flows);
    expect(ours).toHaveLength(5);
    expect(ours.join('\n')).toContain('tun_ipv6_src=2001:db8:18::2');
    expect(ours.join('\n')).toContain('set_field:2001:db8:18::2->tun_ipv6_dst');
    expect(ours.join('\n')).toContain('ipv6_dst=fd19:0:0:2::/64');
    await deleteAll(cookie);
  });

  it('packet-outs leave through the port their actions name (an ARP request B learns the sender from)', async () => {
    const sender = { mac: '020000000799', address: [198, 19, 7, 99] };
    const arpRequest = Buffer.concat([
      Buffer.from(`ffffffffffff${sender.mac}0806`, 'hex'),
      Buffer.from('0001080006040001', 'hex'),
      Buffer.from(sender.mac, 'hex'),
      Buffer.from(sender.address),
      Buffer.alloc(6),
      Buffer.from(B.address.split('.').map(Number)),
    ]).toString('hex');
    const neighbour = async () => (await exec('ip', ['-n', nsB, 'neigh', 'show', '198.19.7.99'])).stdout;
    expect(await neighbour()).toBe('');
    await of.packetOuts([packetOutOf(`in_port=LOCAL,packet=${arpRequest},actions=output:${B.ofport}`)]);
    expect(await neighbour()).toMatch(/lladdr 02:00:00:00:07:99/);
  });

  it('a refused packet-out is named by index, after the ones before it were sent', async () => {
    const frame = Buffer.from('ffffffffffff0200000000010800450000140000000040010000c6130701c6130702', 'hex');
    const error = await of
      .packetOuts([
        { inPort: PORT.LOCAL, actions: [{ type: 'output', port: A.ofport }], data: frame },
        { inPort: 0xffffff00, actions: [{ type: 'output', port: A.ofport }], data: frame },
      ])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenFlowError);
    expect((error as OpenFlowError).index).toBe(1);
    expect((error as Error).message).toMatch(/packet-out 1: BAD_REQUEST/);
  });

  it('after the switch restarts, the next call dials again and says so', async () => {
    let reconnected = 0;
    of.on('reconnected', () => reconnected++);
    await ovs.stopSwitch('exit');
    await ovs.startSwitch();
    // ovs-vswitchd recreates the management socket once it has set the bridge up again.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await of.echo();
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    expect(reconnected).toBe(1);
    // A restarted switch has no flows: the owner re-asserts them.
    await of.bundle(adds([...baseFlows, ...portFlows(A), ...portFlows(B)]));
    expect((await ping(nsA, B.address, { count: 2 })).ok).toBe(true);
  });
});
