// The vxlan endpoint's checks of the node, stated once in core for both backends' overlays.
import { describe, expect, it } from 'vitest';
import {
  FailedPreconditionError,
  MIN_IPV4_MTU,
  Subnet,
  VXLAN_OVERHEAD,
  checkVxlanUnderlay,
  parseIpv4Address,
  parseNodeRecord,
  type HostInfo,
} from '@nodenet/core';

const host: HostInfo = {
  underlayAddress: parseIpv4Address('198.18.0.1', 'underlay'),
  underlayInterface: 'u0',
  underlayMtu: 1500,
  localNetworks: [{ interface: 'u0', subnet: Subnet.of('198.18.0.0/24') }],
};
const self = parseNodeRecord({ name: 'node-1', underlayAddress: '198.18.0.1', subnet: '198.19.1.0/24' }, 'self');

describe('checkVxlanUnderlay', () => {
  it('leaves the underlay MTU less the VXLAN overhead to the instances', () => {
    expect(checkVxlanUnderlay(self, host)).toBe(1450);
    expect(checkVxlanUnderlay(self, { ...host, underlayMtu: MIN_IPV4_MTU + VXLAN_OVERHEAD })).toBe(MIN_IPV4_MTU);
  });

  it('refuses an underlay MTU that leaves less than IPv4 needs, naming the interface and what to do', () => {
    const check = () => checkVxlanUnderlay(self, { ...host, underlayMtu: MIN_IPV4_MTU + VXLAN_OVERHEAD - 1 });
    expect(check).toThrow(FailedPreconditionError);
    expect(check).toThrow(
      /the underlay u0 has MTU 117, too small for VXLAN \(it adds 50 bytes over an IPv4 underlay; IPv4 needs 68\): raise the underlay MTU/,
    );
  });

  it("refuses a record whose underlay address is not the host's", () => {
    const other = parseNodeRecord({ name: 'node-1', underlayAddress: '198.18.0.9', subnet: '198.19.1.0/24' }, 'self');
    expect(() => checkVxlanUnderlay(other, host)).toThrow(FailedPreconditionError);
    expect(() => checkVxlanUnderlay(other, host)).toThrow(/underlay address 198\.18\.0\.9, but the host's underlay is 198\.18\.0\.1 on u0/);
  });
});
