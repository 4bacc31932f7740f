/**
 * The plugin's request as the daemon receives it (the CNI_* environment and the network config the runtime
 * gave on stdin), validated here: every problem is a CNI error naming the key and saying what to change.
 */
import {
  addressFamily,
  InvalidArgumentError,
  parseHostAddress,
  parseIpAddress,
  parseIpv4Net,
  parseIpv6Net,
  type CniNets,
  type IpAddress,
  type Ipv4Address,
  type Ipv6Address,
  type PortMappingInput,
} from '@nodenet/core';
import { CNI_CODES, CniError } from './errors.js';

export const CNI_VERSIONS = ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof CNI_VERSIONS)[number];

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

/** What the plugin forwards: the CNI_* variables and the network config, unchanged. */
export interface CniRequest {
  readonly command: CniCommand;
  readonly containerId: string;
  readonly netns: string;
  readonly ifname: string;
  readonly args: string;
  readonly path: string;
  readonly config: unknown;
}

/** An attachment's identity in the spec: the container and the interface name inside it. */
export interface AttachmentKey {
  readonly containerId: string;
  readonly ifname: string;
}

/** The network config, validated. */
export interface NetConf {
  readonly cniVersion: CniVersion;
  readonly name: string;
  /**
   * The node's CNI as the conflist describes it (`subnet`/`gateway` for IPv4, `ipv6Subnet`/`ipv6Gateway` for
   * IPv6, either or both): created from it when the node has none yet, checked against it otherwise.
   */
  readonly nodeCni?: CniNets;
  /** Passed through to the result. */
  readonly dns?: Record<string, unknown>;
  /** runtimeConfig.portMappings, as nodenet's published ports. */
  readonly portMappings: PortMappingInput[];
  /**
   * Static addresses (runtimeConfig.ips, args.cni.ips or CNI_ARGS IP=), at most one per family, with their
   * prefix lengths when given. A family the node holds that is not given here is allocated.
   */
  readonly staticAddresses?: StaticAddresses;
  /** GC: the attachments the runtime still uses. */
  readonly validAttachments?: readonly AttachmentKey[];
}

export interface StaticAddress<A extends IpAddress> {
  readonly address: A;
  readonly prefixLength?: number;
}

export interface StaticAddresses {
  readonly ipv4?: StaticAddress<Ipv4Address>;
  readonly ipv6?: StaticAddress<Ipv6Address>;
}

/** Keys of a plugin's network config the spec defines (conflist-level ones included: some runtimes pass them on). */
const SPEC_KEYS = [
  'cniVersion',
  'cniVersions',
  'name',
  'type',
  'args',
  'ipMasq',
  'ipam',
  'dns',
  'prevResult',
  'runtimeConfig',
  'capabilities',
  'disableCheck',
  'disableGC',
  'cni.dev/valid-attachments',
];
/** The keys nodenet reads beyond the spec's (`socket` is the plugin's own: where nodenetd listens). */
export const NODENET_KEYS = ['socket', 'subnet', 'gateway', 'ipv6Subnet', 'ipv6Gateway'];
const KNOWN_KEYS = new Set([...SPEC_KEYS, ...NODENET_KEYS]);

const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,1023}$/;
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

function invalid(msg: string, details?: string): CniError {
  return new CniError(CNI_CODES.invalidNetworkConfig, msg, details);
}

/** Validates the envelope the plugin sent (command and CNI_* values); the config is parsed by parseNetConf. */
export function parseCniRequest(input: unknown): CniRequest {
  if (!isObject(input)) throw new CniError(CNI_CODES.decodingFailure, 'the request from the plugin is not a JSON object');
  const command = input.command;
  if (typeof command !== 'string' || !(CNI_COMMANDS as readonly string[]).includes(command)) {
    throw new CniError(
      CNI_CODES.invalidEnvironment,
      `CNI_COMMAND ${JSON.stringify(command)} is not one of ${CNI_COMMANDS.join(', ')}, VERSION`,
    );
  }
  const text = (key: string) => (typeof input[key] === 'string' ? input[key] : '');
  const request: CniRequest = {
    command: command as CniCommand,
    containerId: text('containerId'),
    netns: text('netns'),
    ifname: text('ifname'),
    args: text('args'),
    path: text('path'),
    config: input.config,
  };
  if (command === 'ADD' || command === 'DEL' || command === 'CHECK') {
    if (!CONTAINER_ID_RE.test(request.containerId)) {
      throw new CniError(
        CNI_CODES.invalidEnvironment,
        `CNI_CONTAINERID ${JSON.stringify(request.containerId)} is not a container id: use letters, digits, '_', '.', '-', starting with a letter or digit`,
      );
    }
    if (!IFNAME_RE.test(request.ifname) || request.ifname === '.' || request.ifname === '..') {
      throw new CniError(
        CNI_CODES.invalidEnvironment,
        `CNI_IFNAME ${JSON.stringify(request.ifname)} is not an interface name: use 1..15 letters, digits, '_', '.', '-'`,
      );
    }
    if (command !== 'DEL' && request.netns === '')
      throw new CniError(
        CNI_CODES.invalidEnvironment,
        `CNI_NETNS is required for ${command}: the runtime must give the container's network namespace`,
      );
  }
  return request;
}

/** Validates the network config of `request`. */
export function parseNetConf(request: CniRequest): NetConf {
  const raw = request.config;
  if (!isObject(raw)) throw new CniError(CNI_CODES.decodingFailure, 'the network config on stdin is not a JSON object');
  const unknown = Object.keys(raw).filter((k) => !KNOWN_KEYS.has(k));
  if (unknown.length > 0) {
    throw invalid(
      `unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')} in the nodenet plugin's config: remove ${unknown.length > 1 ? 'them' : 'it'}`,
      `keys nodenet reads besides the spec's: ${NODENET_KEYS.join(', ')}`,
    );
  }
  const cniVersion = raw.cniVersion;
  if (typeof cniVersion !== 'string' || !(CNI_VERSIONS as readonly string[]).includes(cniVersion)) {
    throw new CniError(
      CNI_CODES.incompatibleVersion,
      `cniVersion ${JSON.stringify(cniVersion)} is not supported by nodenet: use one of ${CNI_VERSIONS.join(', ')}`,
    );
  }
  if ((request.command === 'GC' || request.command === 'STATUS') && cniVersion !== '1.1.0') {
    throw new CniError(CNI_CODES.incompatibleVersion, `${request.command} needs cniVersion 1.1.0 (the config says ${cniVersion})`);
  }
  if (typeof raw.name !== 'string' || raw.name === '') throw invalid("'name' is required: give the network a name");
  if (raw.ipam !== undefined && !(isObject(raw.ipam) && Object.keys(raw.ipam).length === 0)) {
    throw invalid(
      "'ipam' is not used by nodenet: nodenetd allocates addresses from the node's subnet itself; remove 'ipam' (a static address goes in runtimeConfig.ips, args.cni.ips or CNI_ARGS IP=)",
    );
  }
  if (raw.dns !== undefined && !isObject(raw.dns)) throw invalid("'dns' must be an object (nameservers, domain, search, options)");
  if (raw.socket !== undefined && (typeof raw.socket !== 'string' || !raw.socket.startsWith('/'))) {
    throw invalid(`'socket' ${JSON.stringify(raw.socket)} must be the absolute path of nodenetd's CNI socket, e.g. /run/nodenet/cni.sock`);
  }
  const nodeCni = parseNodeCni(raw);
  const runtimeConfig = raw.runtimeConfig === undefined ? {} : raw.runtimeConfig;
  if (!isObject(runtimeConfig)) throw invalid("'runtimeConfig' must be an object");
  const staticAddresses = parseStaticAddresses(runtimeConfig.ips, raw.args, request.args);
  return {
    cniVersion: cniVersion as CniVersion,
    name: raw.name,
    ...(nodeCni ? { nodeCni } : {}),
    ...(isObject(raw.dns) ? { dns: raw.dns } : {}),
    portMappings: parsePortMappings(runtimeConfig.portMappings),
    ...(staticAddresses ? { staticAddresses } : {}),
    ...(request.command === 'GC' ? { validAttachments: parseValidAttachments(raw['cni.dev/valid-attachments']) } : {}),
  };
}

/**
 * The node's CNI from the conflist: IPv4 in `subnet` + `gateway`, IPv6 in `ipv6Subnet` + `ipv6Gateway`
 * (RFC 5952 text, /64 to /120), either pair or both (dual stack); each key of a pair needs the other.
 */
function parseNodeCni(raw: Record<string, unknown>): CniNets | undefined {
  const ipv4 = nodeNetKeys(raw, 'subnet', 'gateway', 4)
    ? viaCore(() => parseIpv4Net(raw.gateway, raw.subnet, 'gateway', 'subnet'))
    : undefined;
  const ipv6 = nodeNetKeys(raw, 'ipv6Subnet', 'ipv6Gateway', 6)
    ? viaCore(() => parseIpv6Net(raw.ipv6Gateway, raw.ipv6Subnet, 'ipv6Gateway', 'ipv6Subnet'))
    : undefined;
  if (ipv4) return { ipv4, ...(ipv6 ? { ipv6 } : {}) };
  return ipv6 ? { ipv6 } : undefined;
}

/** The key of the same role in the other family. */
const OTHER_FAMILY_KEY: Readonly<Record<string, string>> = {
  subnet: 'ipv6Subnet',
  gateway: 'ipv6Gateway',
  ipv6Subnet: 'subnet',
  ipv6Gateway: 'gateway',
};

/** Whether the conflist gives one family's pair of keys; refuses half a pair and a value of the other family. */
function nodeNetKeys(raw: Record<string, unknown>, subnetKey: string, gatewayKey: string, family: 4 | 6): boolean {
  const subnet = raw[subnetKey];
  const gateway = raw[gatewayKey];
  if (subnet === undefined && gateway === undefined) return false;
  const pair = `'${subnetKey}' and '${gatewayKey}' go together (the node's IPv${family} CNI subnet and its gateway address)`;
  if (subnet === undefined) throw invalid(`'${subnetKey}' is missing: ${pair}`);
  if (gateway === undefined) throw invalid(`'${gatewayKey}' is missing: ${pair}`);
  // IPv6 text always holds a ':' and IPv4 text never does: a value in the other family's key is named as such.
  for (const [key, value] of [
    [subnetKey, subnet],
    [gatewayKey, gateway],
  ] as const) {
    if (typeof value !== 'string' || value.includes(':') === (family === 6)) continue;
    throw invalid(
      `'${key}' ${JSON.stringify(value)} is IPv${family === 4 ? 6 : 4}: '${key}' takes IPv${family}; put it in '${OTHER_FAMILY_KEY[key]}' (a dual-stack node gives both pairs)`,
    );
  }
  return true;
}

function parsePortMappings(input: unknown): PortMappingInput[] {
  if (input === undefined || input === null) return [];
  if (!Array.isArray(input)) throw invalid('runtimeConfig.portMappings must be a list of {hostPort, containerPort, protocol}');
  return input.map((m: unknown, i): PortMappingInput => {
    const field = `runtimeConfig.portMappings[${i}]`;
    if (!isObject(m)) throw invalid(`${field} must be an object {hostPort, containerPort, protocol}`);
    const port = (key: string) => {
      const v = m[key];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535)
        throw invalid(`${field}.${key} ${JSON.stringify(v)} is not a port: use an integer 1..65535`);
      return v;
    };
    const protocol =
      m.protocol === undefined || m.protocol === ''
        ? 'tcp'
        : typeof m.protocol === 'string'
          ? m.protocol.toLowerCase()
          : JSON.stringify(m.protocol);
    if (protocol !== 'tcp' && protocol !== 'udp')
      throw invalid(`${field}.protocol ${JSON.stringify(m.protocol)}: nodenet publishes tcp and udp ports only`);
    const hostAddress = parseHostIP(m.hostIP, `${field}.hostIP`);
    return { hostPort: port('hostPort'), instancePort: port('containerPort'), protocol, ...(hostAddress ? { hostAddress } : {}) };
  });
}

/**
 * portmap's `hostIP`: '' , 0.0.0.0 and :: (the wildcards runtimes send for `-p 8080:80`) publish on every
 * address; an IPv4 or IPv6 address on that address only (see core's parseHostAddress for what is accepted).
 */
function parseHostIP(hostIP: unknown, field: string): IpAddress | undefined {
  if (hostIP !== undefined && typeof hostIP !== 'string')
    throw invalid(`${field} ${JSON.stringify(hostIP)} must be a string: an IPv4 or IPv6 address of the node`);
  return viaCore(() => parseHostAddress(hostIP, field));
}

/** Addresses from the `ips` capability, args.cni.ips (conventions) or CNI_ARGS IP= (the static IPAM's): one per family. */
function parseStaticAddresses(capability: unknown, args: unknown, cniArgs: string): StaticAddresses | undefined {
  const sources: { field: string; values: unknown }[] = [];
  if (capability !== undefined) sources.push({ field: 'runtimeConfig.ips', values: capability });
  if (isObject(args) && isObject(args.cni) && args.cni.ips !== undefined) sources.push({ field: 'args.cni.ips', values: args.cni.ips });
  const ipArg = cniArgs.split(';').find((kv) => kv.startsWith('IP='));
  if (ipArg) sources.push({ field: 'CNI_ARGS IP', values: ipArg.slice(3).split(',').filter(Boolean) });
  const found: { field: string; value: string }[] = [];
  for (const { field, values } of sources) {
    if (!Array.isArray(values) || values.some((v) => typeof v !== 'string'))
      throw invalid(`${field} must be a list of addresses, e.g. ["198.19.1.5/24"] or ["198.19.1.5/24", "fd19:0:0:1::5/64"]`);
    for (const value of values as string[]) found.push({ field, value });
  }
  if (found.length === 0) return undefined;
  const result: { ipv4?: StaticAddress<Ipv4Address>; ipv6?: StaticAddress<Ipv6Address> } = {};
  for (const family of [4, 6] as const) {
    const ofFamily = found.filter((f) => addressFamily(f.value) === family);
    if (ofFamily.length === 0) continue;
    const distinct = new Set(ofFamily.map((f) => f.value.split('/')[0]));
    if (distinct.size > 1) {
      throw invalid(`${ofFamily.map((f) => `${f.field} ${f.value}`).join(', ')}: an attachment has one IPv${family} address; give one`);
    }
    const { field, value } = ofFamily[0]!;
    const [addressText, prefixText] = value.split('/');
    const address = viaCore(() => parseIpAddress(addressText, field));
    const max = family === 4 ? 32 : 128;
    let prefixLength: number | undefined;
    if (prefixText !== undefined) {
      prefixLength = Number(prefixText);
      if (!/^\d{1,3}$/.test(prefixText) || prefixLength > max) throw invalid(`${field} ${value}: the prefix length must be 0..${max}`);
    }
    const entry = { address, ...(prefixLength !== undefined ? { prefixLength } : {}) };
    if (family === 4) result.ipv4 = entry as StaticAddress<Ipv4Address>;
    else result.ipv6 = entry as StaticAddress<Ipv6Address>;
  }
  return result;
}

function parseValidAttachments(input: unknown): AttachmentKey[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) throw invalid("'cni.dev/valid-attachments' must be a list of {containerID, ifname}");
  return input.map((a: unknown, i) => {
    if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
      throw invalid(`'cni.dev/valid-attachments'[${i}] must be {"containerID": ..., "ifname": ...}`);
    }
    return { containerId: a.containerID, ifname: a.ifname };
  });
}

function viaCore<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof InvalidArgumentError) throw invalid(e.message.replace(/^([^:]+): /, "'$1' "));
    throw e;
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
