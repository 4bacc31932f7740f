import { describe, expect, it } from 'vitest';
import {
  canonical,
  countRules,
  filterElements,
  parseAllowedSources,
  parsePublishedPorts,
  parseSubnetElements,
  parseTableShape,
} from '../src/listing.js';

// Captured from `nft -j list table ip nodenet` / `... bridge nodenet` (nftables 1.0.6), trimmed.
const ipTable = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
    { table: { family: 'ip', name: 'nodenet', handle: 1 } },
    {
      map: {
        family: 'ip',
        name: 'published_ports',
        table: 'nodenet',
        type: ['inet_proto', 'inet_service'],
        handle: 1,
        map: 'ipv4_addr . inet_service',
        elem: [
          [{ concat: ['tcp', 80] }, { concat: ['198.19.1.2', 22] }],
          [{ concat: ['udp', 8080] }, { concat: ['198.19.1.3', 80] }],
          // An element with options, and a numeric protocol.
          [{ elem: { val: { concat: [6, 9000] }, counter: { packets: 0, bytes: 0 } } }, { concat: ['198.19.1.4', 9001] }],
          // Garbage is skipped.
          [{ concat: ['sctp', 1] }, { concat: ['198.19.1.4', 1] }],
          ['nonsense'],
        ],
      },
    },
    {
      set: {
        family: 'ip',
        name: 'cluster_subnets',
        table: 'nodenet',
        type: 'ipv4_addr',
        handle: 2,
        flags: ['interval'],
        elem: [{ prefix: { addr: '198.19.1.0', len: 24 } }],
      },
    },
    { chain: { family: 'ip', table: 'nodenet', name: 'prerouting', handle: 3 } },
    { rule: { family: 'ip', table: 'nodenet', chain: 'prerouting', handle: 4, expr: [] } },
    { rule: { family: 'ip', table: 'nodenet', chain: 'prerouting', handle: 5, expr: [] } },
  ],
});

const bridgeTable = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6' } },
    { table: { family: 'bridge', name: 'nodenet', handle: 2 } },
    {
      set: {
        family: 'bridge',
        name: 'allowed_sources',
        table: 'nodenet',
        type: ['ifname', 'ipv4_addr'],
        handle: 1,
        elem: [{ concat: ['nnh-00000002', '198.19.1.2'] }, { concat: ['nni-00000003', '198.19.1.3'] }],
      },
    },
  ],
});

describe('listing', () => {
  it('reads published_ports elements', () => {
    expect(parsePublishedPorts(ipTable)).toEqual([
      { protocol: 'tcp', hostPort: 80, address: '198.19.1.2', instancePort: 22 },
      { protocol: 'udp', hostPort: 8080, address: '198.19.1.3', instancePort: 80 },
      { protocol: 'tcp', hostPort: 9000, address: '198.19.1.4', instancePort: 9001 },
    ]);
  });

  it('reads allowed_sources elements', () => {
    expect(parseAllowedSources(bridgeTable)).toEqual([
      { ifname: 'nnh-00000002', address: '198.19.1.2' },
      { ifname: 'nni-00000003', address: '198.19.1.3' },
    ]);
  });

  it('an absent map or set reads as null, an empty one as []', () => {
    expect(parsePublishedPorts(bridgeTable)).toBeNull();
    expect(parseAllowedSources(ipTable)).toBeNull();
    const empty = JSON.stringify({ nftables: [{ set: { name: 'allowed_sources', family: 'bridge', table: 'nodenet' } }] });
    expect(parseAllowedSources(empty)).toEqual([]);
  });

  it('counts rules', () => {
    expect(countRules(ipTable)).toBe(2);
    expect(countRules(bridgeTable)).toBe(0);
  });
});

describe('parseSubnetElements', () => {
  const doc = (elem?: unknown[]) =>
    JSON.stringify({
      nftables: [
        { metainfo: {} },
        {
          set: {
            family: 'ip',
            name: 'cluster_subnets',
            table: 'nodenet',
            type: 'ipv4_addr',
            flags: ['interval'],
            ...(elem ? { elem } : {}),
          },
        },
      ],
    });

  it('reads prefixes, single addresses (/32), ranges and elements with options, sorted numerically', () => {
    expect(
      parseSubnetElements(
        doc([
          { prefix: { addr: '198.19.10.0', len: 24 } },
          '198.19.3.4',
          { range: ['198.19.5.1', '198.19.5.9'] },
          { elem: { val: { prefix: { addr: '198.19.2.0', len: 24 } }, counter: { packets: 0, bytes: 0 } } },
        ]),
      ),
    ).toEqual(['198.19.2.0/24', '198.19.3.4/32', '198.19.5.1-198.19.5.9', '198.19.10.0/24']);
  });

  it('an empty set reads as [], an absent one as null', () => {
    expect(parseSubnetElements(doc())).toEqual([]);
    expect(parseSubnetElements(JSON.stringify({ nftables: [{ metainfo: {} }] }))).toBeNull();
  });
});

describe('filterElements', () => {
  it("turns listed elements into core's FilterElements, skipping addresses that do not parse", () => {
    expect(
      filterElements({
        publishedPorts: [
          { protocol: 'tcp', hostPort: 80, address: '198.19.1.2', instancePort: 8080 },
          { protocol: 'udp', hostPort: 81, address: '198.19.01.2', instancePort: 81 },
        ],
        allowedSources: [
          { ifname: 'nnh-00000002', address: '198.19.1.2' },
          { ifname: 'nnh-00000003', address: 'fd00::zz' },
        ],
      }),
    ).toEqual({
      ports: [{ protocol: 'tcp', hostPort: 80, address: '198.19.1.2', instancePort: 8080 }],
      sources: [{ ifname: 'nnh-00000002', address: '198.19.1.2' }],
    });
  });

  it('absent tables read as empty lists', () => {
    expect(filterElements({ publishedPorts: null, allowedSources: null })).toEqual({ ports: [], sources: [] });
  });
});

describe('shapes', () => {
  it('canonical JSON sorts object keys and keeps array order', () => {
    expect(canonical({ b: 1, a: { d: [2, 1], c: null } })).toBe('{"a":{"c":null,"d":[2,1]},"b":1}');
    expect(canonical({ a: 1, b: 2 })).toBe(canonical({ b: 2, a: 1 }));
  });

  it('drops handles and elements, keeps declarations, rules in order, and ignores other tables', () => {
    const shape = parseTableShape(
      JSON.stringify({
        nftables: [
          { metainfo: {} },
          { table: { family: 'ip', name: 'other', handle: 1 } },
          { chain: { family: 'ip', table: 'other', name: 'c', handle: 2, type: 'filter', hook: 'input', prio: 0, policy: 'drop' } },
          { table: { family: 'ip', name: 'nodenet', handle: 7 } },
          {
            map: {
              family: 'ip',
              name: 'published_ports',
              table: 'nodenet',
              handle: 8,
              type: ['inet_proto', 'inet_service'],
              map: 'ipv4_addr . inet_service',
              elem: [[1, 2]],
            },
          },
          { chain: { family: 'ip', table: 'nodenet', name: 'c', handle: 9, type: 'nat', hook: 'output', prio: -100, policy: 'accept' } },
          { rule: { family: 'ip', table: 'nodenet', chain: 'c', handle: 10, comment: 'first', expr: [{ accept: null }] } },
          { rule: { family: 'ip', table: 'nodenet', chain: 'c', handle: 11, expr: [{ drop: null }] } },
          { rule: { family: 'ip', table: 'other', chain: 'c', handle: 12, expr: [{ drop: null }] } },
        ],
      }),
      'ip',
    )!;
    expect(shape.attributes).toBe('{}');
    expect([...shape.sets]).toEqual([
      [
        'published_ports',
        {
          kind: 'map',
          declaration: '{"map":"ipv4_addr . inet_service","type":["inet_proto","inet_service"]}',
          described: 'type inet_proto . inet_service : ipv4_addr . inet_service',
        },
      ],
    ]);
    expect(shape.chains.get('c')).toEqual({
      declaration: '{"hook":"output","policy":"accept","prio":-100,"type":"nat"}',
      described: 'type nat hook output priority -100 policy accept',
      rules: [{ body: '{"comment":"first","expr":[{"accept":null}]}', comment: 'first' }, { body: '{"expr":[{"drop":null}]}' }],
    });
    expect(parseTableShape(JSON.stringify({ nftables: [{ table: { family: 'ip', name: 'other' } }] }), 'ip')).toBeNull();
  });
});
