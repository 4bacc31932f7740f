/**
 * Namespaces for the integration tests: unique names (`nnt-PID-N`), a node namespace with an underlay veth
 * to a "world" namespace, anonymous namespaces held by a `sleep` process, and cleanup of all of it. Nothing
 * here touches the root namespace's links, addresses, routes or sysctls.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@nodenet/sys';

let counter = 0;

export async function sh(file: string, args: string[], input?: string): Promise<string> {
  return (await run(file, args, { step: `test: ${file} ${args.join(' ')}`, ...(input === undefined ? {} : { input }) })).stdout;
}

/** Runs `ip -j ARGS` in a namespace (a name, a path, or the node) and parses the output. */
export async function ipJson<T = Record<string, unknown>[]>(ns: string, args: string[]): Promise<T> {
  const out = ns.startsWith('/') ? await sh('nsenter', [`--net=${ns}`, 'ip', '-j', ...args]) : await sh('ip', ['-n', ns, '-j', ...args]);
  return (out.trim() === '' ? [] : JSON.parse(out)) as T;
}

/**
 * Exit status of a ping from a namespace: 0 when one of three probes (`ping -c1 -W1` each, so ~3 s in all
 * when nothing answers, as one `-w 3` probe took) got a reply. Three probes, because a link just made or
 * repaired may lose the very first frame (a bridge port still being set up), which says nothing about
 * whether traffic flows.
 */
export async function ping(ns: string, address: string): Promise<number> {
  const prefix = ns.startsWith('/') ? ['nsenter', `--net=${ns}`] : ['ip', 'netns', 'exec', ns];
  let exitCode = 1;
  for (let probe = 0; probe < 3 && exitCode !== 0; probe++) {
    const r = await run(prefix[0]!, [...prefix.slice(1), 'ping', '-n', '-q', '-c', '1', '-W', '1', address], {
      step: 'test: ping',
      okExitCodes: [1, 2],
    });
    exitCode = r.exitCode;
  }
  return exitCode;
}

export interface Sleeper {
  readonly pid: number;
  /** /proc/PID/ns/net of a namespace that has no name under /run/netns. */
  readonly path: string;
}

export class TestNamespaces {
  private readonly names: string[] = [];
  private readonly sleepers: ChildProcess[] = [];

  /** A fresh, empty, named namespace. */
  async add(label: string): Promise<string> {
    const name = `nnt-${process.pid}-${++counter}${label ? `-${label}` : ''}`.slice(0, 60);
    this.names.push(name);
    await sh('ip', ['netns', 'add', name]);
    return name;
  }

  /** Many fresh namespaces in one `ip -batch` process. */
  async addMany(count: number, label: string): Promise<string[]> {
    const names = Array.from({ length: count }, () => `nnt-${process.pid}-${++counter}-${label}`);
    this.names.push(...names);
    await sh('ip', ['-batch', '-'], names.map((n) => `netns add ${n}`).join('\n') + '\n');
    return names;
  }

  /**
   * A node namespace with lo up and underlay `u0` 198.18.0.1/24 (MTU `mtu`), whose peer `w0` 198.18.0.100/24
   * sits in a world namespace; the node's default route goes via 198.18.0.100.
   */
  async addNode(mtu = 1500): Promise<{ node: string; world: string }> {
    const node = await this.add('node');
    const world = await this.add('world');
    await sh(
      'ip',
      ['-n', node, '-batch', '-'],
      [
        'link set dev lo up',
        `link add u0 mtu ${mtu} type veth peer name w0 mtu ${mtu} netns /run/netns/${world}`,
        'address add 198.18.0.1/24 dev u0',
        'link set dev u0 up',
        'route add default via 198.18.0.100 dev u0',
        '',
      ].join('\n'),
    );
    await sh(
      'ip',
      ['-n', world, '-batch', '-'],
      ['link set dev lo up', 'address add 198.18.0.100/24 dev w0', 'link set dev w0 up', ''].join('\n'),
    );
    return { node, world };
  }

  /** A `sleep` in a new anonymous network namespace (unshare --net), addressed by /proc/PID/ns/net. */
  async addSleeper(): Promise<Sleeper> {
    const child = spawn('unshare', ['--net', 'sleep', '1000'], { stdio: 'ignore' });
    this.sleepers.push(child);
    const pid = child.pid;
    if (pid === undefined) throw new Error('could not start unshare --net sleep');
    const own = await readlink('/proc/self/ns/net');
    // unshare execs sleep in the same process once it has its namespace.
    for (let i = 0; i < 200; i++) {
      const ns = await readlink(`/proc/${pid}/ns/net`).catch(() => own);
      if (ns !== own) return { pid, path: `/proc/${pid}/ns/net` };
      await sleep(10);
    }
    throw new Error(`unshare --net sleep (pid ${pid}) did not enter a new namespace`);
  }

  /** Deletes every namespace and stops every sleeper made through this object. Safe to call twice. */
  async cleanup(): Promise<void> {
    for (const child of this.sleepers.splice(0)) child.kill('SIGKILL');
    const names = this.names.splice(0);
    if (names.length > 0) {
      await run('ip', ['-force', '-batch', '-'], {
        step: 'test: delete namespaces',
        input: names.map((n) => `netns del ${n}`).join('\n') + '\n',
        okExitCodes: [1],
      });
    }
  }
}
