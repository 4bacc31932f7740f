import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CNI_NAME, Ipv6Subnet, Subnet, macForAddress, parseIpv4Address, type CniSpec, type Ipv6Address } from '@nodenet/core';
import { instanceSpecFor } from '@nodenet/testkit/instance-specs';
import { helperLineFraming } from '@nodenet/sys';
import { NETNS_HELPER_PATH, helperAddressFields } from '../src/netns-configurator.js';

describe('the namespace configurator session', () => {
  it("a request's answer is what the helper printed before its `done N` line (whole lines only)", () => {
    expect(helperLineFraming.marker(7)).toBe('mark 7\n');
    expect(helperLineFraming.find('done 7\n', 7)).toEqual({ output: '', consumed: 7 });
    const text = 'fail default-route RTNETLINK answers: File exists\ndone 8\ndone 9\n';
    expect(helperLineFraming.find(text, 8)).toEqual({
      output: 'fail default-route RTNETLINK answers: File exists',
      consumed: text.indexOf('done 9'),
    });
    expect(helperLineFraming.find('done 1', 1)).toBeNull(); // not a whole line yet
    expect(helperLineFraming.find('xdone 1\n', 1)).toBeNull();
    expect(helperLineFraming.find('done 12\n', 1)).toBeNull();
  });

  it('the helper ships where the code looks for it (beside src/ and dist/)', () => {
    expect(existsSync(NETNS_HELPER_PATH)).toBe(true);
  });
});

describe("the helper's address fields", () => {
  const gateway = parseIpv4Address('198.19.1.1', 'gateway');
  const gateway6 = 'fd19:0:0:1::1' as Ipv6Address;
  const v4 = { gateway, subnet: Subnet.of('198.19.1.0/24') };
  const v6 = { gateway: gateway6, subnet: Ipv6Subnet.of('fd19:0:0:1::/64') };
  const cni = (nets: Pick<CniSpec, 'ipv4' | 'ipv6'>): CniSpec => ({ name: CNI_NAME, ...nets, mtu: 1450, mac: macForAddress(gateway) });

  it('one group per family (IPv4: address, prefix, broadcast, gateway; IPv6: address, prefix, gateway), `-` for a family it lacks', () => {
    expect(helperAddressFields(instanceSpecFor(cni({ ipv4: v4, ipv6: v6 }), 1, 7), 'step')).toEqual([
      '198.19.1.7',
      '24',
      '198.19.1.255',
      '198.19.1.1',
      'fd19:0:0:1::7',
      '64',
      'fd19:0:0:1::1',
    ]);
    expect(helperAddressFields(instanceSpecFor(cni({ ipv4: v4 }), 1, 7), 'step')).toEqual([
      '198.19.1.7',
      '24',
      '198.19.1.255',
      '198.19.1.1',
      '-',
      '-',
      '-',
    ]);
    expect(helperAddressFields(instanceSpecFor(cni({ ipv6: v6 }), 1, 7), 'step')).toEqual([
      '-',
      '-',
      '-',
      '-',
      'fd19:0:0:1::7',
      '64',
      'fd19:0:0:1::1',
    ]);
  });
});
