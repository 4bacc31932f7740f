/**
 * CniBridgeSet against a scripted `ip` (pure logic: which listings may forget an overflow bridge). The kernel
 * side of overflow bridges is tested in overflow.int.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { CNI_NAME, Subnet, macForAddress, parseIpv4Address, silentLogger, type CniSpec, type IfName } from '@nodenet/core';
import type { IpLine, IpRunner } from '@nodenet/linux';
import { CniBridgeSet } from '../src/cni-bridge-set.js';
import { OVERFLOW_BRIDGE_ALIAS } from '../src/cni-bridges.js';

const gateway = parseIpv4Address('198.19.4.1', 'gateway');
const cni: CniSpec = { name: CNI_NAME, ipv4: { gateway, subnet: Subnet.of('198.19.4.0/24') }, mtu: 1400, mac: macForAddress(gateway) };

/** The links of a scripted node: the CNI, and overflow bridge nodenet0b1 once a batch made it. */
class ScriptedIp {
  bridgesMade = 0;
  reads = 0;
  private made = false;

  links(): unknown[] {
    return [
      { ifindex: 2, ifname: CNI_NAME, flags: ['UP'], mtu: 1400, ifalias: 'nodenet:cni' },
      ...(this.made ? [{ ifindex: 3, ifname: `${CNI_NAME}b1`, flags: ['UP'], mtu: 1400, ifalias: OVERFLOW_BRIDGE_ALIAS }] : []),
    ];
  }

  runner(): IpRunner {
    return {
      json: async () => {
        this.reads++;
        return this.links();
      },
      batch: async (lines: readonly IpLine[]) => {
        if (lines.some((l) => l.args.join(' ') === `link add name ${CNI_NAME}b1 type bridge`)) {
          if (this.made) throw new Error('RTNETLINK answers: File exists');
          this.made = true;
          this.bridgesMade++;
        }
        return [];
      },
    } as unknown as IpRunner;
  }
}

const port = (n: number) => `nnh-${n.toString(16).padStart(8, '0')}` as IfName;

/** A set on the scripted node with one port per bridge, so the second port needs overflow bridge nodenet0b1. */
const bridgeSetOn = (ip: ScriptedIp) =>
  new CniBridgeSet(
    ip.runner(),
    CNI_NAME,
    1,
    silentLogger,
    () => {},
    async () => {},
  );

describe('CniBridgeSet', () => {
  it('a listing that started before an overflow bridge was made does not make the next port make it again', async () => {
    const ip = new ScriptedIp();
    const set = bridgeSetOn(ip);
    expect((await set.place(port(1), cni)).index).toBe(0);
    // A reconcile listing starts (the bridge is not there yet), then a create makes the bridge ...
    const listing = set.listingStarts();
    const before: never[] = [];
    expect((await set.place(port(2), cni)).bridge).toBe(`${CNI_NAME}b1`);
    // ... and the listing's answer arrives after: it must not count as "the bridge is gone".
    set.noteListing(before, listing);
    set.release(port(2));
    const reads = ip.reads;
    expect((await set.place(port(3), cni)).bridge).toBe(`${CNI_NAME}b1`);
    expect(ip.reads).toBe(reads); // known ready: not even read again
    expect(ip.bridgesMade).toBe(1);
  });

  it('a listing started after the bridge was made and not showing it has the next port check it again', async () => {
    const ip = new ScriptedIp();
    const set = bridgeSetOn(ip);
    await set.place(port(1), cni);
    await set.place(port(2), cni);
    const listing = set.listingStarts();
    // Deleted behind the daemon's back: the listing does not show it.
    set.noteListing([{ ifname: CNI_NAME, alias: 'nodenet:cni' }] as never, listing);
    // The next port on it checks it again (one read; the scripted kernel still has it, so nothing is made).
    const reads = ip.reads;
    set.release(port(2));
    expect((await set.place(port(3), cni)).bridge).toBe(`${CNI_NAME}b1`);
    expect(ip.reads).toBe(reads + 1);
  });
});
