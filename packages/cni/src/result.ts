/**
 * The ADD result in the form of the config's cniVersion (SPEC "Success"): the container's interface (name,
 * mac, sandbox), its address referring to that interface, the default route via the node's gateway, and
 * the config's dns passed through. Chained plugins (tuning, bandwidth, portmap) read it as prevResult.
 */
import type { CniVersion } from './conf.js';

export interface AttachmentView {
  readonly ifname: string;
  readonly mac: string;
  readonly netns: string;
  readonly address: string;
  readonly prefixLength: number;
  readonly gateway: string;
  readonly mtu: number;
}

export function cniResult(version: CniVersion, a: AttachmentView, dns: Record<string, unknown> | undefined): Record<string, unknown> {
  const legacy = version === '0.3.1' || version === '0.4.0';
  const iface: Record<string, unknown> = { name: a.ifname, mac: a.mac, sandbox: a.netns };
  if (version === '1.1.0') iface.mtu = a.mtu;
  return {
    cniVersion: version,
    interfaces: [iface],
    ips: [{ ...(legacy ? { version: '4' } : {}), address: `${a.address}/${a.prefixLength}`, gateway: a.gateway, interface: 0 }],
    routes: [{ dst: '0.0.0.0/0', gw: a.gateway }],
    dns: dns ?? {},
  };
}
