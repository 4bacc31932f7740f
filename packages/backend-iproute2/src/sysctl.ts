/**
 * Kernel settings of the node namespace. In the process's own namespace they are written to /proc/sys
 * directly (no process); /proc/sys/net shows the namespace of the process that opens it, so for another
 * namespace one `sysctl -w` runs inside it.
 */
import { writeFile } from 'node:fs/promises';
import { InternalError, type NetnsRef } from '@nodenet/core';
import { run } from '@nodenet/sys';
import { commandInNamespace } from './ip-batch.js';

export interface SysctlSetting {
  /** Path components under /proc/sys, e.g. ['net', 'ipv4', 'conf', 'nodenet0', 'route_localnet'] (names may hold dots). */
  readonly path: readonly string[];
  readonly value: string;
  /** Absent keys are fine (e.g. IPv6 settings on a kernel without IPv6). */
  readonly optional?: boolean;
}

/** The settings the CNI needs: forwarding, 127.0.0.1 DNAT through the bridge, no IPv6 on the bridge. */
export function cniSysctls(cniName: string): SysctlSetting[] {
  return [
    { path: ['net', 'ipv4', 'ip_forward'], value: '1' },
    // Lets the nftables layer DNAT connections the node makes to 127.0.0.1:PORT out through the bridge.
    { path: ['net', 'ipv4', 'conf', cniName, 'route_localnet'], value: '1' },
    // nodenet is IPv4-only: without this an instance could reach the node's IPv6 services through the bridge.
    { path: ['net', 'ipv6', 'conf', cniName, 'disable_ipv6'], value: '1', optional: true },
  ];
}

/** `sysctl` takes `/` as separator when the key starts with it in that form, keeping dots in names literal. */
export function sysctlArgs(settings: readonly SysctlSetting[]): string[] {
  // -e: ignore unknown keys (only the optional ones can be unknown: the CNI exists when this runs).
  return ['-q', '-w', '-e', ...settings.map((s) => `${s.path.join('/')}=${s.value}`)];
}

export async function writeSysctls(netns: NetnsRef | undefined, settings: readonly SysctlSetting[], step: string): Promise<void> {
  if (settings.length === 0) return;
  if (netns !== undefined) {
    const { file, args } = commandInNamespace(netns, 'sysctl', sysctlArgs(settings));
    await run(file, args, { step });
    return;
  }
  for (const s of settings) {
    const file = `/proc/sys/${s.path.join('/')}`;
    try {
      await writeFile(file, s.value);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (s.optional && code === 'ENOENT') continue;
      throw new InternalError(step, `could not set ${s.path.join('.')} = ${s.value} (${file}): ${(e as Error).message}`, { cause: e });
    }
  }
}
