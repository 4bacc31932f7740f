import { describe, expect, it } from 'vitest';
import { CNI_NAME, InternalError, macForAddress, parseIfName, parseIpv4Address, parseIpv6Address } from '@nodenet/core';
import {
  READ_COMMANDS,
  READ_OPERATIONS,
  addInstancePortCommands,
  cniBridgeCommands,
  cniSkeletonCommands,
  deletePortCommands,
  instanceInterfacesOf,
  ovsStateOfRows,
  parseOvsState,
  quoted,
  readdPortCommands,
  registeredPortsOf,
  tunnelPortOps,
  uplinkBridgeCommands,
  uplinkBridgeOf,
} from '../src/ovsdb.js';

const address = parseIpv4Address('198.19.1.7', 'a');
const instance = { handle: parseIfName('nni-0000abcd', 'h'), address, mac: macForAddress(address), kind: 'veth' as const };

/** An ovs-vsctl command line as the code builds it: each command preceded by `--`, in one process. */
const vsctl = (...commands: readonly string[][]): string[] => commands.flatMap((c) => ['--', ...c]);

describe('transactions', () => {
  it('quote every value as a JSON string, and refuse what could break out of it', () => {
    expect(quoted('nodenet:cni')).toBe('"nodenet:cni"');
    expect(() => quoted('a"b')).toThrow(InternalError);
    expect(() => quoted('a\\b')).toThrow(InternalError);
    expect(() => quoted('a\nb')).toThrow(InternalError);
  });

  it("the CNI bridge: created or converged in one transaction, secure, its MAC, the gateway port's MTU, tagged", () => {
    expect(cniBridgeCommands({ name: CNI_NAME, mac: '02:6e:c6:13:01:01', mtu: 1450 }, 'netdev')).toEqual(
      vsctl(
        ['--may-exist', 'add-br', 'nodenet0'],
        [
          'set',
          'Bridge',
          'nodenet0',
          'datapath_type=netdev',
          'fail_mode=secure',
          'other_config:hwaddr="02:6e:c6:13:01:01"',
          'other_config:disable-in-band="true"',
          'external_ids:nodenet-owner="nodenet:cni"',
        ],
        ['set', 'Interface', 'nodenet0', 'mtu_request=1450', 'external_ids:nodenet-owner="nodenet:cni"'],
      ),
    );
    expect(cniSkeletonCommands(CNI_NAME, 'system')).toEqual(
      vsctl(
        ['--may-exist', 'add-br', 'nodenet0'],
        ['set', 'Bridge', 'nodenet0', 'datapath_type=system', 'fail_mode=secure', 'external_ids:nodenet-owner="nodenet:cni"'],
      ),
    );
  });

  it('an instance port: added with its requested number, tagged with handle, address, MAC and kind, and registered on the bridge', () => {
    expect(addInstancePortCommands('nodenet0', parseIfName('nnh-0000abcd', 'p'), instance, 7)).toEqual(
      vsctl(
        ['add-port', 'nodenet0', 'nnh-0000abcd'],
        [
          'set',
          'Interface',
          'nnh-0000abcd',
          'ofport_request=7',
          'external_ids:nodenet-owner="nodenet:nni-0000abcd"',
          'external_ids:nodenet-handle="nni-0000abcd"',
          'external_ids:nodenet-address="198.19.1.7"',
          'external_ids:nodenet-mac="02:6e:c6:13:01:07"',
          'external_ids:nodenet-kind="veth"',
        ],
        ['remove', 'Bridge', 'nodenet0', 'external_ids', 'nodenet-port-nnh-0000abcd'],
        ['add', 'Bridge', 'nodenet0', 'external_ids', 'nodenet-port-nnh-0000abcd="nni-0000abcd 198.19.1.7 02:6e:c6:13:01:07 veth"'],
      ),
    );
    expect(addInstancePortCommands('nodenet0', parseIfName('nnh-0000abcd', 'p'), instance, undefined)).not.toContain('ofport_request=7');
  });

  it('a dual-stack port carries its IPv6 address as a tag of its own and as the fifth field of its registry entry', () => {
    const dual = { ...instance, ipv6Address: parseIpv6Address('fd19:0:0:1::7', 'a') };
    const commands = addInstancePortCommands('nodenet0', parseIfName('nnh-0000abcd', 'p'), dual, 7);
    expect(commands).toContain('external_ids:nodenet-address="198.19.1.7"');
    expect(commands).toContain('external_ids:nodenet-ipv6-address="fd19:0:0:1::7"');
    expect(commands).toContain('nodenet-port-nnh-0000abcd="nni-0000abcd 198.19.1.7 02:6e:c6:13:01:07 veth fd19:0:0:1::7"');
    expect(addInstancePortCommands('nodenet0', parseIfName('nnh-0000abcd', 'p'), instance, 7).join(' ')).not.toContain('ipv6');
  });

  it('deleting ports (absent is fine) drops their registry entries too', () => {
    expect(deletePortCommands('nodenet0', ['nnh-1', 'nnh-2'])).toEqual(
      vsctl(
        ['--if-exists', 'del-port', 'nnh-1'],
        ['--if-exists', 'del-port', 'nnh-2'],
        ['remove', 'Bridge', 'nodenet0', 'external_ids', 'nodenet-port-nnh-1'],
        ['remove', 'Bridge', 'nodenet0', 'external_ids', 'nodenet-port-nnh-2'],
      ),
    );
  });

  it('the tunnel: one flow-based VXLAN port with the VNI as key, its UDP port and a fixed number, added to the bridge', () => {
    const iface = {
      type: 'vxlan',
      options: [
        'map',
        [
          ['remote_ip', 'flow'],
          ['key', '4242'],
          ['dst_port', '4789'],
        ],
      ],
      ofport_request: 65000,
    };
    expect(tunnelPortOps('nodenet0', { vni: 4242, port: 4789 }, false)).toEqual([
      {
        op: 'wait',
        table: 'Bridge',
        where: [['name', '==', 'nodenet0']],
        columns: ['name'],
        until: '==',
        rows: [{ name: 'nodenet0' }],
        timeout: 0,
      },
      {
        op: 'insert',
        table: 'Interface',
        row: { name: 'nodenet-tun', ...iface, external_ids: ['map', [['nodenet-owner', 'nodenet:overlay']]] },
        'uuid-name': 'tun_iface',
      },
      { op: 'insert', table: 'Port', row: { name: 'nodenet-tun', interfaces: ['named-uuid', 'tun_iface'] }, 'uuid-name': 'tun_port' },
      {
        op: 'mutate',
        table: 'Bridge',
        where: [['name', '==', 'nodenet0']],
        mutations: [['ports', 'insert', ['set', [['named-uuid', 'tun_port']]]]],
      },
    ]);
  });

  it('the tunnel already on the bridge: its columns converged in place, other external_ids kept', () => {
    expect(tunnelPortOps('nodenet0', { vni: 7, port: 8472 }, true)).toEqual([
      {
        op: 'update',
        table: 'Interface',
        where: [['name', '==', 'nodenet-tun']],
        row: {
          type: 'vxlan',
          options: [
            'map',
            [
              ['remote_ip', 'flow'],
              ['key', '7'],
              ['dst_port', '8472'],
            ],
          ],
          ofport_request: 65000,
        },
      },
      {
        op: 'mutate',
        table: 'Interface',
        where: [['name', '==', 'nodenet-tun']],
        mutations: [
          ['external_ids', 'delete', ['set', ['nodenet-owner']]],
          ['external_ids', 'insert', ['map', [['nodenet-owner', 'nodenet:overlay']]]],
        ],
      },
    ]);
  });

  it("the netdev uplink: its own bridge with the underlay interface as port, that interface's MAC and MTU", () => {
    expect(uplinkBridgeCommands(parseIfName('eth0', 'u'), '7e:fc:69:59:79:49', 1500)).toEqual(
      vsctl(
        ['--may-exist', 'add-br', 'nodenet-phy'],
        [
          'set',
          'Bridge',
          'nodenet-phy',
          'datapath_type=netdev',
          'fail_mode=standalone',
          'other_config:hwaddr="7e:fc:69:59:79:49"',
          'external_ids:nodenet-owner="nodenet:uplink"',
        ],
        ['set', 'Interface', 'nodenet-phy', 'mtu_request=1500', 'external_ids:nodenet-owner="nodenet:uplink"'],
        ['--may-exist', 'add-port', 'nodenet-phy', 'eth0'],
        ['set', 'Interface', 'eth0', 'external_ids:nodenet-uplink-of="nodenet-phy"'],
      ),
    );
  });
});

// What `ovs-vsctl --format=json` prints for READ_COMMANDS (shortened from a real private OVS).
const listing = [
  JSON.stringify({
    headings: ['_uuid', 'name', 'datapath_type', 'fail_mode', 'external_ids', 'other_config', 'ports'],
    data: [
      [
        ['uuid', 'b1'],
        'nodenet0',
        'netdev',
        'secure',
        [
          'map',
          [
            ['nodenet-owner', 'nodenet:cni'],
            ['nodenet-port-nnh-0000abcd', 'nni-0000abcd 198.19.1.7 02:6e:c6:13:01:07 veth'],
            ['nodenet-port-nnh-0000abce', 'nni-0000abce 198.19.1.8 02:6e:c6:13:01:08 veth fd19:0:0:1::8'],
            ['nodenet-port-bad', 'x'],
            ['nodenet-port-bad6', 'nni-0000abcf 198.19.1.9 02:6e:c6:13:01:09 veth fd19:0:0:1::9 extra'],
          ],
        ],
        ['map', [['hwaddr', '02:6e:c6:13:01:01']]],
        [
          'set',
          [
            ['uuid', 'p1'],
            ['uuid', 'p2'],
            ['uuid', 'p3'],
          ],
        ],
      ],
      [['uuid', 'b2'], 'nodenet-phy', 'netdev', ['set', []], ['map', [['nodenet-owner', 'nodenet:uplink']]], ['map', []], ['uuid', 'p4']],
    ],
  }),
  JSON.stringify({
    headings: ['_uuid', 'name', 'interfaces'],
    data: [
      [['uuid', 'p1'], 'nodenet0', ['uuid', 'i1']],
      [['uuid', 'p2'], 'nnh-0000abcd', ['uuid', 'i2']],
      [['uuid', 'p3'], 'nodenet-tun', ['uuid', 'i3']],
      [['uuid', 'p4'], 'eth0', ['uuid', 'i4']],
    ],
  }),
  JSON.stringify({
    headings: ['_uuid', 'name', 'type', 'ofport', 'ofport_request', 'mtu_request', 'external_ids', 'options', 'error'],
    data: [
      [
        ['uuid', 'i1'],
        'nodenet0',
        'internal',
        65534,
        ['set', []],
        1450,
        ['map', [['nodenet-owner', 'nodenet:cni']]],
        ['map', []],
        ['set', []],
      ],
      [
        ['uuid', 'i2'],
        'nnh-0000abcd',
        '',
        -1,
        7,
        ['set', []],
        [
          'map',
          [
            ['nodenet-owner', 'nodenet:nni-0000abcd'],
            ['nodenet-handle', 'nni-0000abcd'],
          ],
        ],
        ['map', []],
        'could not open network device nnh-0000abcd (No such device)',
      ],
      [
        ['uuid', 'i3'],
        'nodenet-tun',
        'vxlan',
        65000,
        65000,
        ['set', []],
        ['map', [['nodenet-owner', 'nodenet:overlay']]],
        [
          'map',
          [
            ['key', '4242'],
            ['remote_ip', 'flow'],
          ],
        ],
        ['set', []],
      ],
      [['uuid', 'i4'], 'eth0', '', 1, ['set', []], ['set', []], ['map', [['nodenet-uplink-of', 'nodenet-phy']]], ['map', []], ['set', []]],
    ],
  }),
].join('\n');

describe('the OVSDB read', () => {
  it('is one ovs-vsctl process listing Bridge, Port and Interface', () => {
    expect(READ_COMMANDS.filter((a) => a === 'list')).toHaveLength(3);
  });

  it('parses bridges with their interfaces, and interfaces with numbers, tags, options, errors and bridge', () => {
    const state = parseOvsState(`${listing}\n`);
    expect(state.bridges.get('nodenet0')).toMatchObject({
      datapathType: 'netdev',
      failMode: 'secure',
      interfaces: ['nnh-0000abcd', 'nodenet-tun', 'nodenet0'],
      otherConfig: { hwaddr: '02:6e:c6:13:01:01' },
    });
    expect(state.bridges.get('nodenet-phy')).toMatchObject({ failMode: null, interfaces: ['eth0'] });
    expect(state.interfaces.get('nnh-0000abcd')).toEqual({
      name: 'nnh-0000abcd',
      type: '',
      ofport: -1,
      ofportRequest: 7,
      mtuRequest: null,
      externalIds: { 'nodenet-owner': 'nodenet:nni-0000abcd', 'nodenet-handle': 'nni-0000abcd' },
      options: {},
      error: 'could not open network device nnh-0000abcd (No such device)',
      bridge: 'nodenet0',
    });
    expect(state.interfaces.get('nodenet-tun')).toMatchObject({ options: { key: '4242', remote_ip: 'flow' }, bridge: 'nodenet0' });
    expect(instanceInterfacesOf(state, 'nodenet0').map((i) => i.name)).toEqual(['nnh-0000abcd']);
    expect(uplinkBridgeOf(state)?.name).toBe('nodenet-phy');
    expect(registeredPortsOf(state.bridges.get('nodenet0')!)).toEqual([
      { name: 'nnh-0000abcd', handle: 'nni-0000abcd', address: '198.19.1.7', mac: '02:6e:c6:13:01:07', kind: 'veth' },
      {
        name: 'nnh-0000abce',
        handle: 'nni-0000abce',
        address: '198.19.1.8',
        mac: '02:6e:c6:13:01:08',
        kind: 'veth',
        ipv6Address: 'fd19:0:0:1::8',
      },
    ]);
  });

  it('the same state from the rows the session selects (READ_OPERATIONS: the columns READ_COMMANDS lists)', () => {
    const tables = listing.split('\n').map((l) => JSON.parse(l) as { headings: string[]; data: unknown[][] });
    const rows = tables.map((t) => t.data.map((values) => Object.fromEntries(t.headings.map((h, i) => [h, values[i]]))));
    expect(ovsStateOfRows(rows[0]!, rows[1]!, rows[2]!)).toEqual(parseOvsState(listing));
    const listed = READ_COMMANDS.filter((a) => a.startsWith('--columns=')).map((a) => a.slice('--columns='.length).split(','));
    const columnsOf = (i: number): string[] => listed[i]!;
    const selected = READ_OPERATIONS.map((op) => {
      const select = op as { table: string; columns?: string[] };
      return [select.table, select.columns];
    });
    expect(selected).toEqual([
      ['Bridge', columnsOf(0)],
      ['Port', columnsOf(1)],
      ['Interface', columnsOf(2)],
    ]);
  });

  it('re-adds ports as OVSDB held them (type, options, number, MTU, tags)', () => {
    const state = parseOvsState(listing);
    expect(readdPortCommands('nodenet0', [state.interfaces.get('nodenet-tun')!])).toEqual(
      vsctl(
        ['--may-exist', 'add-port', 'nodenet0', 'nodenet-tun'],
        [
          'set',
          'Interface',
          'nodenet-tun',
          'type=vxlan',
          'options:key="4242"',
          'options:remote_ip="flow"',
          'ofport_request=65000',
          'external_ids:nodenet-owner="nodenet:overlay"',
        ],
      ),
    );
  });

  it('refuses output that is not the three tables', () => {
    expect(() => parseOvsState('{"headings":[],"data":[]}')).toThrow(/expected 3 tables/);
    expect(() => parseOvsState('not json\n{}\n{}')).toThrow(/invalid JSON/);
  });
});
