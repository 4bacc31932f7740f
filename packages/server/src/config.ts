/**
 * The daemon's configuration: a YAML file (JSON is valid YAML) plus command-line flags overriding it.
 * Everything is validated here, before the daemon touches anything, so a bad key fails the start with one
 * message naming it (exit code 2). Addresses and subnets go through core's parse functions: the same rules
 * as the API's.
 */
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { isIPv6 } from 'node:net';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import {
  InvalidArgumentError,
  MAX_VNI,
  MIN_VNI,
  OVERLAY_MODES,
  describeOverlap,
  firstNodeOverlap,
  subnetsOfNode,
  parseIpv4Address,
  parseIpv6InstanceSubnet,
  parseNodeRecord,
  parseUnderlayAddress,
  Subnet,
  type NodeRecord,
  type IpAddress,
} from '@nodenet/core';
import { OVSDB_REMOTE_RE } from '@nodenet/backend-ovs';
// The subpath holds only the file checks: the adapter itself (etcd3 and its gRPC stack) loads only for etcd membership.
import {
  checkEtcdEndpointSchemes,
  checkEtcdTlsShape,
  readEtcdTlsFiles,
  type EtcdTlsFiles,
  type EtcdTlsMaterial,
} from '@nodenet/membership-etcd/tls';
import { checkMetricsConfig, metricsSchema, resolveMetricsPaths, type MetricsConfig } from './metrics-config.js';
import { parseIdentity, type AllowList } from './access.js';
import { DEFAULT_LIMITS, parseSocketGroup, parseSocketMode, type Limits } from './door-config.js';
import { worldWritableProblem } from './local-access.js';

/** A configuration or command-line problem: the daemon exits with code 2 and changes nothing. */
export class ConfigError extends Error {
  readonly exitCode = 2;
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type ListenAddress =
  | { readonly kind: 'unix'; readonly path: string; readonly uri: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly uri: string };

/** A static peer: its IPv4 `subnet`, its IPv6 `ipv6Subnet`, or both (core's NodeRecord). */
export type PeerConfig = NodeRecord;

/** The validated configuration, defaults filled in. */
export interface DaemonConfig {
  readonly nodeName: string;
  /** Absent: the backend finds the source address of the default route. IPv6 for an IPv6 underlay. */
  readonly underlayAddress?: IpAddress;
  readonly listen: ListenAddress;
  readonly insecure: boolean;
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca?: string; readonly allow?: AllowList };
  /** The unix socket's permission bits: 0600 by default, 0660 with socketGroup. Never world-accessible. */
  readonly socketMode: number;
  /** The unix socket's group (a name or a gid), for the users allowed to call the daemon. */
  readonly socketGroup?: string | number;
  /** Calls served at once and the largest request accepted. */
  readonly limits: Limits;
  readonly backend: string;
  readonly stateDir: string;
  readonly reservedPorts: readonly number[];
  readonly overlay: { readonly mode: 'vxlan' | 'host-gw'; readonly vni: number; readonly port: number };
  readonly membership: {
    readonly type: 'static' | 'etcd';
    readonly peers: readonly PeerConfig[];
    readonly etcd: {
      readonly endpoints: readonly string[];
      readonly prefix: string;
      readonly leaseTtlSeconds: number;
      /** A graceful stop leaves this node's record this long (a restart keeps peers' routes); 0: it expires with the lease. */
      readonly restartGraceSeconds: number;
      /** PEM files (absolute paths) for https endpoints: ca verifies etcd; cert + key are this node's client certificate. */
      readonly tls?: EtcdTlsFiles;
    };
  };
  readonly ovs: { readonly db: string; readonly runDir: string; readonly datapathType: 'system' | 'netdev' };
  readonly logLevel: LogLevel;
  /** How often the daemon compares what it owns with what it recorded and repairs drift. */
  readonly reconcileIntervalSeconds: number;
  /** The Prometheus endpoint (metrics-config.ts). */
  readonly metrics: MetricsConfig;
  /** The unix socket the CNI plugin calls (null: off). */
  readonly cni: { readonly listen: { readonly path: string; readonly uri: string } | null };
  /** Follow the kernel's and Open vSwitch's change notifications and repair within a second (change-watcher.ts). */
  readonly repairOnChange: boolean;
  /** Masquerade instances' IPv6 traffic leaving the cluster (default true; false for routed global prefixes). */
  readonly ipv6Masquerade: boolean;
}

export const DEFAULT_LISTEN = 'unix:///run/nodenet/nodenet.sock';
export const DEFAULT_STATE_DIR = '/var/lib/nodenet';
/** The CNI plugin's socket: beside the API's unix socket (so by default this), or here when the API is on TCP. */
export const DEFAULT_CNI_LISTEN = 'unix:///run/nodenet/cni.sock';

/** The flags that override config keys: flag name (commander's camelCase attribute) -> config key. */
export const FLAG_KEYS = {
  listen: 'listen',
  backend: 'backend',
  stateDir: 'stateDir',
  nodeName: 'nodeName',
  underlayAddress: 'underlayAddress',
  logLevel: 'logLevel',
  metricsListen: 'metrics.listen',
  cniListen: 'cni.listen',
} as const;
export type FlagOverrides = { -readonly [K in keyof typeof FLAG_KEYS]?: string };

const FLAG_OF_KEY: Record<string, string> = {
  listen: '--listen',
  backend: '--backend',
  stateDir: '--state-dir',
  nodeName: '--node-name',
  underlayAddress: '--underlay-address',
  logLevel: '--log-level',
  'metrics.listen': '--metrics-listen',
  'cni.listen': '--cni-listen',
};

// ------------------------------------------------------------------------------------------------------
// Field schemas

const show = (v: unknown): string => {
  const s = typeof v === 'string' ? `'${v}'` : (JSON.stringify(v) ?? String(v));
  return s.length > 60 ? `${s.slice(0, 60)}...` : s;
};

function intIn(min: number, max: number) {
  const error = (iss: { input?: unknown }) => `must be an integer ${min}..${max} (got ${show(iss.input)})`;
  return z.int({ error }).min(min, { error }).max(max, { error });
}

function str(what: string) {
  return z.string({ error: (iss) => (iss.input === undefined ? `is required: give ${what}` : `must be ${what} (got ${show(iss.input)})`) });
}

function bool() {
  return z.boolean({ error: (iss) => `must be true or false (got ${show(iss.input)})` });
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: (iss) => `must be one of ${values.join(', ')} (got ${show(iss.input)})` });
}

/** Runs one of core's parse functions; its InvalidArgumentError becomes the issue's message (zod adds the key). */
function viaCore<T>(parse: (input: unknown, field: string) => T) {
  return (value: string, ctx: z.RefinementCtx): T => {
    try {
      return parse(value, '');
    } catch (e) {
      const message = e instanceof InvalidArgumentError ? e.message.replace(/^: /, '') : String(e);
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }
  };
}

/** Runs a parse function of this package; its Error becomes the issue's message (zod adds the key). */
function viaParser<I, T>(parse: (input: I) => T) {
  return (value: I, ctx: z.RefinementCtx): T => {
    try {
      return parse(value);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
  };
}

/** A `tls.allow` list: CN=NAME, DNS:NAME or URI:URI entries (access.ts checks and canonicalises them). */
const identities = () =>
  z.array(str('a client identity').transform(viaParser(parseIdentity)), {
    error: (iss) => `must be a list of client identities (got ${show(iss.input)})`,
  });

// Names of nodes: host-name characters, so they are safe as keys (etcd) and in logs.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const nodeName = () =>
  str('a node name').regex(NAME_RE, {
    error: (iss) =>
      `${show(iss.input)} is not a usable node name: use 1..253 letters, digits, '.', '-' or '_', starting with a letter or digit`,
  });

const path = (what: string) =>
  str(what)
    .min(1, { error: `must be ${what}, not empty` })
    .refine((p) => !p.includes('\0'), { error: 'must not contain a NUL byte' });

/** sun_path holds 108 bytes including the terminating NUL. */
const UNIX_PATH_MAX = 107;

export function parseListen(input: string): ListenAddress {
  if (input.startsWith('unix:')) {
    // unix:///abs/path (the gRPC form) or unix:/abs/path.
    const path = input.startsWith('unix://') ? input.slice('unix://'.length) : input.slice('unix:'.length);
    if (!path.startsWith('/'))
      throw new Error(`${show(input)}: a unix socket needs an absolute path, e.g. unix:///run/nodenet/nodenet.sock`);
    if (path.includes('\0')) throw new Error(`${show(input)}: the path must not contain a NUL byte`);
    if (Buffer.byteLength(path) > UNIX_PATH_MAX) {
      throw new Error(`${show(input)}: a unix socket path may be at most ${UNIX_PATH_MAX} bytes: choose a shorter path`);
    }
    return { kind: 'unix', path, uri: `unix://${path}` };
  }
  const m = /^(.*):(\d+)$/.exec(input);
  const usage = 'use unix:///PATH or HOST:PORT, e.g. 0.0.0.0:50051';
  if (!m) throw new Error(`${show(input)} is not a listen address: ${usage}`);
  const host = m[1]!;
  const portText = m[2]!;
  const port = Number(portText);
  if (!/^[1-9]\d{0,4}$/.test(portText) || port > 65535) throw new Error(`${show(input)}: the port must be 1..65535`);
  if (host.startsWith('[') && host.endsWith(']') && isIPv6(host.slice(1, -1))) {
    return { kind: 'tcp', host, port, uri: `${host}:${port}` };
  }
  if (/^[0-9.]+$/.test(host)) {
    try {
      parseIpv4Address(host, 'listen');
    } catch (e) {
      throw new Error(`${show(input)}: ${(e as Error).message.replace(/^listen: /, '')}`, { cause: e });
    }
    return { kind: 'tcp', host, port, uri: `${host}:${port}` };
  }
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/.test(host)) {
    throw new Error(`${show(input)}: '${host}' is neither an IPv4 address nor a host name: ${usage}`);
  }
  return { kind: 'tcp', host, port, uri: `${host}:${port}` };
}

const listen = () =>
  str('unix:///PATH or HOST:PORT').transform((value, ctx): ListenAddress => {
    try {
      return parseListen(value);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
  });

const underlay = () => str('an IPv4 or IPv6 address, e.g. 198.18.0.1 or 2001:db8:18::1').transform(viaCore(parseUnderlayAddress));

/**
 * A static peer: `subnet` (IPv4; an IPv6-only peer may give its IPv6 subnet here), `ipv6Subnet` (IPv6, /64
 * to /120), or both. Each key is checked by core's parsers; parseNodeRecord then puts the families in place.
 */
const peer = z
  .strictObject({
    name: nodeName(),
    underlayAddress: underlay(),
    subnet: str('a subnet in CIDR form, e.g. 198.19.2.0/24')
      .transform(
        viaCore((input, field) =>
          typeof input === 'string' && input.includes(':') ? parseIpv6InstanceSubnet(input, field) : Subnet.parse(input, field),
        ),
      )
      .optional(),
    ipv6Subnet: str('an IPv6 subnet in CIDR form, e.g. fd19:0:0:2::/64').transform(viaCore(parseIpv6InstanceSubnet)).optional(),
  })
  .transform((p, ctx): PeerConfig => {
    try {
      return parseNodeRecord(
        { name: p.name, underlayAddress: p.underlayAddress, subnet: p.subnet?.toString(), ipv6Subnet: p.ipv6Subnet?.toString() },
        'peer',
      );
    } catch (e) {
      const message = e instanceof InvalidArgumentError ? e.message.replace(/^peer\.subnet: /, '') : String(e);
      ctx.addIssue({ code: 'custom', path: ['subnet'], message });
      return z.NEVER;
    }
  });

const etcdEndpoint = str('an http(s) URL').refine(
  (u) => {
    try {
      const url = new URL(u);
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
    } catch {
      return false;
    }
  },
  { error: (iss) => `${show(iss.input)} is not an etcd endpoint: use http://HOST:PORT or https://HOST:PORT` },
);

const configSchema = z.strictObject({
  nodeName: nodeName().default(() => hostname()),
  underlayAddress: underlay().optional(),
  listen: listen().default(() => parseListen(DEFAULT_LISTEN)),
  insecure: bool().default(false),
  tls: z
    .strictObject({
      cert: path('the path of a PEM certificate file'),
      key: path('the path of a PEM private-key file'),
      ca: path('the path of a PEM CA certificate file').optional(),
      // The services of access.ts's GUARDED_SERVICES; a service left out admits every client the CA signed.
      allow: z.strictObject({ Network: identities().optional(), NetworkAdmin: identities().optional() }).optional(),
    })
    .optional(),
  backend: str('a backend name').min(1, { error: 'must name a backend' }).default('iproute2'),
  stateDir: path('a directory path').default(DEFAULT_STATE_DIR),
  reservedPorts: z.array(intIn(1, 65535), { error: (iss) => `must be a list of ports (got ${show(iss.input)})` }).default([]),
  overlay: z
    .strictObject({
      mode: oneOf([...OVERLAY_MODES]).default('vxlan'),
      vni: intIn(MIN_VNI, MAX_VNI).default(4242),
      port: intIn(1, 65535).default(4789),
    })
    .prefault({}),
  membership: z
    .strictObject({
      type: oneOf(['static', 'etcd']).default('static'),
      peers: z.array(peer, { error: (iss) => `must be a list of peers (got ${show(iss.input)})` }).default([]),
      etcd: z
        .strictObject({
          endpoints: z
            .array(etcdEndpoint, { error: (iss) => `must be a list of URLs (got ${show(iss.input)})` })
            .min(1, { error: 'must list at least one endpoint' })
            .default(['http://127.0.0.1:2379']),
          prefix: str('a key prefix starting with /')
            .regex(/^\/[\x21-\x7e]*$/, { error: 'must start with / and contain no spaces, e.g. /nodenet' })
            .default('/nodenet'),
          leaseTtlSeconds: intIn(1, 3600).default(15),
          restartGraceSeconds: intIn(0, 3600).default(60),
          tls: z
            .strictObject({
              ca: path('the path of a PEM CA certificate file').optional(),
              cert: path('the path of a PEM client certificate file').optional(),
              key: path('the path of a PEM private-key file').optional(),
            })
            .optional(),
        })
        .prefault({}),
    })
    .prefault({}),
  ovs: z
    .strictObject({
      db: str('an OVSDB remote')
        .regex(OVSDB_REMOTE_RE, {
          error: (iss) => `${show(iss.input)} is not an OVSDB remote: use unix:/PATH, tcp:HOST:PORT or ssl:HOST:PORT`,
        })
        .default('unix:/var/run/openvswitch/db.sock'),
      runDir: path('a directory path').default('/var/run/openvswitch'),
      datapathType: oneOf(['system', 'netdev']).default('system'),
    })
    .prefault({}),
  logLevel: oneOf(LOG_LEVELS).default('info'),
  reconcileIntervalSeconds: intIn(1, 86400).default(30),
  metrics: metricsSchema,
  socketMode: z.unknown().transform(viaParser(parseSocketMode)).optional(),
  socketGroup: z.unknown().transform(viaParser(parseSocketGroup)).optional(),
  limits: z
    .strictObject({
      maxInFlight: intIn(1, 100_000).default(DEFAULT_LIMITS.maxInFlight),
      maxMessageBytes: intIn(1024, 64 << 20).default(DEFAULT_LIMITS.maxMessageBytes),
    })
    .prefault({}),
  cni: z
    .strictObject({
      listen: str('unix:///PATH, or "" to turn the CNI socket off')
        .transform((value, ctx) => {
          if (value === '') return null;
          try {
            const parsed = parseListen(value);
            if (parsed.kind === 'unix') return { path: parsed.path, uri: parsed.uri };
            ctx.addIssue({
              code: 'custom',
              message: `${show(value)}: the CNI plugin reaches nodenetd on a unix socket only: use unix:///PATH (or "" for none)`,
            });
          } catch (e) {
            ctx.addIssue({ code: 'custom', message: (e as Error).message });
          }
          return z.NEVER;
        })
        .optional(),
    })
    .prefault({}),
  repairOnChange: bool().default(true),
  ipv6Masquerade: bool().default(true),
});

type ParsedConfig = z.output<typeof configSchema>;

// ------------------------------------------------------------------------------------------------------
// Parsing

export interface ParseConfigOptions {
  /** Where the values came from, for messages (e.g. the config file's path). */
  readonly source?: string;
  /** Relative paths in the file are taken relative to this directory (the config file's). */
  readonly baseDir?: string;
  readonly flags?: FlagOverrides;
  /** Valid backend names (the wiring's registry). */
  readonly backends: readonly string[];
}

/** Validates a raw config object (from YAML) with flag overrides applied; throws ConfigError naming every bad key. */
export function parseConfig(raw: unknown, options: ParseConfigOptions): DaemonConfig {
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([
      `config: the file must hold a mapping of keys (e.g. listen: ...), not ${Array.isArray(raw) ? 'a list' : show(raw)}`,
    ]);
  }
  const merged: Record<string, unknown> = { ...(dropNulls(raw) as Record<string, unknown>) };
  const fromFlag = new Set<string>();
  for (const [flag, key] of Object.entries(FLAG_KEYS)) {
    const value = options.flags?.[flag as keyof FlagOverrides];
    if (value !== undefined) {
      // A dotted key (metrics.listen) sets one key of a mapping, keeping the file's other keys.
      const [outer, inner] = key.split('.') as [string, string | undefined];
      if (inner === undefined) merged[key] = value;
      else merged[outer] = { ...(isMapping(merged[outer]) ? merged[outer] : {}), [inner]: value };
      fromFlag.add(key);
    }
  }

  const result = configSchema.safeParse(merged);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((issue) => describeIssue(issue, fromFlag)));
  }
  const config = result.data;
  const problems = crossCheck(config, options.backends).map(({ key, message }) => label(key, fromFlag) + message);
  if (problems.length > 0) throw new ConfigError(problems);
  return resolvePaths(config, options.baseDir ?? process.cwd(), fromFlag);
}

/** Reads the config file (when given) and applies the flags. */
export async function loadConfig(options: { file?: string; flags?: FlagOverrides; backends: readonly string[] }): Promise<DaemonConfig> {
  let raw: unknown = {};
  let baseDir = process.cwd();
  if (options.file !== undefined) {
    const file = resolve(options.file);
    baseDir = dirname(file);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        code === 'ENOENT'
          ? 'no such file'
          : code === 'EACCES'
            ? 'permission denied'
            : code === 'EISDIR'
              ? 'it is a directory'
              : (e as Error).message;
      throw new ConfigError([`config: cannot read the config file ${file}: ${why}`]);
    }
    raw = parseYaml(text, file);
    const unsafe = await worldWritableProblem(file, 'the config file');
    if (unsafe) throw new ConfigError([`config: ${unsafe}`]);
  }
  const config = parseConfig(raw, { source: options.file, baseDir, flags: options.flags ?? {}, backends: options.backends });
  if (config.membership.type === 'etcd') readEtcdTls(config);
  return config;
}

function parseYaml(text: string, file: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `config: ${file} is not valid YAML: ${e.message.split('\n')[0]}`));
  }
  return doc.toJS();
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function dropNulls(value: unknown): unknown {
  // `key:` with no value (YAML null) means "not set": the default applies.
  if (Array.isArray(value)) return value.map(dropNulls);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => [k, dropNulls(v)]),
    );
  }
  return value;
}

function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

function label(key: string, fromFlag: ReadonlySet<string>): string {
  if (fromFlag.has(key)) return `${FLAG_OF_KEY[key]}: `;
  return key === '' ? 'config: ' : `config: ${key}: `;
}

function describeIssue(issue: z.core.$ZodIssue, fromFlag: ReadonlySet<string>): string {
  const key = keyPath(issue.path);
  if (issue.code === 'unrecognized_keys') {
    const valid = knownKeys(issue.path);
    const where = key === '' ? 'config: ' : `config: ${key}: `;
    const names = issue.keys.map((k) => `'${k}'`).join(', ');
    return `${where}unknown key${issue.keys.length > 1 ? 's' : ''} ${names}${valid.length ? `: valid keys are ${valid.join(', ')}` : ''}`;
  }
  if (issue.code === 'invalid_type' && issue.expected === 'object') {
    return `${label(key, fromFlag)}must be a mapping of keys (got ${show(issue.input)})`;
  }
  return `${label(key, fromFlag)}${issue.message}`;
}

/** The keys the schema accepts at `path` (for "unknown key" messages). */
function knownKeys(path: readonly PropertyKey[]): string[] {
  let schema: unknown = configSchema;
  const unwrap = (s: unknown): unknown => {
    for (;;) {
      const def = (s as { _zod?: { def?: { type?: string; innerType?: unknown; in?: unknown } } })._zod?.def;
      if (def?.innerType) s = def.innerType;
      else if (def?.type === 'pipe') s = def.in;
      else return s;
    }
  };
  for (const p of path) {
    const def = (unwrap(schema) as { _zod: { def: { type: string; shape?: Record<string, unknown>; element?: unknown } } })._zod.def;
    schema = typeof p === 'number' ? def.element : def.shape?.[String(p)];
    if (!schema) return [];
  }
  const shape = (unwrap(schema) as { _zod: { def: { shape?: Record<string, unknown> } } })._zod.def.shape;
  return shape ? Object.keys(shape) : [];
}

/** Rules across keys, checked after every key is valid on its own. */
function crossCheck(c: ParsedConfig, backends: readonly string[]): { key: string; message: string }[] {
  const problems: { key: string; message: string }[] = [];
  if (!backends.includes(c.backend)) {
    problems.push({ key: 'backend', message: `unknown backend '${c.backend}': valid backends are ${backends.join(', ')}` });
  }
  if (c.listen.kind === 'tcp' && !c.tls && !c.insecure) {
    problems.push({
      key: 'listen',
      message: `${c.listen.uri} is TCP without TLS, which is refused: set tls.cert and tls.key (and tls.ca for client certificates), or set insecure: true on a trusted network`,
    });
  }
  if (c.insecure && c.tls) {
    problems.push({
      key: 'insecure',
      message: 'insecure: true and tls are both set: remove one (tls secures the TCP listener; insecure allows it without TLS)',
    });
  }
  if (c.cni.listen && c.listen.kind === 'unix' && c.cni.listen.path === c.listen.path) {
    problems.push({
      key: 'cni.listen',
      message: `${c.cni.listen.uri} is also the API's socket (listen): give the CNI plugin its own socket`,
    });
  }
  if (c.listen.kind === 'unix' && c.tls) {
    problems.push({
      key: 'tls',
      message: `tls applies to a TCP listen address, but listen is ${c.listen.uri}: remove tls or listen on HOST:PORT`,
    });
  }
  if (c.tls?.allow && !c.tls.ca) {
    problems.push({
      key: 'tls.allow',
      message: 'names client identities, which only client certificates carry: set tls.ca (mTLS) or remove tls.allow',
    });
  }
  for (const key of ['socketMode', 'socketGroup'] as const) {
    if (c[key] !== undefined && c.listen.kind !== 'unix') {
      problems.push({ key, message: `applies to a unix socket, but listen is ${c.listen.uri}: remove ${key} or listen on unix:///PATH` });
    }
  }
  problems.push(...crossCheckEtcd(c.membership.etcd));
  problems.push(...checkMetricsConfig(c.metrics, c.listen));
  if (c.membership.type === 'etcd' && c.membership.peers.length > 0) {
    problems.push({
      key: 'membership.peers',
      message: 'peers are for static membership; with type etcd the nodes find each other in etcd: remove peers or use type static',
    });
  }
  const names = new Map<string, number>();
  c.membership.peers.forEach((p, i) => {
    const key = `membership.peers[${i}]`;
    if (p.name === c.nodeName)
      problems.push({ key: `${key}.name`, message: `'${p.name}' is this node's own name (nodeName): list only the other nodes` });
    const seen = names.get(p.name);
    if (seen !== undefined)
      problems.push({ key: `${key}.name`, message: `'${p.name}' is listed twice (also membership.peers[${seen}]): give each peer once` });
    else names.set(p.name, i);
    if (c.underlayAddress !== undefined && p.underlayAddress === c.underlayAddress) {
      problems.push({
        key: `${key}.underlayAddress`,
        message: `${p.underlayAddress} is this node's own underlay address: list only the other nodes`,
      });
    }
    const clash = firstNodeOverlap(
      p,
      c.membership.peers
        .slice(0, i)
        .flatMap((q, j) => subnetsOfNode(q).map((subnet) => ({ subnet, holder: `the subnet of membership.peers[${j}] (${q.name})` }))),
    );
    if (clash) {
      const field = clash.subnet.toString() === String(p.ipv6Subnet) && p.subnet ? 'ipv6Subnet' : 'subnet';
      problems.push({ key: `${key}.${field}`, message: `${clash.subnet} ${describeOverlap(clash.held)}: every node needs its own subnet` });
    }
    c.membership.peers.slice(0, i).forEach((q, j) => {
      if (q.underlayAddress === p.underlayAddress) {
        problems.push({
          key: `${key}.underlayAddress`,
          message: `${p.underlayAddress} is also the address of membership.peers[${j}] (${q.name})`,
        });
      }
    });
  });
  return problems;
}

/** etcd's endpoints and TLS settings fit together (the files are read later, by readEtcdTls). */
function crossCheckEtcd(etcd: ParsedConfig['membership']['etcd']): { key: string; message: string }[] {
  const problems = checkEtcdEndpointSchemes(etcd.endpoints, etcd.tls !== undefined);
  if (etcd.tls) {
    problems.push(
      ...checkEtcdTlsShape({ ca: etcd.tls.ca !== undefined, cert: etcd.tls.cert !== undefined, key: etcd.tls.key !== undefined }),
    );
  }
  return problems;
}

function resolvePaths(c: ParsedConfig, baseDir: string, fromFlag: ReadonlySet<string>): DaemonConfig {
  const abs = (p: string, key: string) => (isAbsolute(p) ? p : resolve(fromFlag.has(key) ? process.cwd() : baseDir, p));
  const { underlayAddress, tls, socketMode, socketGroup, ...rest } = c;
  const { tls: etcdTls, ...etcd } = c.membership.etcd;
  return {
    ...rest,
    ...(underlayAddress !== undefined ? { underlayAddress } : {}),
    ...(tls
      ? {
          tls: {
            cert: abs(tls.cert, 'tls'),
            key: abs(tls.key, 'tls'),
            ...(tls.ca ? { ca: abs(tls.ca, 'tls') } : {}),
            ...(tls.allow ? { allow: tls.allow } : {}),
          },
        }
      : {}),
    socketMode: socketMode ?? (socketGroup !== undefined ? 0o660 : 0o600),
    ...(socketGroup !== undefined ? { socketGroup } : {}),
    stateDir: abs(c.stateDir, 'stateDir'),
    membership: {
      ...c.membership,
      etcd: {
        ...etcd,
        ...(etcdTls
          ? {
              tls: {
                ...(etcdTls.ca !== undefined ? { ca: abs(etcdTls.ca, 'membership.etcd.tls.ca') } : {}),
                ...(etcdTls.cert !== undefined ? { cert: abs(etcdTls.cert, 'membership.etcd.tls.cert') } : {}),
                ...(etcdTls.key !== undefined ? { key: abs(etcdTls.key, 'membership.etcd.tls.key') } : {}),
              },
            }
          : {}),
      },
    },
    ovs: { ...c.ovs, runDir: abs(c.ovs.runDir, 'ovs.runDir') },
    metrics: resolveMetricsPaths(c.metrics, abs),
    cni: { listen: c.cni.listen === undefined ? defaultCniListen(c.listen) : c.cni.listen },
  };
}

function defaultCniListen(listen: ListenAddress): { path: string; uri: string } {
  const path = listen.kind === 'unix' ? join(dirname(listen.path), 'cni.sock') : DEFAULT_CNI_LISTEN.slice('unix://'.length);
  return { path, uri: `unix://${path}` };
}

/**
 * Reads and checks the PEM files of `membership.etcd.tls` (undefined without tls). A file that cannot be
 * read, a PEM that does not parse or a key that does not match its certificate is a ConfigError naming the
 * key and the path. loadConfig calls it for etcd membership, so nodenetd refuses such files before it
 * touches anything; the wiring calls it again to hand the contents to the etcd client.
 */
export function readEtcdTls(config: DaemonConfig): EtcdTlsMaterial | undefined {
  const files = config.membership.etcd.tls;
  if (!files) return undefined;
  const { material, problems } = readEtcdTlsFiles(files);
  if (problems.length > 0) throw new ConfigError(problems.map((p) => `config: ${p.key}: ${p.message}`));
  return material;
}

/** A one-line summary for the start log (no secrets: paths only). */
export function configSummary(c: DaemonConfig): Record<string, unknown> {
  return {
    nodeName: c.nodeName,
    underlayAddress: c.underlayAddress ?? '(default route source)',
    listen: c.listen.uri,
    transport: c.listen.kind === 'unix' ? 'unix' : c.tls ? (c.tls.ca ? 'mtls' : 'tls') : 'insecure',
    ...(c.listen.kind === 'unix' ? { socketMode: `0${c.socketMode.toString(8)}`, socketGroup: c.socketGroup ?? null } : {}),
    ...(c.tls?.allow ? { allow: c.tls.allow } : {}),
    limits: c.limits,
    backend: c.backend,
    stateDir: c.stateDir,
    reservedPorts: c.reservedPorts,
    overlay: c.overlay,
    membership:
      c.membership.type === 'etcd'
        ? { type: 'etcd', etcd: c.membership.etcd }
        : {
            type: c.membership.type,
            peers: c.membership.peers.map((p) => ({
              name: p.name,
              underlayAddress: p.underlayAddress,
              ...(p.subnet ? { subnet: p.subnet.toString() } : {}),
              ...(p.ipv6Subnet ? { ipv6Subnet: p.ipv6Subnet.toString() } : {}),
            })),
          },
    logLevel: c.logLevel,
    reconcileIntervalSeconds: c.reconcileIntervalSeconds,
    metrics: c.metrics.listen
      ? { listen: c.metrics.listen.uri, transport: c.metrics.tls ? (c.metrics.tls.ca ? 'mtls' : 'tls') : 'http' }
      : 'off',
    cniListen: c.cni.listen?.uri ?? '(off)',
    repairOnChange: c.repairOnChange,
    ipv6Masquerade: c.ipv6Masquerade,
  };
}
