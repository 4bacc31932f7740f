import { describe, expect, it } from 'vitest';
import { FailedPreconditionError } from '@nodenet/core';
import type { IpLine, IpLink } from '@nodenet/linux';
import {
  BridgePlacement,
  OVERFLOW_BRIDGE_ALIAS,
  OVERFLOW_LINK_ALIAS,
  createOverflowScript,
  deleteOverflowScript,
  isCniBridge,
  isOverflowInfrastructure,
  overflowBridgesIn,
  repairOverflowScript,
} from '../src/cni-bridges.js';
import { ownedLinksOf } from '../src/scripts.js';
import { cniSpec } from './specs.js';

const text = (lines: IpLine[]) => lines.map((l) => l.args.join(' '));

function link(ifname: string, extra: Partial<IpLink> = {}): IpLink {
  return { ifindex: 1, ifname, flags: ['BROADCAST', 'UP'], mtu: cniSpec.mtu, ...extra };
}

/** A healthy overflow bridge 1 with its pair, by name. */
function healthy(): Map<string, IpLink> {
  return new Map([
    ['nodenet0b1', link('nodenet0b1', { alias: OVERFLOW_BRIDGE_ALIAS })],
    ['nodenet0b1-up', link('nodenet0b1-up', { alias: OVERFLOW_LINK_ALIAS, master: 'nodenet0' })],
    ['nodenet0b1-dn', link('nodenet0b1-dn', { alias: OVERFLOW_LINK_ALIAS, master: 'nodenet0b1' })],
  ]);
}

describe('overflow bridge names', () => {
  it('tells the CNI bridge and its overflow bridges (1-99) from other names', () => {
    for (const name of ['nodenet0', 'nodenet0b1', 'nodenet0b23', 'nodenet0b99']) expect(isCniBridge('nodenet0', name), name).toBe(true);
    for (const name of ['nodenet0b0', 'nodenet0b01', 'nodenet0b100', 'nodenet0bx', 'nodenet1', 'nodenet0b1-up', undefined]) {
      expect(isCniBridge('nodenet0', name), String(name)).toBe(false);
    }
  });

  it('claims a link as overflow infrastructure only with both its name and nodenet alias', () => {
    expect(isOverflowInfrastructure('nodenet0', { ifname: 'nodenet0b2', alias: OVERFLOW_BRIDGE_ALIAS })).toBe(true);
    expect(isOverflowInfrastructure('nodenet0', { ifname: 'nodenet0b2-up', alias: OVERFLOW_LINK_ALIAS })).toBe(true);
    expect(isOverflowInfrastructure('nodenet0', { ifname: 'nodenet0b2-dn', alias: OVERFLOW_LINK_ALIAS })).toBe(true);
    expect(isOverflowInfrastructure('nodenet0', { ifname: 'nodenet0b2', alias: undefined })).toBe(false);
    expect(isOverflowInfrastructure('nodenet0', { ifname: 'br-other', alias: OVERFLOW_BRIDGE_ALIAS })).toBe(false);
    expect(isOverflowInfrastructure('nodenet0', { ifname: 'nodenet0b2-up', alias: OVERFLOW_BRIDGE_ALIAS })).toBe(false);
    expect(
      overflowBridgesIn('nodenet0', [...healthy().values(), link('nodenet0b3', { alias: OVERFLOW_BRIDGE_ALIAS }), link('nodenet0b2')]),
    ).toEqual([1, 3]);
  });

  it('core sees no overflow link, and a port on an overflow bridge as a port of the CNI', () => {
    const links = [
      ...healthy().values(),
      link('nnh-0000000a', { alias: 'nodenet:nni-0000000a', master: 'nodenet0b1' }),
      // Cut short before its tag: still nodenet's on an overflow bridge, as on the CNI bridge.
      link('nnh-0000000b', { master: 'nodenet0b1' }),
      link('nnh-0000000c', { alias: 'nodenet:nni-0000000c' }),
    ];
    expect(ownedLinksOf(links).map((l) => [l.name, l.ownerTag, l.master])).toEqual([
      ['nnh-0000000a', 'nodenet:nni-0000000a', 'nodenet0'],
      ['nnh-0000000b', 'nodenet:nni-0000000b', 'nodenet0'],
      ['nnh-0000000c', 'nodenet:nni-0000000c', ''],
    ]);
  });
});

describe('overflow scripts', () => {
  it('makes the bridge (MTU, alias, no IPv6 address, up) and the pair, each end on its bridge, tagged and up', () => {
    expect(text(createOverflowScript(cniSpec, 1))).toEqual([
      'link add name nodenet0b1 type bridge',
      'link set dev nodenet0b1 mtu 1450 alias nodenet:cni-overflow addrgenmode none up',
      'link add name nodenet0b1-up mtu 1450 master nodenet0 type veth peer name nodenet0b1-dn mtu 1450',
      'link set dev nodenet0b1-up master nodenet0 alias nodenet:cni-link addrgenmode none up',
      'link set dev nodenet0b1-dn master nodenet0b1 alias nodenet:cni-link addrgenmode none up',
    ]);
  });

  it('repairs nothing on a healthy bridge and pair', () => {
    expect(repairOverflowScript(cniSpec, 1, healthy())).toEqual([]);
  });

  it('makes a pair again when an end is missing, removing the survivor first', () => {
    const links = healthy();
    links.delete('nodenet0b1-up');
    const [repair, ...rest] = repairOverflowScript(cniSpec, 1, links);
    expect(rest).toEqual([]);
    expect(repair!.found).toBe('the pair joining nodenet0b1 to nodenet0 was missing: made again');
    expect(text(repair!.lines)).toEqual([
      'link del dev nodenet0b1-dn',
      'link add name nodenet0b1-up mtu 1450 master nodenet0 type veth peer name nodenet0b1-dn mtu 1450',
      'link set dev nodenet0b1-up master nodenet0 alias nodenet:cni-link addrgenmode none up',
      'link set dev nodenet0b1-dn master nodenet0b1 alias nodenet:cni-link addrgenmode none up',
    ]);
  });

  it('attaches a detached end, sets MTUs and brings links up', () => {
    const links = healthy();
    links.set('nodenet0b1', { ...links.get('nodenet0b1')!, mtu: 1500, flags: ['BROADCAST'] });
    links.set('nodenet0b1-up', { ...links.get('nodenet0b1-up')!, master: undefined });
    links.set('nodenet0b1-dn', { ...links.get('nodenet0b1-dn')!, mtu: 1500, flags: [] });
    const repairs = repairOverflowScript(cniSpec, 1, links);
    expect(repairs.map((r) => r.found)).toEqual([
      'MTU of nodenet0b1 was 1500: set to 1450',
      'nodenet0b1 was down: brought up',
      'nodenet0b1-up was not a port of nodenet0: attached again',
      'MTU of nodenet0b1-dn was 1500: set to 1450',
      'nodenet0b1-dn was down: brought up',
    ]);
    expect(text(repairs.flatMap((r) => r.lines))).toEqual([
      'link set dev nodenet0b1 mtu 1450',
      'link set dev nodenet0b1 up',
      'link set dev nodenet0b1-up master nodenet0 alias nodenet:cni-link addrgenmode none up',
      'link set dev nodenet0b1-dn mtu 1450',
      'link set dev nodenet0b1-dn up',
    ]);
  });

  it('deletes only overflow infrastructure', () => {
    const links = [...healthy().values(), link('nodenet0'), link('nnh-0000000a', { master: 'nodenet0b1' }), link('nodenet0b2')];
    expect(text(deleteOverflowScript('nodenet0', links))).toEqual([
      'link del dev nodenet0b1',
      'link del dev nodenet0b1-up',
      'link del dev nodenet0b1-dn',
    ]);
  });
});

describe('BridgePlacement', () => {
  it('fills the lowest bridge with room; a released port frees room there', () => {
    const p = new BridgePlacement('nodenet0', 2);
    expect(['a', 'b', 'c', 'd', 'e'].map((port) => p.place(port))).toEqual([0, 0, 1, 1, 2]);
    p.release('a');
    expect(p.place('f')).toBe(0);
    expect(p.place('g')).toBe(2);
    expect(p.occupancy()).toEqual([2, 2, 2]);
    // Placing a port again first gives up its old place (a detached port attached again).
    expect(p.place('c')).toBe(1);
    expect(p.occupancy()).toEqual([2, 2, 2]);
    expect(p.place('h')).toBe(3);
    expect(p.bridgeIndexOf('h')).toBe(3);
    p.release('unknown');
    expect(p.occupancy()).toEqual([2, 2, 2, 1]);
  });

  it('loads instance ports from a listing of the links (ports of other software do not count)', () => {
    const p = new BridgePlacement('nodenet0', 2);
    expect(p.loaded).toBe(false);
    p.load([
      link('nnh-00000001', { master: 'nodenet0' }),
      link('nni-00000002', { master: 'nodenet0' }),
      link('nnh-00000003', { master: 'nodenet0b2' }),
      link('nodenet0b1-up', { master: 'nodenet0' }),
      link('tap-foreign', { master: 'nodenet0b1' }),
      link('nnh-00000004'),
    ]);
    expect(p.loaded).toBe(true);
    expect(p.occupancy()).toEqual([2, 0, 1]);
    expect(p.place('x')).toBe(1);
  });

  it('skips a bridge the kernel found full until a port leaves it', () => {
    const p = new BridgePlacement('nodenet0', 5);
    p.place('a');
    p.markFull(0);
    expect(p.place('b')).toBe(1);
    p.release('a');
    expect(p.place('c')).toBe(0);
  });

  it('refuses when every bridge is full, naming them and what to do; keeps the CNI ports for the pairs', () => {
    const p = new BridgePlacement('nodenet0', 1000);
    expect(p.maxOverflow).toBe(23);
    for (let i = 0; i < 24_000; i++) p.place(`p${i}`);
    const err = (() => {
      try {
        p.place('one-more');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toBe(
      "the node's 24 bridges (nodenet0 and nodenet0b1 to nodenet0b23) already hold 1000 instance ports each: delete an interface first, or run more instances on other nodes",
    );
    // Names stay within 15 characters: at most 99 overflow bridges.
    expect(new BridgePlacement('nodenet0', 2).maxOverflow).toBe(99);
    expect(() => new BridgePlacement('nodenet0', 1023)).toThrow(RangeError);
  });
});
