/**
 * Traffic inside namespaces: ping, TCP/UDP echo servers that record what they received and from whom,
 * and echo clients that report the reply. Servers are stopped by the scope's cleanup.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { assertNamespaceName, nsExec } from './exec.js';
import type { TestScope } from './scope.js';

const echoServerScript = fileURLToPath(new URL('../scripts/echo-server.mjs', import.meta.url));
const echoClientScript = fileURLToPath(new URL('../scripts/echo-client.mjs', import.meta.url));

export type L4Protocol = 'tcp' | 'udp';

// ---------------------------------------------------------------------------------------------------
// ping

export interface PingOptions {
  /** Echo requests to send. Default 1. */
  readonly count?: number;
  /** Seconds to wait for each reply (`ping -W`). Default 2. */
  readonly timeoutSec?: number;
  /** Seconds between requests. Default 0.2. */
  readonly intervalSec?: number;
  /** ICMP payload bytes (`ping -s`). */
  readonly size?: number;
  /** Set DF and never fragment locally (`ping -M do`). */
  readonly dontFragment?: boolean;
  /** Source address or interface (`ping -I`). */
  readonly source?: string;
}

export interface PingResult {
  /** At least one reply came back. */
  readonly ok: boolean;
  readonly transmitted: number;
  readonly received: number;
  /** ping's output, for assertion messages. */
  readonly output: string;
}

export function pingArgs(destination: string, options: PingOptions = {}): string[] {
  const args = [
    '-n',
    '-q',
    '-c',
    String(options.count ?? 1),
    '-W',
    String(options.timeoutSec ?? 2),
    '-i',
    String(options.intervalSec ?? 0.2),
  ];
  if (options.size !== undefined) args.push('-s', String(options.size));
  if (options.dontFragment) args.push('-M', 'do');
  if (options.source) args.push('-I', options.source);
  args.push(destination);
  return args;
}

/** Parses ping's summary line ("3 packets transmitted, 2 received, ..."). */
export function parsePingSummary(output: string): { transmitted: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
  return m ? { transmitted: Number(m[1]), received: Number(m[2]) } : { transmitted: 0, received: 0 };
}

/** Pings `destination` from inside `ns`; never throws for unanswered pings (read `ok`/`received`). */
export async function ping(ns: string, destination: string, options: PingOptions = {}): Promise<PingResult> {
  const r = await nsExec(ns, 'ping', pingArgs(destination, options), { allowFailure: true });
  const output = `${r.stdout}${r.stderr}`.trim();
  const { transmitted, received } = parsePingSummary(output);
  return { ok: received > 0, transmitted, received, output: `ping ${destination} from ${ns}: ${output}` };
}

/**
 * Waits until no IPv6 address in the namespaces is tentative (in duplicate address detection): traffic from
 * a tentative address is not sent, and a neighbour advert arriving while the receiver's link-local address is
 * still tentative (the first second or two after a link comes up, measured) is not taken.
 */
export async function addressesSettled(...namespaces: string[]): Promise<void> {
  for (const ns of namespaces) {
    for (let i = 0; ; i++) {
      const r = await nsExec(ns, 'ip', ['-j', '-6', 'addr', 'show']);
      if (!r.stdout.includes('"tentative":true')) break;
      if (i >= 100) throw new Error(`${ns}: IPv6 addresses still tentative after 10 s`);
      await sleep(100);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Echo servers

export interface Received {
  readonly protocol: L4Protocol;
  /** The source address the server saw. */
  readonly peerAddress: string;
  readonly peerPort: number;
  /** TCP: the local address the connection arrived on. */
  readonly localAddress?: string;
  readonly payload: string;
}

export interface EchoServerOptions {
  readonly protocol: L4Protocol;
  readonly port: number;
  /**
   * Address to bind. Default 0.0.0.0. A UDP server bound to 0.0.0.0 answers from the address routing
   * picks, not necessarily the one the datagram was sent to: bind to that address where it matters.
   */
  readonly host?: string;
}

export class EchoServer {
  /** What arrived so far (a UDP client may send its datagram more than once). */
  readonly received: Received[] = [];
  private waiters: Array<() => void> = [];
  private exitedFlag = false;

  private constructor(
    readonly ns: string,
    readonly protocol: L4Protocol,
    readonly port: number,
    private readonly child: ResultPromise,
  ) {}

  static async start(scope: TestScope, ns: string, options: EchoServerOptions): Promise<EchoServer> {
    assertNamespaceName(ns);
    const config = JSON.stringify({ protocol: options.protocol, port: options.port, host: options.host ?? '0.0.0.0' });
    const child = execa('ip', ['netns', 'exec', ns, process.execPath, echoServerScript, config], {
      reject: false,
      buffer: false,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
    });
    scope.trackPid(child.pid);
    const server = new EchoServer(ns, options.protocol, options.port, child);
    scope.defer(`echo server ${options.protocol}/${options.port} in ${ns}`, () => server.stop());
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const ready = new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => {
        let event: Record<string, unknown>;
        try {
          event = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        if (event.event === 'listening') resolve();
        else if (event.event === 'fatal')
          reject(new Error(`echo server ${options.protocol}/${options.port} in ${ns}: ${String(event.message)}`));
        else if (event.event === 'received') {
          server.received.push({
            protocol: options.protocol,
            peerAddress: String(event.peerAddress),
            peerPort: Number(event.peerPort),
            ...(typeof event.localAddress === 'string' ? { localAddress: event.localAddress } : {}),
            payload: String(event.payload),
          });
          for (const wake of server.waiters.splice(0)) wake();
        }
      });
      void child.then(() => {
        server.exitedFlag = true;
        scope.untrackPid(child.pid);
        for (const wake of server.waiters.splice(0)) wake();
        reject(new Error(`echo server ${options.protocol}/${options.port} in ${ns} exited: ${stderr.trim()}`));
      });
    });
    await ready;
    return server;
  }

  /** Waits until something matching `predicate` has arrived; returns it, or undefined after `timeoutMs`. */
  async waitFor(predicate: (r: Received) => boolean, timeoutMs = 3000): Promise<Received | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(predicate);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0 || this.exitedFlag) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** What arrived with this payload. */
  receivedPayload(payload: string): Received[] {
    return this.received.filter((r) => r.payload === payload);
  }

  async stop(): Promise<void> {
    if (this.exitedFlag) return;
    this.child.kill('SIGTERM');
    await this.child;
  }
}

export function startEchoServer(scope: TestScope, ns: string, options: EchoServerOptions): Promise<EchoServer> {
  return EchoServer.start(scope, ns, options);
}

/** TCP and UDP echo servers on one port. */
export async function startEchoServers(
  scope: TestScope,
  ns: string,
  port: number,
  host?: string,
): Promise<{ tcp: EchoServer; udp: EchoServer }> {
  const base = host ? { port, host } : { port };
  const [tcp, udp] = await Promise.all([
    EchoServer.start(scope, ns, { protocol: 'tcp', ...base }),
    EchoServer.start(scope, ns, { protocol: 'udp', ...base }),
  ]);
  return { tcp, udp };
}

// ---------------------------------------------------------------------------------------------------
// Echo clients

export interface EchoRequest {
  readonly protocol: L4Protocol;
  readonly host: string;
  readonly port: number;
  /** Default: a fresh random token, so each exchange is recognisable at the server. */
  readonly payload?: string;
  /** Default 3000 ms. */
  readonly timeoutMs?: number;
  /** Local address to send from (must be an address of the namespace). */
  readonly bind?: string;
  /** Local port to send from (default: any). */
  readonly localPort?: number;
}

export interface EchoResult {
  /** A reply came back (equal to the payload for an echo server). */
  readonly ok: boolean;
  readonly payload: string;
  readonly reply?: string;
  readonly error?: string;
  /** The client's own address and port as its socket saw them. */
  readonly localAddress?: string;
  readonly localPort?: number;
  /** UDP: the source address of the reply. */
  readonly from?: string;
}

export function randomPayload(label = 'nnt'): string {
  return `${label}-${randomBytes(6).toString('hex')}`;
}

/** Sends `payload` from inside `ns` and waits for the echo; never throws for network failures (read `ok`). */
export async function echo(ns: string, request: EchoRequest): Promise<EchoResult> {
  const payload = request.payload ?? randomPayload();
  const timeoutMs = request.timeoutMs ?? 3000;
  const config = JSON.stringify({ ...request, payload, timeoutMs });
  const r = await nsExec(ns, process.execPath, [echoClientScript, config], { allowFailure: true, timeoutMs: timeoutMs + 10_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    const parsed = JSON.parse(line) as Omit<EchoResult, 'payload'>;
    return { ...parsed, ok: parsed.ok === true && parsed.reply === payload, payload };
  } catch {
    return { ok: false, payload, error: `echo client failed (exit ${r.exitCode}): ${r.stderr.trim() || line}` };
  }
}

// ---------------------------------------------------------------------------------------------------
// Light echo servers (socat): a few MB each instead of a Node process, for tests with many instances.

export class SocatEchoServer {
  /** Peer addresses of connections/datagrams seen so far (from socat's notices; payloads are not recorded). */
  readonly peers: string[] = [];

  private constructor(
    readonly ns: string,
    readonly protocol: L4Protocol,
    readonly port: number,
    private readonly child: ResultPromise,
  ) {}

  static async start(
    scope: TestScope,
    ns: string,
    protocol: L4Protocol,
    port: number,
    options: SocatEchoOptions = {},
  ): Promise<SocatEchoServer> {
    assertNamespaceName(ns);
    // An IPv6 socket without ipv6only takes IPv4 too (as mapped addresses).
    const listen = options.ipv6
      ? protocol === 'tcp'
        ? `TCP6-LISTEN:${port},ipv6only=0,reuseaddr,fork`
        : `UDP6-RECVFROM:${port},ipv6only=0,fork`
      : protocol === 'tcp'
        ? `TCP-LISTEN:${port},reuseaddr,fork`
        : `UDP-RECVFROM:${port},fork`;
    // PIPE: what socat reads from the peer it writes into a pipe and reads back: an echo.
    const child = execa('ip', ['netns', 'exec', ns, 'socat', '-d', '-d', listen, 'PIPE'], {
      reject: false,
      buffer: false,
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'pipe',
    });
    scope.trackPid(child.pid);
    const server = new SocatEchoServer(ns, protocol, port, child);
    scope.defer(`socat echo ${protocol}/${port} in ${ns}`, () => server.stop());
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: child.stderr });
      let seen = '';
      lines.on('line', (line) => {
        seen += `${line}\n`;
        if (/ (listening|receiving) on AF=/.test(line)) resolve();
        const peer = / (?:accepting connection|receiving packet) from AF=2 ([0-9.]+):\d+/.exec(line);
        if (peer) server.peers.push(peer[1]!);
      });
      void child.then(() => {
        scope.untrackPid(child.pid);
        reject(new Error(`socat echo ${protocol}/${port} in ${ns} exited: ${seen.trim().slice(-500)}`));
      });
    });
    return server;
  }

  /**
   * Ends the listener and the per-connection children it forked. Waiting for the listener's result alone
   * could hang for minutes (measured once in the full suite: a cleanup timed out at 120 s): a child still
   * serving a connection whose peer vanished keeps the shared stderr pipe open, and the result waits for it.
   */
  async stop(): Promise<void> {
    const pid = this.child.pid;
    if (pid !== undefined) for (const child of childPids(pid)) killQuietly(child);
    this.child.kill('SIGTERM');
    const ended = await Promise.race([this.child.then(() => true), sleep(3_000).then(() => false)]);
    if (!ended) {
      if (pid !== undefined) for (const child of childPids(pid)) killQuietly(child);
      this.child.kill('SIGKILL');
      await this.child;
    }
  }
}

/** The pids whose parent is `pid` (from /proc: no process to spawn). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name may hold spaces and parentheses: fields after its closing one are fixed.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export interface SocatEchoOptions {
  /** Listen on IPv6 and IPv4 both (default IPv4 only). */
  readonly ipv6?: boolean;
}

export function startSocatEcho(...args: Parameters<typeof SocatEchoServer.start>): Promise<SocatEchoServer> {
  return SocatEchoServer.start(...args);
}
