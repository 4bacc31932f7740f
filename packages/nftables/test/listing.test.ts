import { describe, expect, it } from 'vitest';
import { countRules, parseAllowedSources, parsePublishedPorts } from '../src/index.js';

// Captured from `nft -j list table ip nodenet` / `... bridge nodenet` (nftables 1.0.6), trimmed.
const ipTable = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
    { table: { family: 'ip', name: 'nodenet', handle: 1 } },
    {
      map: {
        family: 'ip', name: 'published_ports', table: 'nodenet', type: ['inet_proto', 'inet_service'], handle: 1, map: 'ipv4_addr . inet_service',
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
    { set: { family: 'ip', name: 'cluster_subnets', table: 'nodenet', type: 'ipv4_addr', handle: 2, flags: ['interval'], elem: [{ prefix: { addr: '198.19.1.0', len: 24 } }] } },
    { chain: { family: 'ip', table: 'nodenet', name: 'prerouting', handle: 3 } },
    { rule: { family: 'ip', table: 'nodenet', chain: 'prerouting', handle: 4, expr: [] } },
    { rule: { family: 'ip', table: 'nodenet', chain: 'prerouting', handle: 5, expr: [] } },
  ],
});

const bridgeTable = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6' } },
    { table: { family: 'bridge', name: 'nodenet', handle: 2 } },
    { set: { family: 'bridge', name: 'allowed_sources', table: 'nodenet', type: ['ifname', 'ipv4_addr'], handle: 1, elem: [{ concat: ['nnh-00000002', '198.19.1.2'] }, { concat: ['nni-00000003', '198.19.1.3'] }] } },
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
