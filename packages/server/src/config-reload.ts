/**
 * SIGHUP: read the config again and apply what can change while the daemon runs.
 *
 * - Applied live: `logLevel`, and the static peers (`membership.peers`, with static membership): peers
 *   that left the file are removed, new or changed ones are checked as AddPeer checks them and added.
 *   Peers added at run time with AddPeer and not in either version of the file stay.
 * - Every other key that changed needs a restart: the reload names them in a log line and keeps their old
 *   values (the daemon keeps serving as it was started).
 * - A config that does not load (bad YAML, a bad key) is logged with the same messages as at start and
 *   ignored: the daemon keeps running with the config it had.
 */
import { isDeepStrictEqual } from 'node:util';
import {
  StaticMembership,
  asNodenetError,
  sameNodeRecord,
  type Dataplane,
  type HostInfo,
  type NodeNetwork,
  type Overlay,
} from '@nodenet/core';
import { checkPeerAgainstNode } from './admin-server.js';
import type { ClusterLink } from './cluster-link.js';
import { ConfigError, type DaemonConfig, type PeerConfig } from './config.js';
import type { DaemonLogger } from './logger.js';

/** The keys a reload applies; every other key needs a restart. */
export const LIVE_KEYS = ['logLevel', 'membership.peers'] as const;

export interface ReloadContext {
  readonly network: NodeNetwork;
  readonly cluster: ClusterLink;
  readonly host: HostInfo;
  readonly dataplane: Dataplane;
  /** Says whether a peer can be reached (Overlay.validatePeer), whatever the backend. */
  readonly overlay: Overlay;
  readonly logger: DaemonLogger;
}

export interface ReloadOutcome {
  /** The config in effect afterwards (the old one when the new one was rejected). */
  readonly config: DaemonConfig;
  readonly result: 'applied' | 'rejected';
  /** Live keys whose new value was applied. */
  readonly applied: readonly string[];
  /** Keys that changed but need a restart (kept as they were). */
  readonly restartNeeded: readonly string[];
  /** What could not be applied (e.g. a peer that overlaps this node's subnet). */
  readonly problems: readonly string[];
}

/** Loads the config with `load` and applies it over `current`; never throws for a bad config. */
export async function reloadConfig(current: DaemonConfig, load: () => Promise<DaemonConfig>, ctx: ReloadContext): Promise<ReloadOutcome> {
  const { logger } = ctx;
  let next: DaemonConfig;
  try {
    next = await load();
  } catch (e) {
    const problems = e instanceof ConfigError ? [...e.problems] : [e instanceof Error ? e.message : String(e)];
    logger.error(
      { event: 'config-reload', result: 'rejected', problems },
      `config reload rejected, still running with the previous config: ${problems.join('; ')}`,
    );
    return { config: current, result: 'rejected', applied: [], restartNeeded: [], problems };
  }

  const restartNeeded = changedKeys(current, next).filter((k) => !(LIVE_KEYS as readonly string[]).includes(k));
  const applied: string[] = [];
  const problems: string[] = [];
  let config = current;

  if (next.logLevel !== current.logLevel) {
    // Children inherit the level through pino's prototype chain: one assignment reaches every component.
    logger.level = next.logLevel;
    config = { ...config, logLevel: next.logLevel };
    applied.push('logLevel');
  }

  if (!samePeers(current.membership.peers, next.membership.peers) && !restartNeeded.includes('membership.type')) {
    try {
      problems.push(...(await applyStaticPeers(current.membership.peers, next.membership.peers, ctx, config)));
    } catch (e) {
      problems.push(`membership.peers: ${asNodenetError(e, 'apply the peers').message}`);
    }
    config = { ...config, membership: { ...config.membership, peers: next.membership.peers } };
    applied.push('membership.peers');
  }

  if (restartNeeded.length > 0) {
    logger.warn(
      { event: 'config-reload', restartNeeded },
      `config reload: ${restartNeeded.join(', ')} changed but cannot change while the daemon runs: restart nodenetd to apply; kept as they were`,
    );
  }
  for (const p of problems) logger.error({ event: 'config-reload', problem: p }, `config reload: ${p}`);
  logger.info(
    { event: 'config-reload', result: 'applied', applied, restartNeeded, problems: problems.length },
    applied.length > 0 ? `config reloaded: applied ${applied.join(', ')}` : 'config reloaded: nothing to apply',
  );
  return { config, result: 'applied', applied, restartNeeded, problems };
}

/** Removes peers that left the file, adds new and changed ones; returns what could not be applied. */
async function applyStaticPeers(
  before: readonly PeerConfig[],
  after: readonly PeerConfig[],
  ctx: ReloadContext,
  config: DaemonConfig,
): Promise<string[]> {
  const membership = ctx.cluster.membership;
  if (!(membership instanceof StaticMembership)) return [`membership.peers: membership is ${membership.type}; peers come from there`];
  const problems: string[] = [];
  const wanted = new Map(after.map((p) => [p.name, p]));
  for (const old of before) {
    if (!wanted.has(old.name)) await membership.removePeer(old.name);
  }
  const had = new Map(before.map((p) => [p.name, p]));
  for (const [i, peer] of after.entries()) {
    const old = had.get(peer.name);
    if (old && samePeer(old, peer)) continue;
    try {
      checkPeerAgainstNode(peer, { ...ctx, config });
      await membership.addPeer(peer);
    } catch (e) {
      problems.push(`membership.peers[${i}] (${peer.name}) not applied: ${asNodenetError(e, 'add the peer').message}`);
    }
  }
  await ctx.cluster.sync.update(membership.peers());
  return problems;
}

/** Config keys (dotted for membership's parts) whose values differ. */
function changedKeys(a: DaemonConfig, b: DaemonConfig): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  const changed: string[] = [];
  for (const key of keys) {
    if (key === 'membership') {
      for (const sub of ['type', 'etcd'] as const)
        if (!isDeepStrictEqual(a.membership[sub], b.membership[sub])) changed.push(`membership.${sub}`);
      if (!samePeers(a.membership.peers, b.membership.peers)) changed.push('membership.peers');
      continue;
    }
    if (!isDeepStrictEqual(a[key as keyof DaemonConfig], b[key as keyof DaemonConfig])) changed.push(key);
  }
  return changed;
}

function samePeer(a: PeerConfig, b: PeerConfig): boolean {
  return sameNodeRecord(a, b);
}

function samePeers(a: readonly PeerConfig[], b: readonly PeerConfig[]): boolean {
  return a.length === b.length && a.every((p, i) => samePeer(p, b[i]!));
}
