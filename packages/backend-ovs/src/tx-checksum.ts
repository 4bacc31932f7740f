/**
 * netdev only: turning off transmit checksum offload on an instance's veth end.
 *
 * A veth offloads TCP/UDP checksums (and segmentation) to "the hardware": packets an instance sends carry
 * only a partial checksum, which the kernel completes wherever the packet leaves a real device. The
 * userspace datapath reads the host end through a packet socket and gets the packet as it is, partial
 * checksum included; OVS 3.1 forwards it unchanged (measured: every TCP segment between two instances, and
 * to the gateway, arrives with a wrong checksum and is dropped; with OVS's userspace-tso-enable instead,
 * tunnel ports drop such packets: "Tunneling packets with HW offload flags is not supported"). With the
 * offload off on the instance end, the instance's kernel computes full checksums and segments before the
 * veth, and everything works (measured: TCP local, to the gateway and across the VXLAN overlay).
 *
 * The setting is a property of the device and survives its move into the instance's namespace, so it is
 * set right after creation. There is no iproute2 command for it (it is the ethtool ioctl, ETHTOOL_STXCSUM),
 * ethtool is not always installed, and Node cannot issue ioctls: perl (essential on Debian) does it in one
 * short process, with the interface names as arguments (never interpolated into code).
 */
import { fileURLToPath } from 'node:url';
import { InternalError, parseIfName, type IfName, type NetnsRef } from '@nodenet/core';
import { commandInNamespace, helperLineFraming } from '@nodenet/linux';
import { CommandSession, runLean } from '@nodenet/sys';

/** SIOCETHTOOL with ETHTOOL_STXCSUM (0x17), data 0; `struct ifreq` is 40 bytes: name[16], then a pointer. */
export const TX_CHECKSUM_OFF_PERL = [
  'use strict; use Socket;',
  'socket(my $s, AF_INET, SOCK_DGRAM, 0) or die "socket: $!\\n";',
  'for my $if (@ARGV) { my $v = pack("LL", 0x17, 0); ioctl($s, 0x8946, pack("Z16 P x16", $if, $v)) or die "$if: $!\\n"; }',
].join(' ');

/** The argument list for `perl` (run inside the namespace that holds the interfaces). */
export function txChecksumOffArgs(ifnames: readonly IfName[]): string[] {
  return ['-e', TX_CHECKSUM_OFF_PERL, '--', ...ifnames.map((n) => parseIfName(n, 'ifname'))];
}

/**
 * Runs once per create on the userspace datapath: through runLean (see @nodenet/sys). A namespace path
 * runs perl through `nsenter --net`, cheaper than `ip netns exec` for a name (no mount namespace to make).
 */
export async function disableTxChecksum(netns: NetnsRef | undefined, ifnames: readonly IfName[], step: string): Promise<void> {
  const { file, args } = commandInNamespace(netns, 'perl', txChecksumOffArgs(ifnames));
  await runLean(file, args, { step });
}

/**
 * The long-lived form (helpers/tx-checksum.pl beside src/ and dist/, listed in the package's `files`): one
 * perl in the node namespace for the daemon's life, entering an instance's namespace per request, instead
 * of a perl (and an nsenter) per create, whose start cost a create ~2-5 ms of CPU and, on a loaded node,
 * tens of milliseconds on its critical path.
 */
export const TX_CHECKSUM_HELPER_PATH = fileURLToPath(new URL('../helpers/tx-checksum.pl', import.meta.url));

/** The helper could not enter the namespace (gone, or never there): callers say NOT_FOUND for it. */
export class ChecksumNamespaceError extends InternalError {}

export class TxChecksumSession {
  private readonly session: CommandSession;

  constructor(nodeNetns: NetnsRef | undefined, helper: readonly [string, ...string[]] = ['perl', TX_CHECKSUM_HELPER_PATH]) {
    const { file, args } = commandInNamespace(nodeNetns, helper[0], helper.slice(1));
    this.session = new CommandSession({
      name: `the checksum-offload helper (${[file, ...args].join(' ')})`,
      file,
      args,
      framing: helperLineFraming,
    });
  }

  /** Turns checksum offload off on `ifnames` in the namespace at `netnsPath` (undefined: the node's). */
  async off(netnsPath: string | undefined, ifnames: readonly IfName[], step: string): Promise<void> {
    if (netnsPath !== undefined && (!netnsPath.startsWith('/') || /[\t\n\r\0]/.test(netnsPath)))
      throw new InternalError(step, `refusing to send ${JSON.stringify(netnsPath)} to the checksum-offload helper`);
    const fields = ['tx-checksum-off', netnsPath ?? '-', ...ifnames.map((n) => parseIfName(n, 'ifname'))];
    const answer = await this.session.request(`${fields.join('\t')}\n`, step);
    if (answer === '') return;
    const failure = /^fail (\S+) (.*)$/m.exec(answer);
    if (failure?.[1] === 'open-namespace') throw new ChecksumNamespaceError(step, failure[2]!);
    throw new InternalError(step, failure?.[2] ?? answer);
  }

  close(): void {
    this.session.close();
  }
}
