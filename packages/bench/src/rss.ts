import { readFile } from 'node:fs/promises';

/** Resident set size of a process in MB (10^6 bytes; VmRSS from /proc/PID/status). */
export async function rssMB(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return (Number(m[1]) * 1024) / 1e6;
}
