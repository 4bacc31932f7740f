/**
 * Small helpers that @nodenet/backend-iproute2 has but does not export yet (readNetnsId from
 * netns-identity.ts; readSysctls / sysctlDrift / describeSysctlRepair from sysctl.ts). Same behaviour; to be
 * replaced by imports once that package's index exports them.
 */
import { stat } from 'node:fs/promises';
import { InternalError, type NetnsRef } from '@nodenet/core';
import { commandInNamespace, type SysctlSetting } from '@nodenet/backend-iproute2';
import { run } from '@nodenet/sys';

const GONE_CODES = new Set(['ENOENT', 'ENOTDIR', 'ESRCH']);

/** `DEV:INODE` of the namespace file at `path`, or null when there is none. */
export async function readNetnsId(path: string): Promise<string | null> {
  try {
    const st = await stat(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch (e) {
    if (GONE_CODES.has((e as NodeJS.ErrnoException).code ?? '')) return null;
    throw new InternalError(`read the identity of namespace ${path}`, `stat ${path} failed: ${(e as Error).message}`, { cause: e });
  }
}

/** The key as `sysctl` prints it (a dot inside a component shown as `/`). */
export function sysctlKey(setting: Pick<SysctlSetting, 'path'>): string {
  return setting.path.map((c) => c.replace(/\./g, '/')).join('.');
}

/** Current values by key (one `sysctl -e` in the namespace; unknown keys are absent). */
export async function readSysctls(netns: NetnsRef | undefined, settings: readonly SysctlSetting[], step: string): Promise<Map<string, string>> {
  const values = new Map<string, string>();
  if (settings.length === 0) return values;
  const { file, args } = commandInNamespace(netns, 'sysctl', ['-e', ...settings.map((s) => s.path.join('/'))]);
  for (const line of (await run(file, args, { step })).stdout.split('\n')) {
    const eq = line.indexOf(' = ');
    if (eq > 0) values.set(line.slice(0, eq).trim(), line.slice(eq + 3).trim());
  }
  return values;
}

export interface SysctlDrift {
  readonly setting: SysctlSetting;
  readonly found: string | undefined;
}

export function sysctlDrift(settings: readonly SysctlSetting[], current: ReadonlyMap<string, string>): SysctlDrift[] {
  return settings.flatMap((setting) => {
    const found = current.get(sysctlKey(setting));
    return found === setting.value ? [] : [{ setting, found }];
  });
}

export function describeSysctlRepair(drift: SysctlDrift): string {
  const key = sysctlKey(drift.setting);
  return drift.found === undefined ? `${key} was missing: set to ${drift.setting.value}` : `${key} was ${drift.found}: set to ${drift.setting.value}`;
}
