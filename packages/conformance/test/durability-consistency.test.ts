// The durability suites' judge of "nothing half-made" (consistencyProblems) with IPv6: what it must flag, so
// that the crash, reboot and drift tests passing means the IPv6 state was whole, not that nobody looked.
import { describe, expect, it } from 'vitest';
import { linkLocalForMac } from '@nodenet/core';
import { consistencyProblems, ndTargetsOf, type OwnedState, type RecordedInstance } from '../src/durability.js';

const MAC = '02:00:c6:13:01:0a';
const LINK_LOCAL = linkLocalForMac(MAC);
const HOST = 'nnh-0000000a';
const ports = [
  { protocol: 'tcp', hostPort: 8080, instancePort: 80 },
  { protocol: 'udp', hostPort: 8080, instancePort: 80 },
];

function record(address: string, ipv6Address?: string): RecordedInstance {
  return {
    handle: 'nni-0000000a',
    hostIfname: HOST,
    kind: 'veth',
    address,
    ...(ipv6Address ? { ipv6Address } : {}),
    mac: MAC,
    ports,
    netns: 'nnt-x',
    ifname: 'eth0',
  };
}

const published = (address: string) => ports.map((p) => ({ ...p, address }));
const admitted = (...addresses: string[]) => addresses.map((address) => ({ ifname: HOST, address }));

/** A dual-stack node with one instance, everything in place. */
function dualStack(): OwnedState {
  return {
    cniRecorded: true,
    cniFamilies: { ipv4: true, ipv6: true },
    records: [record('198.19.1.10', 'fd19:0:0:1::a')],
    fileProblems: [],
    instanceLinks: [{ name: HOST, handle: 'nni-0000000a', master: 'nodenet0', up: true, ifindex: 7 }],
    untaggedLinks: [],
    ports: published('198.19.1.10'),
    sources: admitted('198.19.1.10'),
    ports6: published('fd19:0:0:1::a'),
    sources6: admitted('fd19:0:0:1::a', LINK_LOCAL),
    ndTargets: admitted('fd19:0:0:1::a', LINK_LOCAL),
    tables: { ip: true, bridge: true, ip6: true },
  };
}

/** An IPv6-only node (the instance's IPv6 address in the seed field), everything in place. */
function ipv6Only(): OwnedState {
  return {
    ...dualStack(),
    cniFamilies: { ipv4: false, ipv6: true },
    records: [record('fd19:0:0:2::a')],
    ports: [],
    sources: [],
    ports6: published('fd19:0:0:2::a'),
    sources6: admitted('fd19:0:0:2::a', LINK_LOCAL),
    ndTargets: admitted('fd19:0:0:2::a', LINK_LOCAL),
    tables: { ip: false, bridge: true, ip6: true },
  };
}

describe('consistencyProblems with IPv6', () => {
  it('finds nothing wrong when every family of every record is in place', () => {
    expect(consistencyProblems(dualStack())).toEqual([]);
    expect(consistencyProblems(ipv6Only())).toEqual([]);
  });

  it("flags an instance's missing IPv6 admission (its address or its link-local one, in either set)", () => {
    const s = dualStack();
    expect(consistencyProblems({ ...s, sources6: admitted('fd19:0:0:1::a') })).toEqual([
      `record nni-0000000a (fd19:0:0:1::a): its allowed_sources6 element ${HOST} . ${LINK_LOCAL} is missing`,
    ]);
    expect(consistencyProblems({ ...s, ndTargets: admitted(LINK_LOCAL) })).toEqual([
      `record nni-0000000a (fd19:0:0:1::a): its nd_targets element ${HOST} . fd19:0:0:1::a is missing`,
    ]);
  });

  it('flags a port missing from the ip6 map, or mapped to another address, while the ip map is whole', () => {
    const s = dualStack();
    expect(consistencyProblems({ ...s, ports6: published('fd19:0:0:1::a').slice(1) })).toEqual([
      'record nni-0000000a (fd19:0:0:1::a): published port tcp/8080 is missing from the ip6 map',
    ]);
    expect(consistencyProblems({ ...s, ports6: published('fd19:0:0:1::b') })).toEqual([
      'record nni-0000000a: ip6 port tcp/8080 maps to fd19:0:0:1::b:80, not fd19:0:0:1::a:80',
      'record nni-0000000a: ip6 port udp/8080 maps to fd19:0:0:1::b:80, not fd19:0:0:1::a:80',
    ]);
  });

  it('flags IPv6 elements no record explains (left by a create cut short)', () => {
    const s = dualStack();
    const stray = { ifname: 'nnh-0000000b', address: 'fd19:0:0:1::b' };
    expect(
      consistencyProblems({
        ...s,
        ports6: [...s.ports6, { protocol: 'tcp', hostPort: 9090, address: 'fd19:0:0:1::b', instancePort: 90 }],
        sources6: [...s.sources6, stray],
        ndTargets: [...s.ndTargets, stray],
      }),
    ).toEqual([
      'published port tcp/9090 -> fd19:0:0:1::b:90 in ip6 has no record',
      'allowed_sources6 element nnh-0000000b . fd19:0:0:1::b has no record',
      'nd_targets element nnh-0000000b . fd19:0:0:1::b has no record',
    ]);
  });

  it("flags tables that do not match the CNI's families: ip6 missing on a dual-stack node, ip present on an IPv6-only one", () => {
    const dual = dualStack();
    expect(consistencyProblems({ ...dual, tables: { ip: true, bridge: true }, ports6: [] })).toContain(
      "nodenet's nftables tables do not match the CNI's families (want ip true, ip6 true, bridge true; have ip true, ip6 false, bridge true)",
    );
    expect(consistencyProblems({ ...ipv6Only(), tables: { ip: true, bridge: true, ip6: true } })).toEqual([
      "nodenet's nftables tables do not match the CNI's families (want ip false, ip6 true, bridge true; have ip true, ip6 true, bridge true)",
    ]);
  });

  it('a dual-stack record without its IPv6 half in the kernel is not whole', () => {
    const s = dualStack();
    expect(consistencyProblems({ ...s, ports6: [], sources6: [], ndTargets: [] })).toHaveLength(6);
  });
});

describe('ndTargetsOf', () => {
  it('reads the 128-bit targets nft lists back as IPv6 addresses', () => {
    const listing = [
      {
        set: {
          family: 'bridge',
          name: 'nd_targets',
          table: 'nodenet',
          elem: [
            { concat: [HOST, '0xfd19000000000001000000000000000a'] },
            { concat: [HOST, '0xfe800000000000000000c6fffe13010a'] },
            { concat: [HOST, '0x20010db8000000000000000000000001'] },
          ],
        },
      },
    ];
    expect(ndTargetsOf(listing)).toEqual(admitted('fd19:0:0:1::a', 'fe80::c6ff:fe13:10a', '2001:db8::1'));
  });
});
