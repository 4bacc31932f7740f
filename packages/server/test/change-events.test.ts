// The lines below are real monitor output, captured in a test namespace (ip 6.1, nft 1.0.6, OVS 3.1).
import { describe, expect, it } from 'vitest';
import {
  classifyFdbMonitorLine,
  classifyFlowCounts,
  classifyFlowFingerprints,
  classifyIpMonitorLine,
  classifyNftMonitorLine,
  classifyOvsdbRowChange,
  scopeOfChange,
  widenScope,
} from '../src/change-events.js';
import { monitorSpecs } from '../src/change-watcher.js';
import { changeSources } from '../src/ovs-change-sources.js';

describe('classifyIpMonitorLine', () => {
  it.each([
    [
      'Deleted 4: nnh-1a2b3c4d@if3: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 master nodenet0 state DOWN \\    link/ether ae:1e:8d:49:b2:8f',
      'link nnh-1a2b3c4d deleted',
    ],
    [
      'Deleted 2: nodenet0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether 00:00:00:00:00:00 brd ff:ff:ff:ff:ff:ff',
      'link nodenet0 deleted',
    ],
    [
      '2: nodenet0: <BROADCAST,MULTICAST> mtu 1500 qdisc noqueue state DOWN group default \\    link/ether 0a:3c:21:fe:d6:5f brd ff:ff:ff:ff:ff:ff',
      'link nodenet0 down',
    ],
    [
      'Deleted 2: nodenet0    inet 198.19.1.1/24 scope global nodenet0\\       valid_lft forever preferred_lft forever',
      'address 198.19.1.1/24 deleted from nodenet0',
    ],
    [
      'Deleted 2: nodenet0    inet6 fd19:0:0:1::1/64 scope global nodad \\       valid_lft forever preferred_lft forever',
      'address fd19:0:0:1::1/64 deleted from nodenet0',
    ],
    ['Deleted 198.19.5.0/24 via 198.19.5.0 dev nodenet-vx proto 78 onlink ', 'overlay route 198.19.5.0/24 deleted'],
    ['Deleted 198.19.5.0 dev nodenet-vx lladdr 02:00:00:00:00:01 PERMANENT ', 'neighbour 198.19.5.0 on nodenet-vx deleted'],
    [
      'Deleted 5: nodenet-vx: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN group default',
      'link nodenet-vx deleted',
    ],
    // A host link came up (IPv4 dropped the routes through it silently when it went down): host-gw routes may return.
    [
      '198.18.0.0/24 dev eth0 proto kernel scope link src 198.18.0.1 ',
      'connected route 198.18.0.0/24 on eth0 appeared (the link came up or got its address back)',
    ],
    [
      '2001:db8:18::/64 dev eth0 proto kernel metric 256 pref medium',
      'connected route 2001:db8:18::/64 on eth0 appeared (the link came up or got its address back)',
    ],
  ])('%s -> %s', (line, cause) => {
    expect(classifyIpMonitorLine(line)).toBe(cause);
  });

  it.each([
    // nodenet's own creates: additions and changes of instance links are not looked at
    '4: nnh-1a2b3c4d@nni-1a2b3c4d: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noop master nodenet0 state DOWN group default',
    '3: nni-1a2b3c4d@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default',
    '2: nodenet0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default',
    '198.19.5.0/24 via 198.19.5.0 dev nodenet-vx proto 78 onlink ',
    // what nodenet does not own
    'Deleted 7: eth1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN',
    'Deleted 7: nnh-nothex0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN',
    'Deleted 10.0.0.0/8 dev eth0 proto kernel scope link src 10.0.0.1',
    'Deleted 10.0.0.5 dev eth0 lladdr 02:00:00:00:00:09 STALE',
    'Deleted fe80::/64 dev nodenet0 proto kernel metric 256 linkdown pref medium',
    // connected routes nodenet's own links get (its creates), link-local ones, the local table's
    '198.19.1.0/24 dev nodenet0 proto kernel scope link src 198.19.1.1 ',
    '198.18.0.0/24 dev nodenet-phy proto kernel scope link src 198.18.0.1 ',
    'fe80::/64 dev eth0 proto kernel metric 256 pref medium',
    'broadcast 198.18.0.255 dev eth0 table local proto kernel scope link src 198.18.0.1 ',
    'local 198.18.0.1 dev eth0 table local proto kernel scope host src 198.18.0.1 ',
    '10.0.0.0/8 via 198.18.0.254 dev eth0 proto static',
  ])('ignores %s', (line) => {
    expect(classifyIpMonitorLine(line)).toBeNull();
  });
});

describe('classifyFdbMonitorLine', () => {
  it('a deleted FDB entry of the VXLAN device', () => {
    expect(classifyFdbMonitorLine('Deleted 00:00:00:00:00:00 dev nodenet-vx dst 198.18.0.5 self permanent')).toBe(
      'fdb entry 00:00:00:00:00:00 to 198.18.0.5 on nodenet-vx deleted',
    );
    expect(classifyFdbMonitorLine('00:00:00:00:00:00 dev nodenet-vx dst 198.18.0.5 self permanent')).toBeNull();
    expect(classifyFdbMonitorLine('Deleted 0a:3c:21:fe:d6:5f dev nodenet0 master nodenet0 permanent')).toBeNull();
  });
});

describe('classifyNftMonitorLine', () => {
  it("deletions in nodenet's tables, nothing else", () => {
    expect(classifyNftMonitorLine('{"delete": {"table": {"family": "ip", "name": "nodenet", "handle": 1}}}')).toBe(
      'table ip nodenet deleted',
    );
    expect(
      classifyNftMonitorLine(
        '{"delete": {"element": {"family": "bridge", "table": "nodenet", "name": "allowed_sources", "elem": {"set": ["x"]}}}}',
      ),
    ).toBe('element of table bridge nodenet deleted (from allowed_sources)');
    expect(classifyNftMonitorLine('{"delete": {"chain": {"family": "ip", "table": "nodenet", "name": "prerouting", "handle": 1}}}')).toBe(
      'chain prerouting of table ip nodenet deleted',
    );
    expect(classifyNftMonitorLine('{"delete": {"table": {"family": "inet", "name": "foo", "handle": 2}}}')).toBeNull();
    expect(classifyNftMonitorLine('{"add": {"table": {"family": "ip", "name": "nodenet", "handle": 1}}}')).toBeNull();
    expect(classifyNftMonitorLine('not json')).toBeNull();
  });
});

describe('classifyOvsdbRowChange', () => {
  const map = (pairs: [string, string][]) => ['map', pairs];
  it('a deleted row of nodenet', () => {
    expect(classifyOvsdbRowChange('Interface', undefined, { name: 'nnh-1a2b3c4d', ofport: 1, external_ids: map([]) })).toEqual([
      'Interface nnh-1a2b3c4d deleted from OVSDB',
    ]);
    expect(classifyOvsdbRowChange('Interface', undefined, { name: 'eth9', ofport: 1, external_ids: map([]) })).toEqual([]);
  });

  it('inserts are not changes to repair', () => {
    expect(classifyOvsdbRowChange('Interface', { name: 'nnh-1a2b3c4d', ofport: ['set', []], external_ids: map([]) }, undefined)).toEqual(
      [],
    );
  });

  it('external_ids keys removed or changed count; keys added (a create) and a first ofport do not', () => {
    const owner: [string, string] = ['nodenet-owner', 'nodenet:cni'];
    expect(
      classifyOvsdbRowChange(
        'Bridge',
        { name: 'nodenet0', external_ids: map([owner]) },
        { name: 'nodenet0', external_ids: map([owner, ['nodenet-port-nnh-1', 'x']]) },
      ),
    ).toEqual(['Bridge nodenet0: external_ids nodenet-port-nnh-1 removed or changed']);
    expect(
      classifyOvsdbRowChange(
        'Bridge',
        { name: 'nodenet0', external_ids: map([['foo', '1'], owner]) },
        { name: 'nodenet0', external_ids: map([owner]) },
      ),
    ).toEqual([]);
    const port = { name: 'nnh-1a2b3c4d', external_ids: map([]) };
    expect(classifyOvsdbRowChange('Interface', { ...port, ofport: 1 }, { ...port, ofport: ['set', []] })).toEqual([]);
    expect(classifyOvsdbRowChange('Interface', { ...port, ofport: -1 }, { ...port, ofport: 7 })).toEqual([
      'Interface nnh-1a2b3c4d: ofport 7 -> -1',
    ]);
    expect(classifyOvsdbRowChange('Interface', { ...port, ofport: 7 }, { ...port, ofport: 7 })).toEqual([]);
  });

  it("a bridge's datapath_id given anew counts; its first one does not", () => {
    const bridge = { name: 'nodenet0', external_ids: map([]) };
    expect(classifyOvsdbRowChange('Bridge', { ...bridge, datapath_id: '00001a' }, { ...bridge, datapath_id: ['set', []] })).toEqual([]);
    expect(classifyOvsdbRowChange('Bridge', { ...bridge, datapath_id: '00001b' }, { ...bridge, datapath_id: '00001a' })).toEqual([
      'Bridge nodenet0: datapath_id changed',
    ]);
  });
});

describe('classifyFlowCounts', () => {
  it('fewer flows of a class than before: deleted; as many or more: nothing', () => {
    const before = { base: 6, instance: 8, peer: 3 };
    expect(classifyFlowCounts('nodenet0', before, { base: 6, instance: 6, peer: 3 })).toEqual(['2 instance flows on nodenet0 deleted']);
    expect(classifyFlowCounts('nodenet0', before, { base: 6, instance: 8, peer: 2 })).toEqual(['1 peer flow on nodenet0 deleted']);
    expect(classifyFlowCounts('nodenet0', before, { base: 6, instance: 10, peer: 3 })).toEqual([]);
    expect(classifyFlowCounts('nodenet0', before, { base: 0, instance: 0, peer: 0 })).toEqual([
      '6 base flows on nodenet0 deleted',
      '8 instance flows on nodenet0 deleted',
      '3 peer flows on nodenet0 deleted',
    ]);
  });
});

describe('classifyFlowFingerprints', () => {
  const before = new Map([
    ['r1', 'goto_table:10'],
    ['r2', 'goto_table:10'],
    ['r3', 'output:3'],
  ]);
  it('a rule whose content changed: changed in place', () => {
    const after = new Map([...before, ['r3', 'drop']]);
    expect(classifyFlowFingerprints('nodenet0', 'instance', before, after)).toEqual(['1 instance flow on nodenet0 changed in place']);
    const all = new Map([...before].map(([r]) => [r, 'drop']));
    expect(classifyFlowFingerprints('nodenet0', 'peer', before, all)).toEqual(['3 peer flows on nodenet0 changed in place']);
  });
  it('a rule replaced by another (as many flows, one match changed): changed in place', () => {
    const after = new Map([
      ['r1', 'goto_table:10'],
      ['r2', 'goto_table:10'],
      ['r4', 'output:3'],
    ]);
    expect(classifyFlowFingerprints('nodenet0', 'base', before, after)).toEqual(['1 base flow on nodenet0 changed in place']);
  });
  it('the same, rules added, or rules deleted only (the counts report those): nothing', () => {
    expect(classifyFlowFingerprints('nodenet0', 'instance', before, new Map(before))).toEqual([]);
    expect(classifyFlowFingerprints('nodenet0', 'instance', before, new Map([...before, ['r9', 'drop']]))).toEqual([]);
    expect(classifyFlowFingerprints('nodenet0', 'instance', before, new Map([['r1', 'goto_table:10']]))).toEqual([]);
    expect(classifyFlowFingerprints('nodenet0', 'instance', before, new Map())).toEqual([]);
  });
});

describe('scopeOfChange', () => {
  it.each([
    ['link nnh-1a2b3c4d deleted', 'node'],
    ['address 198.19.1.5/32 deleted from nni-1a2b3c4d', 'node'],
    ['rule of table ip nodenet deleted', 'node'],
    ['table bridge nodenet deleted', 'node'],
    ['element of table inet nodenet deleted (from ports)', 'node'],
    ['Interface nnh-1a2b3c4d deleted from OVSDB', 'node'],
    ['Interface nnh-1a2b3c4d: ofport 7 -> -1', 'node'],
    ['2 instance flows on nodenet0 deleted', 'node'],
    ['link nodenet-vx deleted', 'overlay'],
    ['address 198.19.1.0/32 deleted from nodenet-vx', 'overlay'],
    ['link nodenet-phy down', 'overlay'],
    ['overlay route 198.19.5.0/24 deleted', 'overlay'],
    ['neighbour 198.19.5.0 on nodenet-vx deleted', 'overlay'],
    ['fdb entry 02:00:00:00:00:01 to 198.18.0.2 on nodenet-vx deleted', 'overlay'],
    ['table netdev nodenet deleted', 'overlay'],
    ['Interface nodenet-tun deleted from OVSDB', 'overlay'],
    ['1 peer flow on nodenet0 deleted', 'overlay'],
    ['2 peer flows on nodenet0 changed in place', 'overlay'],
    ['1 instance flow on nodenet0 changed in place', 'node'],
    ['3 base flows on nodenet0 changed in place', 'all'],
    ['link nodenet0 deleted', 'all'],
    ['link nodenet0b1 down', 'all'],
    ['address 198.19.1.1/24 deleted from nodenet0', 'all'],
    ['Bridge nodenet0 deleted from OVSDB', 'all'],
    ['6 base flows on nodenet0 deleted', 'all'],
    ['flow table of nodenet0 reconnected', 'all'],
    ['ip monitor restarted', 'all'],
  ])('%s -> %s', (change, scope) => {
    expect(scopeOfChange(change)).toBe(scope);
  });

  it('a pass serves the union: one scope stays, two make all', () => {
    expect(widenScope(null, 'node')).toBe('node');
    expect(widenScope('node', 'node')).toBe('node');
    expect(widenScope('node', 'overlay')).toBe('all');
    expect(widenScope('overlay', 'all')).toBe('all');
    expect(widenScope('all', 'node')).toBe('all');
  });
});

describe('monitorSpecs', () => {
  it('iproute2 with vxlan: ip, nft and bridge fdb monitors; no OVS', () => {
    expect(monitorSpecs({ backend: 'iproute2', overlay: { mode: 'vxlan', vni: 1, port: 4789 } }).map((s) => s.file)).toEqual([
      'ip',
      'nft',
      'bridge',
    ]);
  });
  it('ovs: the kernel monitors only (OVS is followed in-process)', () => {
    const specs = monitorSpecs({ backend: 'ovs', overlay: { mode: 'vxlan', vni: 1, port: 4789 } });
    expect(specs.map((s) => [s.file, ...s.args])).toEqual([
      ['ip', '-o', 'monitor', 'link', 'address', 'route', 'neigh'],
      ['nft', '-j', 'monitor', 'destroy'],
    ]);
  });
});

describe('changeSources', () => {
  const ovs = { db: 'unix:/run/ovs/db.sock', runDir: '/run/ovs', datapathType: 'netdev' as const };
  it('ovs: the OVSDB monitor and the flow table of nodenet0; iproute2: none', () => {
    expect(changeSources({ backend: 'ovs', ovs }).map((s) => s.name)).toEqual([
      'OVSDB monitor of Bridge, Interface',
      'flow table of nodenet0',
    ]);
    expect(changeSources({ backend: 'iproute2', ovs })).toEqual([]);
  });
});
