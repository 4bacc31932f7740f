/**
 * What the long-lived OpenFlow connection is given: every flow-mod script the pipeline writes (flows.ts)
 * becomes flow-mods that print back, in ovs-ofctl's form, as the flows written; and the OVSDB operations
 * of the port hot path carry what the ovs-vsctl commands did.
 */
import { describe, expect, it } from 'vitest';
import { Subnet, macForAddress, parseIpv4Address, parseIpv6Address, type IfName } from '@nodenet/core';
import { decodeMatch, encodeMatch, formatFlowStats } from '@nodenet/openvswitch';
import { addFlowsScript, baseFlows, deleteCookiesScript, instanceCookie, instanceFlows, peerFlows } from '../src/flows.js';
import { addInstancePortOps, deletePortOps } from '../src/ovsdb.js';
import { OvsSession, scriptFlowMods } from '../src/ovs-session.js';

const ip = (s: string) => parseIpv4Address(s, 'test');
const gateway = ip('198.19.1.1');
const gatewayMac = macForAddress(gateway);

describe('flow-mod scripts over the OpenFlow connection', () => {
  it('every flow of the pipeline parses and prints back as ovs-ofctl prints it', () => {
    const flows = [
      ...baseFlows({ gateway, gatewayMac }),
      ...instanceFlows({ handle: 'nni-0000001a', ofport: 26, ipv4: ip('198.19.1.26'), mac: '02:00:c6:13:01:1a' }, gatewayMac),
      // Dual-stack: the IPv6 flows (ipv6_src, icmp6 types, nd_target, udp6 tp_src) parse and print back the same.
      ...instanceFlows(
        {
          handle: 'nni-0000001b',
          ofport: 27,
          ipv4: ip('198.19.1.27'),
          ipv6: parseIpv6Address('fd19:0:0:1::1b', 'test'),
          mac: '02:00:c6:13:01:1b',
        },
        gatewayMac,
      ),
      ...peerFlows({ underlayAddress: ip('198.18.0.2'), subnet: Subnet.parse('198.19.2.0/24', 'test') }, 1),
    ];
    const mods = scriptFlowMods(addFlowsScript(flows));
    expect(mods.map((m) => m.command)).toEqual(flows.map(() => 'add'));
    const printed = mods.map((m) =>
      formatFlowStats({
        cookie: m.cookie ?? 0n,
        table: m.table ?? 0,
        priority: m.priority ?? 0,
        match: m.match ?? {},
        instructions: m.instructions ?? {},
      }),
    );
    // ovs-ofctl prints output to a reserved port bare (LOCAL), flows.ts writes output:LOCAL: the same action.
    const written = flows.map((f) =>
      `cookie=0x${f.cookie.toString(16)}, ${f.table ? `table=${f.table}, ` : ''}priority=${f.priority}${f.match ? `,${f.match}` : ''} actions=${f.actions}`.replace(
        'output:LOCAL',
        'LOCAL',
      ),
    );
    expect(printed).toEqual(written);
    // And every match encodes (its OpenFlow prerequisites are there) and decodes back to itself.
    for (const m of mods) expect(decodeMatch(encodeMatch(m.match ?? {}), 0).match).toEqual(m.match ?? {});
  });

  it('a delete by cookie covers every table and only that cookie', () => {
    const [mod] = scriptFlowMods(deleteCookiesScript([instanceCookie('nni-0000001a')]));
    expect(mod).toMatchObject({ command: 'delete', table: 0xff, cookie: instanceCookie('nni-0000001a'), cookieMask: 0xffffffffffffffffn });
  });

  it('refuses a line that is no flow-mod', () => {
    expect(() => scriptFlowMods('frobnicate table=0\n')).toThrow(/not a flow-mod line/);
  });
});

describe('OVSDB operations of the port hot path', () => {
  const spec = { handle: 'nni-0000001a' as IfName, address: ip('198.19.1.26'), mac: '02:00:c6:13:01:1a', kind: 'veth' as const };

  it('adding a port: the bridge must exist, the rows are inserted and linked, the registry entry replaced', () => {
    const ops = addInstancePortOps('nodenet0', 'nnh-0000001a' as IfName, spec, 26);
    expect(ops.map((o) => o.op)).toEqual(['wait', 'insert', 'insert', 'mutate']);
    expect(ops[1]).toMatchObject({ table: 'Interface', row: { name: 'nnh-0000001a', ofport_request: 26 } });
    expect(JSON.stringify(ops[3])).toContain('"nodenet-port-nnh-0000001a","nni-0000001a 198.19.1.26 02:00:c6:13:01:1a veth"');
  });

  it('deleting ports: out of every bridge by UUID, registry entries off the CNI bridge', () => {
    const ops = deletePortOps('nodenet0', ['nnh-0000001a'], ['0b1c0d2e-0000-4000-8000-000000000001']);
    expect(ops).toEqual([
      {
        op: 'mutate',
        table: 'Bridge',
        where: [],
        mutations: [['ports', 'delete', ['set', [['uuid', '0b1c0d2e-0000-4000-8000-000000000001']]]]],
      },
      {
        op: 'mutate',
        table: 'Bridge',
        where: [['name', '==', 'nodenet0']],
        mutations: [['external_ids', 'delete', ['set', ['nodenet-port-nnh-0000001a']]]],
      },
    ]);
  });
});

describe('one session per Open vSwitch in the process', () => {
  const options = { db: 'unix:/nonexistent/db.sock', runDir: '/nonexistent', timeoutSeconds: 1 };
  const closedMessage = /the OVS session was closed/;

  it('runners of the same switch share it; another switch has its own', () => {
    const a = OvsSession.shared(options);
    const b = OvsSession.shared({ ...options });
    const other = OvsSession.shared({ ...options, runDir: '/elsewhere' });
    expect(b).toBe(a);
    expect(other).not.toBe(a);
    a.release();
    b.release();
    other.release();
  });

  it('stays open until its last user releases it; the next user gets a fresh one', async () => {
    const a = OvsSession.shared(options);
    const b = OvsSession.shared(options);
    a.release();
    // Still open: the call gets as far as dialling (nothing listens there), not "closed".
    await expect(b.interfaceColumn('x', 'ofport', 'read')).rejects.not.toThrow(closedMessage);
    b.release();
    await expect(b.interfaceColumn('x', 'ofport', 'read')).rejects.toThrow(closedMessage);
    const c = OvsSession.shared(options);
    expect(c).not.toBe(a);
    c.release();
  });
});
