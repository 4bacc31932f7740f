/**
 * Who on the node may reach the daemon and its files: the unix socket's mode and group (`socketMode`,
 * `socketGroup`), and the refusal to run from a world-writable config file or state directory (anyone on
 * the node could then decide what the daemon does to the network).
 */
import { chmod, chown, lstat, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { run } from '@nodenet/sys';

const octal = (mode: number) => `0${(mode & 0o7777).toString(8)}`;

/**
 * A problem (for a ConfigError) when `path` exists and every user may write it; undefined otherwise (also
 * when it does not exist yet: the daemon creates it with its own mode).
 */
export async function worldWritableProblem(path: string, what: string): Promise<string | undefined> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  if ((mode & 0o002) === 0) return undefined;
  return `${what} ${path} is world-writable (mode ${octal(mode)}): any user on this node could change what nodenetd does to the network: run chmod o-w ${path} (and keep it owned by root)`;
}

/** The gid of `socketGroup` (a gid is taken as is; a name is looked up with getent, so NSS groups work). */
export async function resolveSocketGroup(group: string | number): Promise<{ gid: number } | { problem: string }> {
  if (typeof group === 'number') return { gid: group };
  // The name passed config validation (letters, digits, '_', '-', '.'), so it is safe as an argument.
  const r = await run('getent', ['group', group], { step: 'look up socketGroup', okExitCodes: [2] });
  const gid = Number(r.stdout.split(':')[2]);
  if (r.exitCode === 2 || !Number.isInteger(gid))
    return {
      problem: `there is no group '${group}' on this node (getent group ${group} found none): create it (groupadd ${group}) or give a gid`,
    };
  return { gid };
}

/**
 * Makes the socket's directory. Directories the daemon creates are 0700, or 0750 owned by the socket's
 * group so that group can reach the socket; one that exists is left alone, and the returned warning says
 * when the group cannot pass through it.
 */
export async function prepareSocketDirectory(dir: string, gid: number | undefined): Promise<string | undefined> {
  const created = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (gid === undefined) return undefined;
  if (created !== undefined) {
    // Every directory made here, from the first one created down to the socket's own.
    for (let d = dir; ; d = dirname(d)) {
      await chown(d, process.getuid?.() ?? 0, gid);
      await chmod(d, 0o750);
      if (d === created || d === dirname(d)) break;
    }
    return undefined;
  }
  const st = await stat(dir);
  const groupMayPass = (st.gid === gid && (st.mode & 0o010) !== 0) || (st.mode & 0o001) !== 0;
  return groupMayPass
    ? undefined
    : `the socket's directory ${dir} (mode ${octal(st.mode)}, gid ${st.gid}) does not let group ${gid} through: socketGroup's members cannot reach the socket; run chgrp ${gid} ${dir} && chmod g+x ${dir}`;
}

/** Gives the bound socket its group, then its mode (the group first, so the mode never applies to the wrong group). */
export async function applySocketAccess(path: string, mode: number, gid: number | undefined): Promise<void> {
  if (!(await lstat(path)).isSocket()) throw new Error(`${path} is not a socket`);
  if (gid !== undefined) await chown(path, process.getuid?.() ?? 0, gid);
  await chmod(path, mode);
}
