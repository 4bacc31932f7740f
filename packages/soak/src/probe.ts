/**
 * Reads the soak's metrics from the running system: the daemon's /proc entries, nodenet's nftables sets
 * in the node namespace, and the state directory on disk. (RSS: the bench's rssMB.)
 */
import { readdir, readFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { nsExec } from '@nodenet/testkit';
import { TABLE, parseAllowedSources, parsePublishedPorts } from '@nodenet/nftables';

export async function openFds(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** Live processes whose parent is `pid` (zombies included: an unreaped child is a leak too). */
export async function childProcesses(pid: number): Promise<number> {
  let n = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so parse after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) === pid) n += 1;
  }
  return n;
}

/** Elements of nodenet's published_ports map and allowed_sources set (0 when a table is missing). */
export async function nftElements(ns: string): Promise<{ publishedPorts: number; allowedSources: number }> {
  const list = async (family: string): Promise<string> => {
    const r = await nsExec(ns, 'nft', ['-j', 'list', 'table', family, TABLE], { allowFailure: true });
    return r.exitCode === 0 ? r.stdout : '';
  };
  const [ip, bridge] = await Promise.all([list('ip'), list('bridge')]);
  return {
    publishedPorts: ip ? (parsePublishedPorts(ip)?.length ?? 0) : 0,
    allowedSources: bridge ? (parseAllowedSources(bridge)?.length ?? 0) : 0,
  };
}

/** Lines of a text file (0 when it does not exist). */
export async function lineCount(path: string): Promise<number> {
  try {
    const text = await readFile(path, 'utf8');
    return text.split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

/** Total bytes and number of regular files under `dir` (recursively); 0/0 when it does not exist. */
export async function directorySize(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  const walk = async (d: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const path = join(d, e.name);
      if (e.isDirectory()) await walk(path);
      else if (e.isFile()) {
        try {
          bytes += (await lstat(path)).size;
          files += 1;
        } catch {
          // removed meanwhile
        }
      }
    }
  };
  await walk(dir);
  return { bytes, files };
}
