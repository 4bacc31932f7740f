/** The pure parts of reconciling the Linux bridge: owned links and their deletion (sysctls, namespace identity and link groups: @nodenet/linux). */
import { describe, expect, it } from 'vitest';
import { parseIpLinks } from '@nodenet/linux';
import { classifyForDeletion, ownedLinksOf } from '../src/scripts.js';

// Captured from iproute2 6.1 `ip -j -d link show` (trimmed): a CNI, a veth pair (host end tagged), a TAP,
// a foreign bridge with another alias and one whose alias only contains the prefix.
const LINKS = parseIpLinks([
  { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK'], mtu: 65536, operstate: 'DOWN' },
  {
    ifindex: 2,
    ifname: 'nodenet0',
    flags: ['UP'],
    mtu: 1450,
    operstate: 'DOWN',
    ifalias: 'nodenet:cni',
    linkinfo: { info_kind: 'bridge' },
  },
  { ifindex: 3, ifname: 'nni-1', flags: ['M-DOWN'], mtu: 1450, operstate: 'DOWN', linkinfo: { info_kind: 'veth' } },
  {
    ifindex: 4,
    ifname: 'nnh-1',
    flags: ['UP'],
    mtu: 1450,
    operstate: 'UP',
    master: 'nodenet0',
    ifalias: 'nodenet:nni-1',
    linkinfo: { info_kind: 'veth', info_slave_kind: 'bridge' },
  },
  {
    ifindex: 5,
    ifname: 'nni-2',
    flags: [],
    mtu: 1450,
    operstate: 'DOWN',
    master: 'nodenet0',
    ifalias: 'nodenet:nni-2',
    linkinfo: { info_kind: 'tun', info_slave_kind: 'bridge' },
  },
  { ifindex: 6, ifname: 'br-x', flags: [], mtu: 1500, ifalias: 'someone:else' },
  { ifindex: 7, ifname: 'br-y', flags: [], mtu: 1500, ifalias: 'mine-not-nodenet:cni' },
]);

describe('owned links', () => {
  it('are the links whose alias starts with nodenet:, with kind, master (empty for none) and operstate', () => {
    expect(ownedLinksOf(LINKS)).toEqual([
      { name: 'nodenet0', ownerTag: 'nodenet:cni', kind: 'bridge', master: '', operstate: 'DOWN' },
      { name: 'nnh-1', ownerTag: 'nodenet:nni-1', kind: 'veth', master: 'nodenet0', operstate: 'UP' },
      { name: 'nni-2', ownerTag: 'nodenet:nni-2', kind: 'tun', master: 'nodenet0', operstate: 'DOWN' },
    ]);
  });

  it('deletion keeps tagged links, refuses untagged ones (naming their alias) and lets absent ones be, once each', () => {
    expect(classifyForDeletion(['nnh-1', 'nni-1', 'br-x', 'gone0', 'nni-2', 'nnh-1', 'lo'], LINKS)).toEqual({
      owned: ['nnh-1', 'nni-2'],
      foreign: [
        { name: 'nni-1', alias: undefined },
        { name: 'br-x', alias: 'someone:else' },
        { name: 'lo', alias: undefined },
      ],
      absent: ['gone0'],
    });
    expect(classifyForDeletion([], LINKS)).toEqual({ owned: [], foreign: [], absent: [] });
  });
});

describe("ownerTagOf: what counts as nodenet's link", () => {
  it("is the alias, or nodenet's naming scheme on the CNI (a create cut short before its alias line)", async () => {
    const { ownerTagOf } = await import('../src/scripts.js');
    const link = (ifname: string, extra: Record<string, unknown> = {}) => ({ ifname, ...extra }) as never;
    expect(ownerTagOf(link('nnh-0a1b2c3d', { alias: 'nodenet:nni-0a1b2c3d' }))).toBe('nodenet:nni-0a1b2c3d');
    expect(ownerTagOf(link('nnh-0a1b2c3d', { master: 'nodenet0' }))).toBe('nodenet:nni-0a1b2c3d');
    expect(ownerTagOf(link('nni-0a1b2c3d', { master: 'nodenet0' }))).toBe('nodenet:nni-0a1b2c3d');
    expect(ownerTagOf(link('nnh-0a1b2c3d'))).toBeUndefined(); // not on the CNI
    expect(ownerTagOf(link('nnh-0a1b2c3d', { master: 'br0' }))).toBeUndefined();
    expect(ownerTagOf(link('nnh-0A1B2C3D', { master: 'nodenet0' }))).toBeUndefined();
    expect(ownerTagOf(link('veth123', { master: 'nodenet0' }))).toBeUndefined();
    expect(ownerTagOf(link('eth0', { alias: 'uplink' }))).toBeUndefined();
  });

  it('claims a TAP cut short between `tuntap add` and its tag (a tun named with a handle, on no bridge), never a veth end', async () => {
    const { ownerTagOf } = await import('../src/scripts.js');
    const link = (ifname: string, extra: Record<string, unknown> = {}) => ({ ifname, ...extra }) as never;
    expect(ownerTagOf(link('nni-0a1b2c3d', { linkinfo: { kind: 'tun' } }))).toBe('nodenet:nni-0a1b2c3d');
    expect(ownerTagOf(link('nni-0a1b2c3d', { linkinfo: { kind: 'veth' } }))).toBeUndefined();
    expect(ownerTagOf(link('nni-0a1b2c3d'))).toBeUndefined(); // kind unknown (no -d)
    expect(ownerTagOf(link('nnh-0a1b2c3d', { linkinfo: { kind: 'tun' } }))).toBeUndefined();
    expect(ownerTagOf(link('nni-0a1b2c3d', { linkinfo: { kind: 'tun' }, master: 'br0' }))).toBeUndefined();
    expect(ownerTagOf(link('tap0', { linkinfo: { kind: 'tun' } }))).toBeUndefined();
  });
});
