/**
 * A small cluster for the overlay integration tests, built by hand: a fabric namespace with a bridge
 * (`fab0`), node namespaces attached to it by veths (`u0`, 198.18.0.N/24), and in each node the CNI
 * (nodenet0, 198.19.N.1/24) with one instance namespace (198.19.N.2) made by Iproute2Dataplane. The
 * overlay itself is left to the tests. Only namespaces made through `namespaces` are touched.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CNI_NAME,
  Subnet,
  macForAddress,
  parseIfName,
  parseIpv4Address,
  parseNetnsRef,
  type CniSpec,
  type HostInfo,
  type Ipv4Address,
  type NodeRecord,
} from '@nodenet/core';
import { run } from '@nodenet/sys';
import { LinuxHostProbe } from '@nodenet/linux';
import { Iproute2Dataplane } from '../src/index.js';
import { TestNamespaces, sh } from './netns-fixture.js';

export const ip = (s: string): Ipv4Address => parseIpv4Address(s, 'address');

export interface TestNode {
  readonly index: number;
  /** The node namespace. */
  readonly ns: string;
  /** The instance namespace (eth0 = instanceAddress). */
  readonly instanceNs: string;
  readonly instanceAddress: Ipv4Address;
  readonly record: NodeRecord;
  readonly host: HostInfo;
}

export interface TestCluster {
  readonly fabric: string;
  readonly nodes: readonly TestNode[];
}

let handleCounter = 0;

/** Builds the cluster; on failure removes what it made (the caller's cleanup would too). */
export async function buildCluster(namespaces: TestNamespaces, count: number, overhead: number, underlayMtu = 1500): Promise<TestCluster> {
  const fabric = await namespaces.add('fab');
  await sh('ip', ['-n', fabric, '-batch', '-'], ['link set dev lo up', 'link add fab0 type bridge', 'link set dev fab0 up', ''].join('\n'));
  const nodes: TestNode[] = [];
  for (let n = 1; n <= count; n++) {
    const ns = await namespaces.add(`n${n}`);
    const instanceNs = await namespaces.add(`i${n}`);
    await sh(
      'ip',
      ['-n', fabric, '-batch', '-'],
      [
        `link add f${n} mtu ${underlayMtu} type veth peer name u0 mtu ${underlayMtu} netns /run/netns/${ns}`,
        `link set dev f${n} master fab0 up`,
        '',
      ].join('\n'),
    );
    await sh(
      'ip',
      ['-n', ns, '-batch', '-'],
      ['link set dev lo up', `address add 198.18.0.${n}/24 dev u0`, 'link set dev u0 up', ''].join('\n'),
    );
    const dataplane = new Iproute2Dataplane({ netns: ns });
    const host = await new LinuxHostProbe({ netns: ns }).probeHost(ip(`198.18.0.${n}`));
    const gateway = ip(`198.19.${n}.1`);
    const subnet = Subnet.of(`198.19.${n}.0/24`);
    const cni: CniSpec = { name: CNI_NAME, ipv4: { gateway, subnet }, mtu: host.underlayMtu - overhead, mac: macForAddress(gateway) };
    await dataplane.ensureCni(cni);
    const id = (0x0ee00000 + ++handleCounter).toString(16).padStart(8, '0');
    const instanceAddress = ip(`198.19.${n}.2`);
    await dataplane.createInstance({
      handle: parseIfName(`nni-${id}`, 'handle'),
      hostIfname: parseIfName(`nnh-${id}`, 'host'),
      kind: 'veth',
      address: instanceAddress,
      ipv4: instanceAddress,
      mac: macForAddress(instanceAddress),
      mtu: cni.mtu,
      cni,
      netns: parseNetnsRef(instanceNs, 'netns'),
      ifname: parseIfName('eth0', 'ifname'),
    });
    nodes.push({
      index: n,
      ns,
      instanceNs,
      instanceAddress,
      record: { name: `node-${n}`, underlayAddress: host.underlayAddress, subnet },
      host,
    });
  }
  return { fabric, nodes };
}

/** Exit status of one ping from a namespace (0 = a reply came back); extra options such as `-M do -s 1422`. */
export async function pingStatus(
  ns: string,
  address: string,
  extra: string[] = [],
  waitSeconds = 2,
): Promise<{ code: number; output: string }> {
  const r = await run('ip', ['netns', 'exec', ns, 'ping', '-n', '-c', '1', '-W', String(waitSeconds), ...extra, address], {
    step: 'test: ping',
    okExitCodes: [1, 2],
  });
  return { code: r.exitCode, output: r.stdout + r.stderr };
}

/** Pings until a reply comes (or `timeoutMs` passes); returns the milliseconds it took and the pings sent, or null. */
export async function msUntilPing(ns: string, address: string, timeoutMs = 5000): Promise<{ ms: number; attempts: number } | null> {
  const started = performance.now();
  for (let attempts = 1; performance.now() - started < timeoutMs; attempts++) {
    if ((await pingStatus(ns, address, [], 1)).code === 0) return { ms: performance.now() - started, attempts };
  }
  return null;
}

/**
 * One TCP connection from `clientNs` to `serverNs` at `address:port` with socat: returns what the server
 * received and the peer address it saw.
 */
export async function tcpExchange(
  clientNs: string,
  serverNs: string,
  address: string,
  port: number,
): Promise<{ received: string; peer: string }> {
  const server = spawn('ip', ['netns', 'exec', serverNs, 'socat', '-d', '-d', '-T', '5', `TCP-LISTEN:${port},reuseaddr`, 'STDOUT'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  server.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  server.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(server, 'exit');
  try {
    for (let i = 0; i < 200 && !/listening on/.test(stderr); i++) await sleep(10);
    if (!/listening on/.test(stderr)) throw new Error(`socat did not listen in ${serverNs}: ${stderr}`);
    await run('ip', ['netns', 'exec', clientNs, 'socat', '-T', '5', '-', `TCP:${address}:${port},connect-timeout=3`], {
      step: 'test: tcp client',
      input: `hello from ${clientNs}\n`,
    });
    await Promise.race([exited, sleep(5000)]);
    const peer = /accepting connection from AF=2 ([\d.]+):\d+/.exec(stderr)?.[1] ?? `(none in: ${stderr})`;
    return { received: stdout, peer };
  } finally {
    if (server.exitCode === null) server.kill('SIGKILL');
  }
}

/** `ip -j` output as the overlay tests read it (iproute2's own field names; only what they check). */
export interface IpJsonLink {
  readonly ifindex: number;
  readonly mtu: number;
  readonly address: string;
  readonly ifalias?: string;
  readonly flags: string[];
  /** Only with `-d`. */
  readonly linkinfo: { readonly info_kind: string; readonly info_data: { readonly id?: number; readonly learning?: boolean } };
  /** Only from `addr show`. */
  readonly addr_info: { readonly local: string; readonly prefixlen: number }[];
}

export interface IpJsonRoute {
  readonly dst: string;
  readonly gateway?: string;
  readonly dev?: string;
  readonly protocol?: string;
  readonly prefsrc?: string;
  readonly flags: string[];
}

export interface IpJsonNeighbour {
  readonly dst: string;
  readonly lladdr?: string;
  readonly state: string[];
}

export async function ipJsonIn<T = Record<string, unknown>[]>(ns: string, args: string[]): Promise<T> {
  const out = await sh('ip', ['-n', ns, '-j', ...args]);
  return (out.trim() === '' ? [] : JSON.parse(out)) as T;
}

export async function fdbOf(ns: string, dev: string): Promise<{ mac: string; dst?: string; state?: string }[]> {
  const r = await run('bridge', ['-n', ns, '-j', 'fdb', 'show', 'dev', dev], { step: 'test: fdb', okExitCodes: [255] });
  return r.exitCode === 0 && r.stdout.trim() !== '' ? (JSON.parse(r.stdout) as { mac: string; dst?: string; state?: string }[]) : [];
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export const round = (x: number): number => Math.round(x * 10) / 10;
