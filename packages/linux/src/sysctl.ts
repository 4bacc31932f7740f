/**
 * Kernel settings of the node namespace. In the process's own namespace they are read and written through
 * /proc/sys directly (no process); /proc/sys/net shows the namespace of the process that opens it, so for
 * another namespace one `sysctl` runs inside it. ensureCni reads them first and writes only what differs:
 * it runs every reconcile interval and must change nothing when all is right.
 */
import { readFile, writeFile } from 'node:fs/promises';
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

/**
 * The settings the CNI needs: forwarding, 127.0.0.1 DNAT through the bridge; IPv6 on the bridge only when the
 * CNI holds an IPv6 subnet (`ipv6`), then with IPv6 forwarding and without router advertisements or SLAAC.
 */
export function cniSysctls(cniName: string, ipv6 = false): SysctlSetting[] {
  const common: SysctlSetting[] = [
    { path: ['net', 'ipv4', 'ip_forward'], value: '1' },
    // Lets the nftables layer DNAT connections the node makes to 127.0.0.1:PORT out through the bridge.
    { path: ['net', 'ipv4', 'conf', cniName, 'route_localnet'], value: '1' },
  ];
  if (!ipv6) {
    // Without an IPv6 subnet an instance could otherwise reach the node's IPv6 services through the bridge.
    return [...common, { path: ['net', 'ipv6', 'conf', cniName, 'disable_ipv6'], value: '1', optional: true }];
  }
  return [
    ...common,
    { path: ['net', 'ipv6', 'conf', cniName, 'disable_ipv6'], value: '0' },
    // Forwarding for every link of the node's namespace, as ip_forward is for IPv4 (the kernel has no
    // per-link IPv6 forwarding switch that routes: conf.all is it).
    { path: ['net', 'ipv6', 'conf', 'all', 'forwarding'], value: '1' },
    // The bridge is the instances' router: it takes no router advertisements and configures no addresses itself.
    { path: ['net', 'ipv6', 'conf', cniName, 'accept_ra'], value: '0' },
    { path: ['net', 'ipv6', 'conf', cniName, 'autoconf'], value: '0' },
  ];
}

/**
 * The key as `sysctl` prints it: components joined by dots, a dot inside a component shown as `/`
 * (procps' own convention, e.g. `net.ipv4.conf.br/1.route_localnet` for the device `br.1`).
 */
export function sysctlKey(setting: Pick<SysctlSetting, 'path'>): string {
  return setting.path.map((c) => c.replace(/\./g, '/')).join('.');
}

/** `sysctl` takes `/` as separator when the key starts with it in that form, keeping dots in names literal. */
export function sysctlArgs(settings: readonly SysctlSetting[]): string[] {
  // -e: ignore unknown keys (only the optional ones can be unknown: the CNI exists when this runs).
  return ['-q', '-w', '-e', ...settings.map((s) => `${s.path.join('/')}=${s.value}`)];
}

/** Reads the keys (path form); -e leaves unknown keys out of the output instead of failing. */
export function sysctlReadArgs(settings: readonly SysctlSetting[]): string[] {
  return ['-e', ...settings.map((s) => s.path.join('/'))];
}

/** Current values by sysctlKey; a key that does not exist is absent from the map. */
export type SysctlValues = ReadonlyMap<string, string>;

/** Parses `sysctl` (without -n) output: one `key = value` line per key that exists. */
export function parseSysctlOutput(stdout: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf(' = ');
    if (eq <= 0) continue;
    values.set(line.slice(0, eq).trim(), line.slice(eq + 3).trim());
  }
  return values;
}

/** One setting whose current value differs from the wanted one (`found` undefined: the key does not exist). */
export interface SysctlDrift {
  readonly setting: SysctlSetting;
  readonly found: string | undefined;
}

/** The settings to write: every one whose value differs, absent ones included (the caller decides about those). */
export function sysctlDrift(settings: readonly SysctlSetting[], current: SysctlValues): SysctlDrift[] {
  return settings.flatMap((setting) => {
    const found = current.get(sysctlKey(setting));
    return found === setting.value ? [] : [{ setting, found }];
  });
}

/** The repair line of a drifted setting, e.g. `net.ipv4.ip_forward was 0: set to 1`. */
export function describeSysctlRepair(drift: SysctlDrift): string {
  const key = sysctlKey(drift.setting);
  return drift.found === undefined
    ? `${key} was missing: set to ${drift.setting.value}`
    : `${key} was ${drift.found}: set to ${drift.setting.value}`;
}

/** Reads the settings' current values: /proc/sys files in the own namespace, one `sysctl` process in another. */
export async function readSysctls(netns: NetnsRef | undefined, settings: readonly SysctlSetting[], step: string): Promise<SysctlValues> {
  if (settings.length === 0) return new Map();
  if (netns !== undefined) {
    const { file, args } = commandInNamespace(netns, 'sysctl', sysctlReadArgs(settings));
    return parseSysctlOutput((await run(file, args, { step })).stdout);
  }
  const read = await Promise.all(
    settings.map(async (s): Promise<[string, string] | undefined> => {
      const path = `/proc/sys/${s.path.join('/')}`;
      try {
        return [sysctlKey(s), (await readFile(path, 'utf8')).trim()];
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new InternalError(step, `could not read ${sysctlKey(s)} (${path}): ${(e as Error).message}`, { cause: e });
      }
    }),
  );
  return new Map(read.filter((entry): entry is [string, string] => entry !== undefined));
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
