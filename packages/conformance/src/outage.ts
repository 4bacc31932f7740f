/**
 * What a disruption costs the traffic: probes that run throughout and are read around a moment (the
 * disruption): how many replies were lost after it and when the first good reply came after the last loss.
 * - ReplyLog: a ping every 20 ms (`ping -D -O`: each reply and each missing answer with its time);
 * - PortProbe: a TCP connect + echo through a published port every 50 ms (a small Node client).
 */
import type { TestScope } from '@nodenet/testkit';
import { startInNamespace, type Background } from './cluster-fixture.js';

/** The outage a probe saw after a moment. */
export interface Outage {
  /** Probes sent after the moment that got no answer. */
  readonly lost: number;
  /** From the moment to the first good answer after the last loss (0: nothing was lost). */
  readonly outageMs: number;
  /** Probes sent after the moment in all (for the ratio). */
  readonly sent: number;
}

/** One probe: when it was sent (ms since the epoch) and whether it was answered. */
interface Attempt {
  readonly sentAt: number;
  answeredAt: number | null;
}

/** Outage after `since` from a list of attempts (ordered by sending time). */
export function outageAfter(attempts: readonly Attempt[], since: number): Outage {
  const after = attempts.filter((a) => a.sentAt >= since).sort((x, y) => x.sentAt - y.sentAt);
  const lostOnes = after.filter((a) => a.answeredAt === null);
  if (lostOnes.length === 0) return { lost: 0, outageMs: 0, sent: after.length };
  const lastLost = lostOnes[lostOnes.length - 1]!;
  const firstGood = after.find((a) => a.sentAt > lastLost.sentAt && a.answeredAt !== null);
  return { lost: lostOnes.length, outageMs: firstGood ? Math.round(firstGood.answeredAt! - since) : Number.NaN, sent: after.length };
}

abstract class Probe {
  /** Every probe so far (any order). */
  protected abstract get attempts(): Attempt[];
  private pending = '';
  protected stderr = '';

  protected constructor(protected readonly proc: Background) {
    proc.child.stdout!.on('data', (c: Buffer) => {
      this.pending += c.toString('utf8');
      for (let i = this.pending.indexOf('\n'); i >= 0; i = this.pending.indexOf('\n')) {
        this.onLine(this.pending.slice(0, i));
        this.pending = this.pending.slice(i + 1);
      }
    });
    proc.child.stderr!.on('data', (c: Buffer) => (this.stderr = (this.stderr + c.toString('utf8')).slice(-2000)));
  }

  protected abstract onLine(line: string): void;

  /** Answers after `since` (ms since the epoch). */
  answeredSince(since: number): number {
    return this.attempts.filter((a) => a.sentAt >= since && a.answeredAt !== null).length;
  }

  /**
   * Waits until probes sent after `since` have been answered `n` times in a row (traffic flows again), up to
   * `timeoutMs`; then the outage after `since`. A probe sent but not yet due counts as neither.
   */
  async settledOutage(since: number, timeoutMs: number, n = 5): Promise<Outage> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const after = this.attempts.filter((a) => a.sentAt >= since).sort((x, y) => x.sentAt - y.sentAt);
      const tail = after.slice(-n - 3, -3); // the last few may still be in flight
      if (tail.length === n && tail.every((a) => a.answeredAt !== null)) return outageAfter(this.attempts, since);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `${this.describe()}: traffic did not flow again within ${timeoutMs} ms of the disruption (${JSON.stringify(outageAfter(this.attempts, since))}; ${this.stderr.trim().slice(-300)})`,
    );
  }

  protected abstract describe(): string;

  /** SIGINT, then SIGKILL if it has not exited within 3 s. */
  async stop(): Promise<void> {
    const child = this.proc.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await this.proc.exited;
    clearTimeout(timer);
  }
}

/**
 * `ping -D -O -i 0.02` from `ns` to `destination`. Sequence numbers are consecutive, so a number never seen
 * (a send that failed with "network unreachable" prints no "no answer yet") is a loss too; its sending time
 * is interpolated between its neighbours'.
 */
export class ReplyLog extends Probe {
  private readonly bySeq = new Map<number, Attempt>();
  private constructor(
    proc: Background,
    readonly ns: string,
    readonly destination: string,
    private readonly intervalMs: number,
  ) {
    super(proc);
  }

  static start(scope: TestScope, ns: string, destination: string, intervalMs = 20): ReplyLog {
    const proc = startInNamespace(scope, ns, `ping ${destination} from ${ns}`, [
      'ping',
      '-n',
      '-D',
      '-O',
      '-i',
      String(intervalMs / 1000),
      '-W',
      '1',
      destination,
    ]);
    return new ReplyLog(proc, ns, destination, intervalMs);
  }

  protected get attempts(): Attempt[] {
    const seqs = [...this.bySeq.keys()].sort((a, b) => a - b);
    const out: Attempt[] = [];
    for (let i = 0; i < seqs.length; i++) {
      const seq = seqs[i]!;
      const a = this.bySeq.get(seq)!;
      out.push(a);
      const next = seqs[i + 1];
      if (next === undefined) continue;
      const b = this.bySeq.get(next)!;
      for (let missing = seq + 1; missing < next; missing++) {
        out.push({ sentAt: a.sentAt + ((b.sentAt - a.sentAt) * (missing - seq)) / (next - seq), answeredAt: null });
      }
    }
    return out;
  }

  protected onLine(line: string): void {
    const m = /^\[(\d+\.\d+)\] (?:.*icmp_seq=(\d+) ttl=.* time=([\d.]+) ms|no answer yet for icmp_seq=(\d+))/.exec(line);
    if (!m) return;
    const at = Number(m[1]) * 1000;
    if (m[2] !== undefined) {
      const seq = Number(m[2]);
      const known = this.bySeq.get(seq);
      if (known) known.answeredAt = at;
      else this.bySeq.set(seq, { sentAt: at - Number(m[3]), answeredAt: at });
    } else {
      const seq = Number(m[4]);
      // Printed when the next one is sent, i.e. one interval after this one.
      if (!this.bySeq.has(seq)) this.bySeq.set(seq, { sentAt: at - this.intervalMs, answeredAt: null });
    }
  }

  protected describe(): string {
    return `ping from ${this.ns} to ${this.destination}`;
  }
}

/** A Node client: every INTERVAL ms, connect to HOST:PORT, send a line, expect it back within TIMEOUT ms. */
const PORT_PROBE = `
import net from 'node:net';
const [host, portText, intervalText, timeoutText] = process.argv.slice(1);
const attempt = () => {
  const sentAt = Date.now();
  let done = false;
  const finish = (ok) => { if (done) return; done = true; socket.destroy(); process.stdout.write(JSON.stringify({ sentAt, answeredAt: ok ? Date.now() : null }) + '\\n'); };
  const socket = net.connect({ host, port: Number(portText) }, () => socket.write('probe\\n'));
  socket.setTimeout(Number(timeoutText), () => finish(false));
  socket.on('data', () => finish(true));
  socket.on('error', () => finish(false));
  socket.on('close', () => finish(false));
};
const timer = setInterval(attempt, Number(intervalText));
process.on('SIGINT', () => { clearInterval(timer); setTimeout(() => process.exit(0), Number(timeoutText)); });
`;

/** A TCP echo through a published port, probed every 50 ms (each attempt its own connection). */
export class PortProbe extends Probe {
  private readonly all: Attempt[] = [];
  private constructor(
    proc: Background,
    readonly ns: string,
    readonly target: string,
  ) {
    super(proc);
  }

  static start(scope: TestScope, ns: string, host: string, port: number, intervalMs = 50, timeoutMs = 500): PortProbe {
    const proc = startInNamespace(scope, ns, `port probe ${host}:${port} from ${ns}`, [
      process.execPath,
      '--input-type=module',
      '-e',
      PORT_PROBE,
      host,
      String(port),
      String(intervalMs),
      String(timeoutMs),
    ]);
    return new PortProbe(proc, ns, `${host}:${port}`);
  }

  protected get attempts(): Attempt[] {
    return this.all;
  }

  protected onLine(line: string): void {
    try {
      const a = JSON.parse(line) as Attempt;
      this.all.push({ sentAt: a.sentAt, answeredAt: a.answeredAt });
    } catch {
      // not a report
    }
  }

  protected describe(): string {
    return `port probe from ${this.ns} to ${this.target}`;
  }
}
