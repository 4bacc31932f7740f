/**
 * Helpers of the CNI plugin's integration tests: the built plugin and libcni driver, conflists written into
 * a test's temp dir, the driver run inside a node namespace (as a runtime on that node would run it), and the
 * plugin exec'd directly (GC and STATUS, which libcni 1.1.2 does not have).
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nsExec } from '@nodenet/testkit';

export const PLUGIN_DIST = fileURLToPath(new URL('../dist/', import.meta.url));
export const PLUGIN = join(PLUGIN_DIST, 'nodenet');
export const DRIVER = join(PLUGIN_DIST, 'cni-driver');
/** Where Debian's containernetworking-plugins are (tuning, bridge, host-local, portmap). */
export const STOCK_PLUGINS = '/usr/lib/cni';

export interface CniErrorObject {
  readonly code: number;
  readonly msg: string;
  readonly details?: string;
}

export interface DriverOutput {
  readonly ok: boolean;
  readonly result?: CniResult;
  readonly error?: CniErrorObject;
}

export interface CniResult {
  readonly cniVersion: string;
  readonly interfaces: { name: string; mac: string; sandbox?: string; mtu?: number }[];
  readonly ips: { address: string; gateway: string; interface: number; version?: string }[];
  readonly routes: { dst: string; gw?: string }[];
  readonly dns: Record<string, unknown>;
}

/** A nodenet conflist (plus chained plugins after it). */
export function nodenetConflist(options: {
  name?: string;
  cniVersion?: string;
  socket: string;
  extra?: Record<string, unknown>;
  chain?: Record<string, unknown>[];
}): object {
  return {
    cniVersion: options.cniVersion ?? '1.0.0',
    name: options.name ?? 'nodenet',
    plugins: [
      { type: 'nodenet', socket: options.socket, capabilities: { portMappings: true, ips: true }, ...options.extra },
      ...(options.chain ?? []),
    ],
  };
}

export async function writeConflist(dir: string, file: string, conflist: object): Promise<string> {
  const path = join(dir, file);
  await writeFile(path, `${JSON.stringify(conflist, null, 2)}\n`);
  return path;
}

export interface DriverCall {
  readonly op: 'add' | 'check' | 'del';
  readonly conflist: string;
  readonly id: string;
  readonly netns: string;
  readonly ifname?: string;
  readonly ports?: readonly { hostPort: number; containerPort: number; protocol: string; hostIP?: string }[];
  readonly ips?: readonly string[];
  /** libcni's cache directory (a temp dir of the test). */
  readonly cache: string;
}

/** Runs the libcni driver in `ns` (the node's namespace), with the plugin dir first in the path. */
export async function driver(ns: string, call: DriverCall): Promise<DriverOutput> {
  const args = [
    `-op=${call.op}`,
    `-conflist=${call.conflist}`,
    `-id=${call.id}`,
    `-netns=${call.netns}`,
    `-ifname=${call.ifname ?? 'eth0'}`,
    `-path=${PLUGIN_DIST}:${STOCK_PLUGINS}`,
    `-cache=${call.cache}`,
    ...(call.ports ? [`-ports=${JSON.stringify(call.ports)}`] : []),
    ...(call.ips ? [`-ips=${JSON.stringify(call.ips)}`] : []),
  ];
  const r = await nsExec(ns, DRIVER, args, { allowFailure: true, timeoutMs: 60_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as DriverOutput;
  } catch {
    throw new Error(`the libcni driver printed no JSON (exit ${r.exitCode}): ${r.stderr || line}`);
  }
}

/** The driver's ADD, expected to succeed; returns the result. */
export async function add(ns: string, call: Omit<DriverCall, 'op'>): Promise<CniResult> {
  const out = await driver(ns, { ...call, op: 'add' });
  if (!out.ok) throw new Error(`ADD of ${call.id} failed: ${JSON.stringify(out.error)}`);
  return out.result!;
}

export interface PluginRun {
  readonly exitCode: number;
  readonly stdout: string;
  readonly json?: unknown;
}

/** Execs the plugin as a runtime does: CNI_* in the environment, the network config on stdin. */
export function execPlugin(env: Record<string, string>, config: object | string): Promise<PluginRun> {
  return new Promise((resolve, reject) => {
    const child = execFile(PLUGIN, [], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, timeout: 60_000 }, (err, stdout) => {
      if (err && typeof err.code !== 'number') return reject(new Error(err.message, { cause: err }));
      let json: unknown;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ exitCode: err ? Number(err.code) : 0, stdout, ...(json !== undefined ? { json } : {}) });
    });
    child.stdin!.end(typeof config === 'string' ? config : JSON.stringify(config));
  });
}

/** The plugin's config for one call (what libcni hands a plugin: the conflist's entry plus name and cniVersion). */
export function pluginConfig(options: { cniVersion: string; name?: string; socket: string; extra?: Record<string, unknown> }): object {
  return { cniVersion: options.cniVersion, name: options.name ?? 'nodenet', type: 'nodenet', socket: options.socket, ...options.extra };
}
