/**
 * How this machine answers after idling, recorded with every run because it moves the latency numbers.
 *
 * On the VMs these benchmarks run on, a process that has slept for a few hundred milliseconds pays, on its
 * next request, for every memory page it touches again (measured: ~10-30 µs per page after 600 ms idle vs
 * ~0.06 µs hot), and a round trip to another process costs milliseconds instead of microseconds. A daemon
 * answering one request after a pause (the interleaved latency suite: nodenet waits ~500 ms while the
 * peers run) pays this on its whole working set; a fresh CLI process (the peers) pays for its exec anyway.
 * The probe measures both effects with nothing of nodenet involved, so a run's ratios can be read against
 * the machine's state at that time (it changes by the hour on a shared host).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { median, round } from './stats.js';

export interface WakeProbe {
  /** The pause before each "after idle" sample. */
  readonly idleMs: number;
  /** One line through a `cat` child process and back, p50 ms: back to back, and after idleMs asleep. */
  readonly pipeRoundTripMs: { readonly hot: number; readonly afterIdle: number };
  /** Reading one byte from each of 1,024 pages written long before, p50 µs per page: hot, and after idleMs asleep. */
  readonly pageTouchUs: { readonly hot: number; readonly afterIdle: number };
}

export interface WakeProbeOptions {
  readonly idleMs: number;
  /** Samples after idle, per measure (each costs idleMs). */
  readonly samples: number;
}

const PAGE = 4096;
const PAGES = 1024;
/** 16 KiB apart: 1,024 pages spread over 16 MiB, as a process's working set is spread. */
const STRIDE = 4 * PAGE;

export async function probeWake(options: WakeProbeOptions): Promise<WakeProbe> {
  const cat = spawn('cat', [], { stdio: ['pipe', 'pipe', 'ignore'] });
  const buffer = Buffer.alloc(PAGES * STRIDE, 1);
  try {
    await once(cat, 'spawn');
    const roundTrip = async (): Promise<number> => {
      const started = performance.now();
      const echoed = once(cat.stdout, 'data');
      cat.stdin.write('x\n');
      await echoed;
      return performance.now() - started;
    };
    let sink = 0;
    const touch = (): number => {
      const started = performance.now();
      for (let offset = 0; offset < buffer.length; offset += STRIDE) sink += buffer[offset]!;
      return ((performance.now() - started) * 1000) / PAGES;
    };
    const hot = async (measure: () => number | Promise<number>): Promise<number> => {
      const samples: number[] = [];
      for (let i = 0; i < 30; i++) samples.push(await measure());
      return median(samples.slice(5));
    };
    const afterIdle = async (measure: () => number | Promise<number>): Promise<number> => {
      const samples: number[] = [];
      for (let i = 0; i < options.samples; i++) {
        await sleep(options.idleMs);
        samples.push(await measure());
      }
      return median(samples);
    };
    const result: WakeProbe = {
      idleMs: options.idleMs,
      pipeRoundTripMs: { hot: round(await hot(roundTrip), 3), afterIdle: round(await afterIdle(roundTrip), 3) },
      pageTouchUs: { hot: round(await hot(touch), 3), afterIdle: round(await afterIdle(touch), 3) },
    };
    if (sink < 0) throw new Error('unreachable: keeps the page reads from being optimised away');
    return result;
  } finally {
    cat.stdin?.end();
    // A cat that never started (spawn error) emits no exit.
    if (cat.pid !== undefined && cat.exitCode === null && cat.signalCode === null) await once(cat, 'exit');
  }
}
