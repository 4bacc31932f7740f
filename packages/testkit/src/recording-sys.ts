/**
 * A `vi.mock` factory for @nodenet/sys that records every command the code under test starts, through either
 * runner, in one list (in the order the processes were started), and hands each to the real runner. Tests
 * use it to count the processes an operation spawns:
 *
 *   const commandsRun = vi.hoisted((): RecordedCommand[] => []);
 *   vi.mock('@nodenet/sys', async (original) => (await import('@nodenet/testkit/recording-sys')).recordingSys(original, commandsRun));
 *
 * A subpath of its own: it imports vitest, which the package's main entry (used by the bench at run time)
 * must not; and it imports @nodenet/sys only as types, since a mock must not load the module it replaces.
 * The runners stay `vi.fn`, so a test can swap one's implementation for a call.
 */
import { vi } from 'vitest';
import type * as Sys from '@nodenet/sys';

/** `[file, args, options?]` of one started command. */
export type RecordedCommand = [string, readonly string[], ...unknown[]];

export async function recordingSys(importOriginal: <T = unknown>() => Promise<T>, into: RecordedCommand[]): Promise<typeof Sys> {
  const real = await importOriginal<typeof Sys>();
  return {
    ...real,
    run: vi.fn((...args: Parameters<typeof real.run>) => (into.push(args), real.run(...args))),
    runLean: vi.fn((...args: Parameters<typeof real.runLean>) => (into.push(args), real.runLean(...args))),
  };
}
