// The lines below are real monitor output, captured in a test namespace (ip 6.1, nft 1.0.6, OVS 3.1).
import { describe, expect, it } from 'vitest';
import {
  classifyFdbMonitorLine,
  classifyFlowMonitorLine,
  classifyIpMonitorLine,
  classifyNftMonitorLine,
  classifyOvsdbUpdate,
} from '../src/change-events.js';
import { monitorSpecs } from '../src/change-watcher.js';

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

describe('classifyOvsdbUpdate', () => {
  const headings = '"headings":["row","action","name","ofport","external_ids"]';
  it('a deleted row of nodenet', () => {
    expect(classifyOvsdbUpdate('Interface', `{"data":[["2c30","delete","nnh-1a2b3c4d",1,["map",[]]]],${headings}}`)).toEqual([
      'Interface nnh-1a2b3c4d deleted from OVSDB',
    ]);
    expect(classifyOvsdbUpdate('Interface', `{"data":[["2c30","delete","eth9",1,["map",[]]]],${headings}}`)).toEqual([]);
  });

  it('initial rows and inserts are not changes to repair', () => {
    expect(classifyOvsdbUpdate('Interface', `{"data":[["fbe0","initial","nodenet0",65534,["map",[]]]],${headings}}`)).toEqual([]);
    expect(classifyOvsdbUpdate('Interface', `{"data":[["2c30","insert","nnh-1a2b3c4d",["set",[]],["map",[]]]],${headings}}`)).toEqual([]);
  });

  it('external_ids keys removed or changed count; keys added (a create) and a first ofport do not', () => {
    const bridge = '"headings":["row","action","name","external_ids"]';
    expect(
      classifyOvsdbUpdate(
        'Bridge',
        `{"data":[["943b","old",null,["map",[["nodenet-owner","nodenet:cni"],["nodenet-port-nnh-1","x"]]]],["","new","nodenet0",["map",[["nodenet-owner","nodenet:cni"]]]]],${bridge}}`,
      ),
    ).toEqual(['Bridge nodenet0: external_ids nodenet-port-nnh-1 removed or changed']);
    expect(
      classifyOvsdbUpdate(
        'Bridge',
        `{"data":[["943b","old",null,["map",[["nodenet-owner","nodenet:cni"]]]],["","new","nodenet0",["map",[["foo","1"],["nodenet-owner","nodenet:cni"]]]]],${bridge}}`,
      ),
    ).toEqual([]);
    expect(
      classifyOvsdbUpdate('Interface', `{"data":[["2c30","old",null,["set",[]],null],["","new","nnh-1a2b3c4d",1,["map",[]]]],${headings}}`),
    ).toEqual([]);
    expect(
      classifyOvsdbUpdate('Interface', `{"data":[["2c30","old",null,7,null],["","new","nnh-1a2b3c4d",-1,["map",[]]]],${headings}}`),
    ).toEqual(['Interface nnh-1a2b3c4d: ofport 7 -> -1']);
  });
});

describe('classifyFlowMonitorLine', () => {
  it("a deleted or modified flow of nodenet's cookies", () => {
    expect(
      classifyFlowMonitorLine('nodenet0', ' event=DELETED reason=delete table=0 cookie=0x6e6e010000001a2b priority=100,in_port=5'),
    ).toBe('flow 0x6e6e010000001a2b on nodenet0 deleted');
    expect(classifyFlowMonitorLine('nodenet0', ' event=ADDED table=0 cookie=0x6e6e010000001a2b priority=100')).toBeNull();
    expect(classifyFlowMonitorLine('nodenet0', ' event=DELETED reason=delete table=0 cookie=0x5')).toBeNull();
    expect(classifyFlowMonitorLine('nodenet0', 'NXST_FLOW_MONITOR reply (xid=0x0):')).toBeNull();
  });
});

describe('monitorSpecs', () => {
  const ovs = { db: 'unix:/run/ovs/db.sock', runDir: '/run/ovs', datapathType: 'netdev' as const };
  it('iproute2 with vxlan: ip, nft and bridge fdb monitors; no OVS', () => {
    expect(monitorSpecs({ backend: 'iproute2', ovs, overlay: { mode: 'vxlan', vni: 1, port: 4789 } }).map((s) => s.file)).toEqual([
      'ip',
      'nft',
      'bridge',
    ]);
  });
  it('ovs: the kernel monitors plus OVSDB (bridges, interfaces) and the flow table of nodenet0', () => {
    const specs = monitorSpecs({ backend: 'ovs', ovs, overlay: { mode: 'vxlan', vni: 1, port: 4789 } });
    expect(specs.map((s) => [s.file, ...s.args])).toEqual([
      ['ip', '-o', 'monitor', 'link', 'address', 'route', 'neigh'],
      ['nft', '-j', 'monitor', 'destroy'],
      [
        'stdbuf',
        '-oL',
        'ovsdb-client',
        '--format=json',
        'monitor',
        'unix:/run/ovs/db.sock',
        'Open_vSwitch',
        'Bridge',
        'name,external_ids,datapath_id',
      ],
      [
        'stdbuf',
        '-oL',
        'ovsdb-client',
        '--format=json',
        'monitor',
        'unix:/run/ovs/db.sock',
        'Open_vSwitch',
        'Interface',
        'name,external_ids,ofport',
      ],
      ['stdbuf', '-oL', 'ovs-ofctl', 'monitor', 'unix:/run/ovs/nodenet0.mgmt', 'watch:'],
    ]);
  });
});
