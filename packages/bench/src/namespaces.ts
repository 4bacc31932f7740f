/**
 * Many instance namespaces at once: `ip -batch` creates or deletes hundreds in one process (a few ms per
 * hundred) where `ip netns add` per namespace costs a spawn each. Names come from the test kit (`nnt-<pid>-<n>`),
 * so a run that dies leaves nothing the next run's sweep does not remove; a normal run deletes them itself.
 */
import { spawnSync } from 'node:child_process';
import { exec, nextName, type TestScope } from '@nodenet/testkit';

const live = new Set<string>();
let exitHandlerInstalled = false;

function deleteLiveSync(): void {
  if (live.size === 0) return;
  spawnSync('ip', ['-force', '-batch', '-'], { input: [...live].map((ns) => `netns del ${ns}`).join('\n') + '\n' });
  live.clear();
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on('exit', deleteLiveSync);
  // The test kit's own handler re-raises the signal once it has cleaned up; this one only removes itself,
  // so the re-raised signal ends the process as it would have without either.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = () => {
      process.removeListener(signal, handler);
      deleteLiveSync();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, handler);
  }
}

/** Creates `count` empty namespaces (lo down: the daemon or the plugin brings it up) and returns their names. */
export async function createNamespaces(scope: TestScope, count: number): Promise<string[]> {
  installExitHandler();
  const names = Array.from({ length: count }, () => nextName());
  if (count === 0) return names;
  for (const ns of names) live.add(ns);
  scope.defer(`delete ${count} bench namespaces`, () => deleteNamespaces(names));
  await exec('ip', ['-batch', '-'], { input: names.map((ns) => `netns add ${ns}`).join('\n') + '\n', timeoutMs: 120_000 });
  return names;
}

/** Deletes namespaces (absent ones are fine). */
export async function deleteNamespaces(names: readonly string[]): Promise<void> {
  const present = names.filter((ns) => live.has(ns));
  if (present.length === 0) return;
  await exec('ip', ['-force', '-batch', '-'], {
    input: present.map((ns) => `netns del ${ns}`).join('\n') + '\n',
    allowFailure: true,
    timeoutMs: 120_000,
  });
  for (const ns of present) live.delete(ns);
}
