/**
 * The ADD result in the form of the config's cniVersion (SPEC "Success"): the container's interface (name,
 * mac, sandbox), one address per family it has (IPv4 first), each referring to that interface, a default
 * route per family via the node's gateway of that family, and the config's dns passed through. Chained
 * plugins (tuning, bandwidth, portmap) read it as prevResult.
 */
import { addressFamily } from '@nodenet/core';
import type { CniVersion } from './conf.js';

/** One address of the attachment: the address, its subnet's prefix length, and the gateway of its family. */
export interface AttachmentIp {
  readonly address: string;
  readonly prefixLength: number;
  readonly gateway: string;
}

export interface AttachmentView {
  readonly ifname: string;
  readonly mac: string;
  readonly netns: string;
  /** At least one; IPv4 first. */
  readonly ips: readonly AttachmentIp[];
  readonly mtu: number;
}

export function cniResult(version: CniVersion, a: AttachmentView, dns: Record<string, unknown> | undefined): Record<string, unknown> {
  const legacy = version === '0.3.1' || version === '0.4.0';
  const iface: Record<string, unknown> = { name: a.ifname, mac: a.mac, sandbox: a.netns };
  if (version === '1.1.0') iface.mtu = a.mtu;
  return {
    cniVersion: version,
    interfaces: [iface],
    ips: a.ips.map((ip) => ({
      ...(legacy ? { version: String(addressFamily(ip.address)) } : {}),
      address: `${ip.address}/${ip.prefixLength}`,
      gateway: ip.gateway,
      interface: 0,
    })),
    routes: a.ips.map((ip) => ({ dst: addressFamily(ip.address) === 6 ? '::/0' : '0.0.0.0/0', gw: ip.gateway })),
    dns: dns ?? {},
  };
}
