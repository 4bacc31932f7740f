/** The machine a run happened on, recorded with its results (numbers mean little without it). */
import { readFile } from 'node:fs/promises';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { exec, repoRoot } from '@nodenet/testkit';
import type { WakeProbe } from './wake-probe.js';

export interface Environment {
  readonly kernel: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly node: string;
  /** 1-minute load average when the run started and ended (other work on the machine disturbs results). */
  readonly loadStart: number;
  loadEnd?: number;
  /** How the machine answered after idling, probed when the run started and when it ended (see wake-probe.ts). */
  wakeStart?: WakeProbe;
  wakeEnd?: WakeProbe;
  readonly versions: Record<string, string>;
}

async function firstLine(file: string, args: string[], pattern?: RegExp): Promise<string> {
  try {
    const r = await exec(file, args, { allowFailure: true });
    const text = `${r.stdout}\n${r.stderr}`;
    const line = pattern ? (pattern.exec(text)?.[0] ?? '') : (text.trim().split('\n')[0] ?? '');
    return line.trim() || 'unknown';
  } catch {
    return 'not installed';
  }
}

async function debVersion(pkg: string): Promise<string> {
  try {
    const r = await exec('dpkg-query', ['-W', '-f=${Version}', pkg], { allowFailure: true });
    return r.exitCode === 0 && r.stdout.trim() ? r.stdout.trim() : 'not installed';
  } catch {
    return 'unknown';
  }
}

export async function describeEnvironment(): Promise<Environment> {
  const cpuList = cpus();
  let nodenetVersion = 'unknown';
  try {
    nodenetVersion = (JSON.parse(await readFile(`${repoRoot}/packages/server/package.json`, 'utf8')) as { version: string }).version;
  } catch {
    // leave unknown
  }
  return {
    kernel: release(),
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    loadStart: Math.round(loadavg()[0]! * 100) / 100,
    versions: {
      nodenet: nodenetVersion,
      'containernetworking-plugins': await debVersion('containernetworking-plugins'),
      netavark: await firstLine('/usr/lib/podman/netavark', ['--version'], /\d+\.\d+\.\d+/),
      iperf3: await firstLine('iperf3', ['--version'], /\d+\.\d+(\.\d+)?/),
      iproute2: await firstLine('ip', ['-V']),
      nftables: await firstLine('nft', ['--version']),
      iptables: await firstLine('iptables', ['--version']),
    },
  };
}
