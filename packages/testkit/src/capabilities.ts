/**
 * Running things with fewer privileges than the test's root: a command with only some capabilities (the
 * daemon under its unit's set, or that set minus one), and a process of another user inside a namespace
 * (whose /proc/PID/ns/net needs ptrace access to open).
 */
import { stat } from 'node:fs/promises';
import { execa } from 'execa';
import type { TestScope } from './scope.js';

/** The capabilities nodenetd's systemd unit grants, as setpriv names them. */
export const DAEMON_CAPABILITY_SET: readonly string[] = ['net_admin', 'sys_admin', 'sys_ptrace'];

/** `command` run as root with only `caps` (setpriv: bounding, inheritable and ambient sets; no new privileges). */
export function withCapabilities(caps: readonly string[], command: readonly string[]): [string, ...string[]] {
  const set = ['-all', ...caps.map((c) => `+${c}`)].join(',');
  return ['setpriv', `--inh-caps=${set}`, `--ambient-caps=${set}`, `--bounding-set=${set}`, '--no-new-privs', '--', ...command];
}

/** A process of user nobody in namespace `ns`; returns its PID once it is inside. The scope kills it. */
export async function startOtherUserProcess(scope: TestScope, ns: string): Promise<number> {
  const child = execa('ip', ['netns', 'exec', ns, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '3600'], {
    reject: false,
    stdin: 'ignore',
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start a process in ${ns}`);
  scope.trackPid(pid);
  scope.defer(`process ${pid} of nobody in ${ns}`, async () => {
    child.kill('SIGKILL');
    await child;
  });
  const want = (await stat(`/run/netns/${ns}`)).ino;
  const deadline = Date.now() + 5000;
  while ((await stat(`/proc/${pid}/ns/net`)).ino !== want) {
    if (Date.now() > deadline) throw new Error(`process ${pid} did not enter ${ns} within 5 s`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return pid;
}
