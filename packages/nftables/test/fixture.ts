/**
 * The integration fixture, built by hand with `ip` (no other nodenet package involved):
 *
 *   world (198.18.0.100/24 on ul0, 198.19.2.10/32 on lo: "another node's subnet")
 *     |  underlay veth
 *   node  (198.18.0.1/24 on ul0; bridge nodenet0 198.19.1.1/24; ip_forward=1; 198.19.2.0/24 via world)
 *     |  nnh-0000000N veths, bridge ports
 *   instances i2, i3, i4: eth0 198.19.1.N/24, default via 198.19.1.1 (N = 2, 3, 4)
 *
 * Namespaces are named nnt-PID-COUNTER-LABEL and all deleted by destroy(), which tests call in afterAll
 * (and create() itself on failure). Nothing here touches the root namespace.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Subnet, type FilterBase, type IfName, type InstanceRules, type Ipv4Address, type Port, type PortMapping } from '@nodenet/core';
import { run, type RunResult } from '@nodenet/sys';
import { countRules, parseAllowedSources, parsePublishedPorts } from '../src/listing.js';

let counter = 0;

export const GATEWAY = '198.19.1.1';
export const NODE_UNDERLAY = '198.18.0.1';
export const WORLD = '198.18.0.100';
/** An address in another node's subnet (198.19.2.0/24), held by the world namespace. */
export const PEER_SUBNET_ADDRESS = '198.19.2.10';
export const BRIDGE_MAC = '02:6e:c6:13:01:01';

export async function sh(file: string, args: string[], input?: string): Promise<string> {
  return (await run(file, args, { step: `test: ${file} ${args.join(' ')}`, ...(input === undefined ? {} : { input }) })).stdout;
}

/** Runs a command in a namespace; exit codes other than 0 are returned, not thrown. */
export async function inNs(ns: string, args: string[], input?: string, timeoutMs = 20_000): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, ...args], {
    step: `test: in ${ns}: ${args.join(' ')}`,
    okExitCodes: [1, 2, 124, 255],
    timeoutMs,
    ...(input === undefined ? {} : { input }),
  });
}

export async function ipBatch(ns: string, lines: string[]): Promise<void> {
  await sh('ip', ['-n', ns, '-batch', '-'], lines.join('\n') + '\n');
}

export async function newNamespace(label: string, track: string[]): Promise<string> {
  const name = `nnt-${process.pid}-${++counter}-${label}`;
  track.push(name);
  await sh('ip', ['netns', 'add', name]);
  await sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

export async function deleteNamespaces(names: string[]): Promise<void> {
  const errors: unknown[] = [];
  for (const name of names.splice(0)) {
    try {
      await run('ip', ['netns', 'delete', name], { step: 'test: delete namespace' });
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length > 0) throw errors[0];
}

export interface Instance {
  readonly ns: string;
  readonly hostIfname: IfName;
  readonly address: Ipv4Address;
}

export interface Fixture {
  readonly node: string;
  readonly world: string;
  readonly instances: readonly Instance[];
  readonly base: FilterBase;
  destroy(): Promise<void>;
}

export function filterBase(extraClusterSubnets: string[] = []): FilterBase {
  return {
    cniName: 'nodenet0' as IfName,
    ipv4: { subnet: Subnet.of('198.19.1.0/24'), gateway: GATEWAY as Ipv4Address },
    clusterSubnets: ['198.19.1.0/24', '198.19.2.0/24', ...extraClusterSubnets].map((s) => Subnet.of(s)),
  };
}

export function mapping(protocol: 'tcp' | 'udp', hostPort: number, instancePort = hostPort): PortMapping {
  return { protocol, hostPort: hostPort as Port, instancePort: instancePort as Port };
}

/** Both protocols, like the seed's `ports`. */
export function both(hostPort: number, instancePort = hostPort): PortMapping[] {
  return [mapping('tcp', hostPort, instancePort), mapping('udp', hostPort, instancePort)];
}

export function rulesFor(instance: Instance, ports: PortMapping[]): InstanceRules {
  return { hostIfname: instance.hostIfname, ipv4: instance.address, ports };
}

export async function createFixture(options: { bridgeNfCallIptables: 0 | 1; label: string }): Promise<Fixture> {
  const names: string[] = [];
  const destroy = () => deleteNamespaces(names);
  try {
    const node = await newNamespace(`${options.label}-node`, names);
    const world = await newNamespace(`${options.label}-world`, names);
    await ipBatch(node, [
      'link add nodenet0 type bridge',
      `link set nodenet0 address ${BRIDGE_MAC}`,
      `address add ${GATEWAY}/24 dev nodenet0`,
      'address add fd00:1::1/64 dev nodenet0 nodad',
      'link set nodenet0 up',
      `link add ul0 type veth peer name ul0 netns ${world}`,
      `address add ${NODE_UNDERLAY}/24 dev ul0`,
      'link set ul0 up',
      `route add 198.19.2.0/24 via ${WORLD}`,
    ]);
    await ipBatch(world, [
      `address add ${WORLD}/24 dev ul0`,
      'link set ul0 up',
      `address add ${PEER_SUBNET_ADDRESS}/32 dev lo`,
      `route add 198.19.1.0/24 via ${NODE_UNDERLAY}`,
    ]);
    await inNs(node, [
      'sysctl',
      '-qw',
      'net.ipv4.ip_forward=1',
      `net.bridge.bridge-nf-call-iptables=${options.bridgeNfCallIptables}`,
      // What the dataplane would set for the node's 127.0.0.1 to reach published ports (see the report).
      'net.ipv4.conf.nodenet0.route_localnet=1',
    ]).then(assertOk);
    const instances: Instance[] = [];
    for (const n of [2, 3, 4]) {
      const ns = await newNamespace(`${options.label}-i${n}`, names);
      const hostIfname = `nnh-0000000${n}` as IfName;
      const address = `198.19.1.${n}` as Ipv4Address;
      await ipBatch(node, [
        `link add ${hostIfname} type veth peer name eth0 netns ${ns}`,
        `link set ${hostIfname} master nodenet0`,
        `link set ${hostIfname} up`,
      ]);
      await ipBatch(ns, [
        `link set eth0 address 02:6e:c6:13:01:0${n}`,
        `address add ${address}/24 dev eth0`,
        `address add fd00:1::${n}/64 dev eth0 nodad`,
        'link set eth0 up',
        `route add default via ${GATEWAY}`,
      ]);
      instances.push({ ns, hostIfname, address });
    }
    return { node, world, instances, base: filterBase(), destroy };
  } catch (e) {
    await destroy().catch(() => {});
    throw e;
  }
}

function assertOk(r: RunResult): void {
  if (r.exitCode !== 0) throw new Error(`command failed (${r.exitCode}): ${r.stderr}`);
}

// ---------------------------------------------------------------------------------------------------
// Traffic

const echoServerPath = fileURLToPath(new URL('./echo-server.mjs', import.meta.url));

export interface EchoServer {
  /** Lines the server logged (one per connection / datagram): `NAME peer=ADDRESS got=PAYLOAD`. */
  readonly seen: string[];
  stop(): Promise<void>;
}

/** Starts echo-server.mjs in a namespace and waits until it listens. */
export async function startServer(ns: string, proto: 'tcp' | 'udp', port: number, name: string, bind?: string): Promise<EchoServer> {
  const child: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, echoServerPath, proto, String(port), name, ...(bind ? [bind] : [])],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const seen: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  const lines = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`echo server ${name} did not start: ${stderr}`)), 10_000);
    lines.on('line', (l) => {
      if (l === 'ready') {
        clearTimeout(timer);
        resolve();
      } else seen.push(l);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`echo server ${name} exited (${code}): ${stderr}`));
    });
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    seen,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * One request with socat from a namespace: returns the reply (trimmed), or null when nothing came back
 * (refused, timed out, dropped). `source` binds the client to that address.
 */
export async function request(
  ns: string,
  proto: 'tcp' | 'udp',
  address: string,
  port: number,
  payload: string,
  source?: string,
): Promise<string | null> {
  const bind = source ? `,bind=${source}` : '';
  const target = proto === 'tcp' ? `TCP:${address}:${port},connect-timeout=2${bind}` : `UDP:${address}:${port}${bind}`;
  const r = await inNs(ns, ['socat', '-T', '2', '-', target], `${payload}\n`);
  const out = r.stdout.trim();
  return r.exitCode === 0 && out !== '' ? out : null;
}

/** Exit status of ping (0: a reply came back). */
export async function ping(ns: string, address: string, extra: string[] = []): Promise<number> {
  return (await inNs(ns, ['ping', '-n', '-q', '-c', '1', '-w', '2', ...extra, address])).exitCode;
}

// ---------------------------------------------------------------------------------------------------
// Reading the tables

export async function listTable(ns: string, family: 'ip' | 'bridge'): Promise<string> {
  const r = await inNs(ns, ['nft', '-j', 'list', 'table', family, 'nodenet']);
  if (r.exitCode !== 0) throw new Error(`nft list table ${family} nodenet: ${r.stderr}`);
  return r.stdout;
}

export async function snapshot(ns: string) {
  const [ip, bridge] = await Promise.all([listTable(ns, 'ip'), listTable(ns, 'bridge')]);
  return {
    rules: countRules(ip) + countRules(bridge),
    ports: parsePublishedPorts(ip) ?? [],
    sources: parseAllowedSources(bridge) ?? [],
  };
}

export async function tableExists(ns: string, family: 'ip' | 'bridge'): Promise<boolean> {
  return (await inNs(ns, ['nft', 'list', 'table', family, 'nodenet'])).exitCode === 0;
}

/** Conntrack entries (one per line) mentioning `address` anywhere. */
export async function conntrackEntries(ns: string, address: string): Promise<string[]> {
  const r = await inNs(ns, ['conntrack', '-L']);
  return r.stdout.split('\n').filter((l) => l.includes(`=${address} `));
}

/** The handle of a rule of nodenet's table (by comment, or the first rule of the chain). */
export async function ruleHandle(ns: string, family: 'ip' | 'bridge', chain: string, comment?: string): Promise<number> {
  const r = await inNs(ns, ['nft', '-a', '-j', 'list', 'chain', family, 'nodenet', chain]);
  if (r.exitCode !== 0) throw new Error(`nft list chain ${family} nodenet ${chain}: ${r.stderr}`);
  const rules = (JSON.parse(r.stdout) as { nftables: { rule?: { handle: number; comment?: string } }[] }).nftables.flatMap((o) =>
    o.rule ? [o.rule] : [],
  );
  const rule = comment === undefined ? rules[0] : rules.find((x) => x.comment === comment);
  if (!rule) throw new Error(`no rule ${comment ?? ''} in chain ${family} nodenet ${chain}`);
  return rule.handle;
}

/** Runs an nft script in a namespace (the tests' way of making drift). */
export async function nft(ns: string, script: string): Promise<void> {
  assertOk(await inNs(ns, ['nft', '-f', '-'], script));
}

/** `nft -a list table` of both of nodenet's tables: every object with its handle (changes on any rewrite). */
export async function listWithHandles(ns: string): Promise<string> {
  const [ip, bridge] = await Promise.all([
    inNs(ns, ['nft', '-a', 'list', 'table', 'ip', 'nodenet']),
    inNs(ns, ['nft', '-a', 'list', 'table', 'bridge', 'nodenet']),
  ]);
  return ip.stdout + bridge.stdout;
}

export interface Monitor {
  /** Lines `nft monitor` printed so far. */
  readonly lines: string[];
  /** Waits until a line matching `pattern` shows up. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /**
   * Waits until a line matching `pattern` and then the `# new generation` line that ends its transaction
   * have shown up: nft prints a transaction's changes first and its generation line after, possibly in a
   * later read, so a count of generation lines taken right after the change can miss the last one.
   */
  waitForCommit(pattern: RegExp, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** `nft monitor` in a namespace: every committed change (rules, sets, elements, ...) and each new generation. */
export function startMonitor(ns: string): Monitor {
  const child = spawn('ip', ['netns', 'exec', ns, 'nft', 'monitor'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const GENERATION = /^# new generation/;
  createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    for (const w of [...waiters]) {
      if (w.pattern.test(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    lines,
    waitFor(pattern, timeoutMs = 10_000) {
      if (lines.some((l) => pattern.test(l))) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`nft monitor did not show ${pattern} (saw ${JSON.stringify(lines)})`)), timeoutMs);
        waiters.push({ pattern, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
    async waitForCommit(pattern, timeoutMs = 10_000) {
      await this.waitFor(pattern, timeoutMs);
      const at = lines.findIndex((l) => pattern.test(l));
      if (lines.slice(at + 1).some((l) => GENERATION.test(l))) return;
      // Only lines still to come can end that transaction: a waiter sees new lines, never the ones already read.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`nft monitor showed no generation after ${pattern} (saw ${JSON.stringify(lines)})`)),
          timeoutMs,
        );
        waiters.push({ pattern: GENERATION, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A logger that keeps what it is given (to see which nft transactions a call ran). */
export function recordingLogger() {
  const entries: { level: string; obj: object; msg?: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void entries.push({ level, obj, ...(msg === undefined ? {} : { msg }) });
  return { entries, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}
