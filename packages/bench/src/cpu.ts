/**
 * CPU time a process used (user + system), optionally with its reaped children (`cutime`/`cstime`): what
 * the daemon spent itself plus every `ip`/`nft`/`conntrack` it ran; what a runtime spent on the plugin
 * processes it ran (and their own children, e.g. iptables). Kernel work in softirqs and kernel threads
 * (RCU, namespace teardown) is not counted.
 */
import { readFile } from 'node:fs/promises';
import { exec } from '@nodenet/testkit';

let ticksPerSecond: number | undefined;

async function clockTicks(): Promise<number> {
  if (ticksPerSecond === undefined) {
    const r = await exec('getconf', ['CLK_TCK'], { allowFailure: true });
    const n = Number(r.stdout.trim());
    ticksPerSecond = Number.isInteger(n) && n > 0 ? n : 100;
  }
  return ticksPerSecond;
}

export interface CpuTimes {
  /** The process's own user + system time, ms. */
  readonly selfMs: number;
  /** Its waited-for children's, ms. */
  readonly childrenMs: number;
}

/** Parses /proc/PID/stat (the command may contain spaces and parentheses: fields count from the last ')'). */
export function parseProcStat(stat: string, ticks: number): CpuTimes {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime, stime, cutime, cstime are fields 14..17.
  const field = (n: number) => Number(rest[n - 3]);
  return { selfMs: ((field(14) + field(15)) * 1000) / ticks, childrenMs: ((field(16) + field(17)) * 1000) / ticks };
}

export async function cpuTimes(pid: number | undefined): Promise<CpuTimes | undefined> {
  if (pid === undefined) return undefined;
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'), await clockTicks());
  } catch {
    return undefined;
  }
}
