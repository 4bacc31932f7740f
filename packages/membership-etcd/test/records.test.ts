import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, InvalidArgumentError, Subnet, parseNodeRecord, type NodeRecord } from '@nodenet/core';
import { EtcdMembership } from '../src/index.js';
import {
  KeyLayout,
  RECORD_VERSION,
  checkClaim,
  decodeNodeRecord,
  encodeNodeRecord,
  parseClaimHolder,
  prefixRangeEnd,
  type LiveClaim,
  type LiveRecord,
} from '../src/records.js';

function rec(name: string, underlay: string, subnet: string): NodeRecord {
  return parseNodeRecord({ name, underlayAddress: underlay, subnet }, 'test');
}
const live = (r: NodeRecord, lease = '7'): LiveRecord => ({ record: r, lease });
const claim = (subnet: string, holder: string, lease = '7'): LiveClaim => ({ subnet: Subnet.of(subnet), holder, lease });

describe('KeyLayout', () => {
  it('lays out records and claims under the prefix', () => {
    const k = new KeyLayout('/nodenet');
    expect(k.root).toBe('/nodenet/');
    expect(k.nodeKey('node-1')).toBe('/nodenet/nodes/node-1');
    expect(k.claimKey(Subnet.of('198.19.1.0/24'))).toBe('/nodenet/subnets/198.19.1.0_24');
    expect(k.nameOfNodeKey('/nodenet/nodes/node-1')).toBe('node-1');
    expect(k.nameOfNodeKey('/nodenet/subnets/198.19.1.0_24')).toBeNull();
    expect(k.subnetOfClaimKey('/nodenet/subnets/198.19.1.0_24')?.toString()).toBe('198.19.1.0/24');
  });

  it('drops trailing slashes from the prefix', () => {
    expect(new KeyLayout('/nodenet//').nodeKey('a')).toBe('/nodenet/nodes/a');
    expect(new KeyLayout('/').nodeKey('a')).toBe('/nodes/a');
  });

  it('refuses prefixes that do not start with / or contain spaces', () => {
    for (const bad of ['nodenet', '', '/a b', '/ä']) {
      expect(() => new KeyLayout(bad), bad).toThrow(InvalidArgumentError);
    }
    expect(() => new KeyLayout('x')).toThrow(/membership\.etcd\.prefix/);
  });

  it('does not take malformed claim keys for subnets', () => {
    const k = new KeyLayout('/p');
    for (const bad of [
      '/p/subnets/198.19.1.1_24',
      '/p/subnets/198.19.1.0/24',
      '/p/subnets/nonsense',
      '/p/subnets/198.19.1.0_33',
      '/q/subnets/198.19.1.0_24',
      '/p/subnets/198.019.1.0_24',
    ]) {
      expect(k.subnetOfClaimKey(bad), bad).toBeNull();
    }
  });
});

describe('prefixRangeEnd', () => {
  it('is the prefix with its last byte incremented', () => {
    expect(prefixRangeEnd('/nodenet/nodes/').toString()).toBe('/nodenet/nodes0');
    expect([...prefixRangeEnd('az')]).toEqual([0x61, 0x7b]);
  });

  it('drops trailing 0xff bytes before incrementing, and ends the key space when nothing is left', () => {
    expect([...prefixRangeEnd(Buffer.from([0x61, 0xff, 0xff]))]).toEqual([0x62]);
    expect([...prefixRangeEnd(Buffer.from([0xff]))]).toEqual([0]);
    expect([...prefixRangeEnd('')]).toEqual([0]);
  });
});

describe('node record encoding', () => {
  const r = rec('node-1', '198.18.0.1', '198.19.1.0/24');

  it('encodes a versioned JSON record and decodes it back', () => {
    const text = encodeNodeRecord(r);
    expect(JSON.parse(text)).toEqual({ version: RECORD_VERSION, name: 'node-1', underlayAddress: '198.18.0.1', subnet: '198.19.1.0/24' });
    const back = decodeNodeRecord('/p/nodes/node-1', 'node-1', text);
    expect(back.name).toBe('node-1');
    expect(back.underlayAddress).toBe('198.18.0.1');
    expect(String(back.subnet)).toBe(String(r.subnet));
  });

  it('reads newer versions, ignoring fields it does not know', () => {
    const text = JSON.stringify({
      version: 2,
      name: 'node-1',
      underlayAddress: '198.18.0.1',
      subnet: '198.19.1.0/24',
      vtepMac: '02:00:00:00:00:01',
    });
    expect(decodeNodeRecord('/p/nodes/node-1', 'node-1', text).subnet?.toString()).toBe('198.19.1.0/24');
  });

  it.each([
    ['not JSON', 'not json', /is not JSON/],
    ['an array', '[1]', /not a JSON object/],
    ['null', 'null', /not a JSON object/],
    [
      'no version',
      JSON.stringify({ name: 'node-1', underlayAddress: '198.18.0.1', subnet: '198.19.1.0/24' }),
      /version: must be an integer >= 1/,
    ],
    ['version 0', JSON.stringify({ version: 0, name: 'node-1', underlayAddress: '198.18.0.1', subnet: '198.19.1.0/24' }), /version/],
    [
      'version as a string',
      JSON.stringify({ version: '1', name: 'node-1', underlayAddress: '198.18.0.1', subnet: '198.19.1.0/24' }),
      /version/,
    ],
    [
      'fractional version',
      JSON.stringify({ version: 1.5, name: 'node-1', underlayAddress: '198.18.0.1', subnet: '198.19.1.0/24' }),
      /version/,
    ],
    [
      'a bad address',
      JSON.stringify({ version: 1, name: 'node-1', underlayAddress: '198.018.0.1', subnet: '198.19.1.0/24' }),
      /underlayAddress/,
    ],
    [
      'host bits in the subnet',
      JSON.stringify({ version: 1, name: 'node-1', underlayAddress: '198.18.0.1', subnet: '198.19.1.1/24' }),
      /subnet/,
    ],
    [
      'a non-canonical IPv6 underlay address',
      JSON.stringify({ version: 2, name: 'node-1', underlayAddress: '2001:DB8::1', subnet: '198.19.1.0/24' }),
      /canonical form \(RFC 5952\): write 2001:db8::1/,
    ],
    [
      'an IPv6 subnet wider than /64',
      JSON.stringify({ version: 2, name: 'node-1', underlayAddress: '198.18.0.1', ipv6Subnet: 'fd19::/48' }),
      /must be \/64 to \/120/,
    ],
    ['no subnet', JSON.stringify({ version: 1, name: 'node-1', underlayAddress: '198.18.0.1' }), /subnet/],
    [
      'another name than the key',
      JSON.stringify({ version: 1, name: 'node-2', underlayAddress: '198.18.0.1', subnet: '198.19.1.0/24' }),
      /names node 'node-2' but the key is for 'node-1'/,
    ],
  ])('refuses %s, naming the key', (_what, text, message) => {
    let err: unknown;
    try {
      decodeNodeRecord('/p/nodes/node-1', 'node-1', text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain('/p/nodes/node-1');
  });

  it('refuses a record under a key that is not a node name', () => {
    const text = JSON.stringify({ version: 1, name: 'bad name', underlayAddress: '198.18.0.1', subnet: '198.19.1.0/24' });
    expect(() => decodeNodeRecord('/p/nodes/bad name', 'bad name', text)).toThrow(InvalidArgumentError);
  });

  it('parses claim holders', () => {
    expect(parseClaimHolder('node-1')).toBe('node-1');
    expect(parseClaimHolder('')).toBeNull();
    expect(parseClaimHolder('a b')).toBeNull();
  });
});

describe('checkClaim (overlap and takeover rules)', () => {
  const self = rec('a', '198.18.0.1', '198.19.4.0/24');

  it('accepts a subnet nobody holds', () => {
    const v = checkClaim(self, [live(rec('b', '198.18.0.2', '198.19.5.0/24'))], [claim('198.19.5.0/24', 'b')], null);
    expect(v).toEqual({ ok: true, staleOwnClaims: [] });
  });

  it.each([
    ['the same subnet', '198.19.4.0/24'],
    ['a larger subnet containing it', '198.19.0.0/16'],
    ['a smaller subnet inside it', '198.19.4.128/25'],
  ])('refuses a subnet overlapping %s of a live node, naming the node', (_what, other) => {
    const v = checkClaim(self, [live(rec('b', '198.18.0.2', other))], [claim(other, 'b')], null);
    expect(v.ok).toBe(false);
    if (!v.ok) {
      expect(v.conflictWith).toBe('b');
      expect(v.message).toContain('live node b');
      expect(v.message).toContain(other);
    }
  });

  it('refuses an overlap found only in a claim (its record missing or malformed)', () => {
    const v = checkClaim(self, [], [claim('198.19.0.0/20', 'c')], null);
    expect(v).toMatchObject({ ok: false, conflictWith: 'c' });
  });

  it("refuses another live node's underlay address", () => {
    const v = checkClaim(self, [live(rec('b', '198.18.0.1', '198.19.5.0/24'))], [], null);
    expect(v).toMatchObject({ ok: false, conflictWith: 'b' });
    if (!v.ok) expect(v.message).toContain('underlay address 198.18.0.1');
  });

  it("takes over this node's own record and claim from an earlier run (same name and underlay address)", () => {
    const v = checkClaim(self, [live(self, 'old')], [claim('198.19.4.0/24', 'a', 'old')], 'new');
    expect(v).toEqual({ ok: true, staleOwnClaims: [] });
  });

  it("releases this node's claims on subnets it no longer uses", () => {
    const v = checkClaim(self, [live(rec('a', '198.18.0.1', '198.19.9.0/24'), 'old')], [claim('198.19.9.0/24', 'a', 'old')], 'new');
    expect(v.ok).toBe(true);
    if (v.ok) expect(v.staleOwnClaims.map(String)).toEqual(['198.19.9.0/24']);
  });

  it('refuses the name while a live node on another underlay address holds it', () => {
    const v = checkClaim(self, [live(rec('a', '198.18.0.9', '198.19.9.0/24'), 'theirs')], [claim('198.19.9.0/24', 'a', 'theirs')], null);
    expect(v).toMatchObject({ ok: false, conflictWith: 'a' });
    if (!v.ok) expect(v.message).toContain('node name a is already announced by a live node with underlay address 198.18.0.9');
  });

  it('lets this run change its own underlay address (the record is on its own lease)', () => {
    const v = checkClaim(self, [live(rec('a', '198.18.0.9', '198.19.4.0/24'), 'mine')], [claim('198.19.4.0/24', 'a', 'mine')], 'mine');
    expect(v).toEqual({ ok: true, staleOwnClaims: [] });
  });
});

describe('EtcdMembership options', () => {
  const base = { endpoints: ['http://127.0.0.1:2379'], prefix: '/nodenet', leaseTtlSeconds: 15, nodeName: 'a' };

  it.each([
    ['no endpoints', { endpoints: [] }, /membership\.etcd\.endpoints/],
    ['an endpoint without scheme', { endpoints: ['127.0.0.1:2379'] }, /membership\.etcd\.endpoints\[0\]/],
    [
      'mixed schemes',
      { endpoints: ['http://a:2379', 'https://b:2379'] },
      /membership\.etcd\.endpoints: mixes http:\/\/ and https:\/\/ URLs/,
    ],
    ['a zero TTL', { leaseTtlSeconds: 0 }, /leaseTtlSeconds/],
    ['a fractional TTL', { leaseTtlSeconds: 1.5 }, /leaseTtlSeconds/],
    ['a bad node name', { nodeName: 'a b' }, /nodeName/],
    ['a bad prefix', { prefix: 'nodenet' }, /membership\.etcd\.prefix/],
  ])('refuses %s', (_what, override, message) => {
    expect(() => new EtcdMembership({ ...base, ...override })).toThrow(message);
  });

  it("refuses to announce another node's name, and anything after stop()", async () => {
    const m = new EtcdMembership(base);
    await expect(m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'))).rejects.toThrow(InvalidArgumentError);
    await m.stop();
    await expect(m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'))).rejects.toThrow(FailedPreconditionError);
    expect(m.peers()).toEqual([]);
    expect(m.leaseInfo()).toBeNull();
  });
});
