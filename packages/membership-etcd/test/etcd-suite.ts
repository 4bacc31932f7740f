/**
 * The per-file setup of the integration tests against a real etcd (harness.ts's EtcdServer): one etcd for
 * the file, started before its tests and destroyed after them; cleanups a test registers, run after it;
 * a key prefix of its own for every test; EtcdMembership instances with the tests' short timings, stopped
 * after their test. Call useEtcd() at the top of a test file (it registers vitest hooks).
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import { parseNodeRecord, type NodeRecord } from '@nodenet/core';
import { EtcdMembership, type EtcdMembershipOptions } from '../src/index.js';
import { EtcdServer, MemoryLogger, PeerRecorder } from './harness.js';

/** The lease TTL of test nodes: short, so expiry is seen within a test. */
export const TTL = 3; // seconds
/** Retry delays of test nodes: short, so recovery is seen within a test. */
export const FAST_RETRY = { initial: 100, max: 1000 };

export interface TestMembership {
  readonly m: EtcdMembership;
  readonly log: MemoryLogger;
  readonly peers: PeerRecorder;
}

export interface EtcdTestFile {
  /** The file's etcd (inside tests and hooks: it starts in beforeAll). */
  readonly etcd: EtcdServer;
  /** A key prefix no other test of this run uses. */
  readonly newPrefix: () => string;
  /** Runs `cleanup` after the current test (last registered, first run; failures ignored). */
  readonly defer: (cleanup: () => Promise<unknown>) => void;
  /** An EtcdMembership for `name` on the file's etcd, not started; stopped after the test. */
  readonly membership: (prefix: string, name: string, options?: Partial<EtcdMembershipOptions>) => TestMembership;
}

export function useEtcd(options: { start?: () => Promise<EtcdServer>; prefixTag?: string } = {}): EtcdTestFile {
  let etcd: EtcdServer | undefined;
  let seq = 0;
  const cleanups: (() => Promise<unknown>)[] = [];
  const prefixStart = `/nnt-${options.prefixTag ? `${options.prefixTag}-` : ''}${process.pid}-`;

  beforeAll(async () => {
    etcd = await (options.start ?? (() => EtcdServer.create()))();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  const file: EtcdTestFile = {
    get etcd(): EtcdServer {
      if (!etcd) throw new Error('etcd is not started: use it inside tests and hooks (useEtcd starts it in beforeAll)');
      return etcd;
    },
    newPrefix: () => `${prefixStart}${++seq}`,
    defer: (cleanup) => {
      cleanups.push(cleanup);
    },
    membership(prefix, name, overrides = {}) {
      const log = new MemoryLogger(name);
      const peers = new PeerRecorder();
      const m = new EtcdMembership({
        endpoints: [file.etcd.url],
        prefix,
        leaseTtlSeconds: TTL,
        nodeName: name,
        logger: log,
        retryDelayMs: FAST_RETRY,
        requestTimeoutMs: 3000,
        ...overrides,
      });
      cleanups.push(() => m.stop());
      return { m, log, peers };
    },
  };
  return file;
}

/** Prints a measured time ([measure] lines): times are reported, never asserted tightly. */
export function measure(what: string, ms: number): void {
  console.log(`[measure] ${what}: ${ms} ms`);
}

export function rec(name: string, underlay: string, subnet: string): NodeRecord {
  return parseNodeRecord({ name, underlayAddress: underlay, subnet }, 'test');
}
