/**
 * reloadConfig's decisions with core's StaticMembership and a recording PeerSync (no kernel): which keys
 * apply live, which need a restart, what a rejected config leaves, and peers that cannot be applied.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { StaticMembership, checkPeerForMode, parseNodeRecord, type HostInfo, type NodeRecord } from '@nodenet/core';
import { ConfigError, parseConfig, type DaemonConfig } from '../src/config.js';
import { reloadConfig, type ReloadContext } from '../src/config-reload.js';
import type { ClusterLink } from '../src/cluster-link.js';

const backends = ['iproute2'];
const base = { nodeName: 'node-1', underlayAddress: '198.18.0.1', listen: 'unix:///run/t.sock', logLevel: 'info' };
const peer2 = { name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' };
const peer3 = { name: 'node-3', underlayAddress: '198.18.0.3', subnet: '198.19.3.0/24' };

function context(initial: DaemonConfig) {
  const membership = new StaticMembership(initial.membership.peers);
  const synced: string[][] = [];
  const logger = pino({ level: initial.logLevel }, { write: () => undefined });
  const host = { underlayAddress: '198.18.0.1', localNetworks: [] } as unknown as HostInfo;
  const ctx = {
    network: { cniRecord: { subnet: '198.19.1.0/24' } },
    cluster: {
      membership,
      sync: { update: async (peers: readonly NodeRecord[]) => void synced.push(peers.map((p) => p.name)) },
    } as unknown as ClusterLink,
    host,
    dataplane: {},
    // The vxlan overlay's rule (core's, as both backends' overlays apply it): any peer but this node.
    overlay: { validatePeer: (peer: NodeRecord) => checkPeerForMode('vxlan', host, peer) },
    logger,
  } as unknown as ReloadContext;
  return { ctx, membership, synced, logger };
}

const config = (raw: Record<string, unknown>) => parseConfig({ ...base, ...raw }, { backends });

describe('reloadConfig', () => {
  it('applies logLevel and the static peers, names other changed keys and keeps them', async () => {
    const current = config({ membership: { peers: [peer2] } });
    const { ctx, membership, synced, logger } = context(current);
    const next = config({ logLevel: 'debug', membership: { peers: [peer3] }, listen: '0.0.0.0:7000', insecure: true, overlay: { vni: 7 } });
    const outcome = await reloadConfig(current, async () => next, ctx);
    expect(outcome).toMatchObject({ result: 'applied', applied: ['logLevel', 'membership.peers'], problems: [] });
    expect([...outcome.restartNeeded].sort()).toEqual(['cni', 'insecure', 'listen', 'overlay']); // cni.listen's default follows a unix listen;
    expect(logger.level).toBe('debug');
    expect(membership.peers().map((p) => p.name)).toEqual(['node-3']);
    expect(synced.at(-1)).toEqual(['node-3']);
    // Restart keys keep their old values in the config now in effect.
    expect(outcome.config.listen).toEqual(current.listen);
    expect(outcome.config.overlay.vni).toBe(4242);
    expect(outcome.config.logLevel).toBe('debug');
    expect(outcome.config.membership.peers.map((p) => p.name)).toEqual(['node-3']);
  });

  it('keeps peers added at run time that neither file version lists; skips a peer that overlaps this node', async () => {
    const current = config({});
    const { ctx, membership } = context(current);
    await membership.addPeer(parseNodeRecord(peer3, 'peer'));
    const clash = { name: 'node-9', underlayAddress: '198.18.0.9', subnet: '198.19.1.0/25' };
    const outcome = await reloadConfig(current, async () => config({ membership: { peers: [peer2, clash] } }), ctx);
    expect(outcome.problems).toEqual([
      expect.stringMatching(/^membership.peers\[1\] \(node-9\) not applied: .*overlaps 198.19.1.0\/24, this node's subnet/),
    ]);
    expect(membership.peers().map((p) => p.name)).toEqual(['node-2', 'node-3']);
  });

  it('a config that does not load is rejected with its problems; nothing changes', async () => {
    const current = config({ membership: { peers: [peer2] } });
    const { ctx, membership, logger } = context(current);
    const outcome = await reloadConfig(
      current,
      async () => {
        throw new ConfigError(['config: overlay.vni: must be an integer 1..16777215 (got 0)']);
      },
      ctx,
    );
    expect(outcome).toEqual({
      config: current,
      result: 'rejected',
      applied: [],
      restartNeeded: [],
      problems: ['config: overlay.vni: must be an integer 1..16777215 (got 0)'],
    });
    expect(logger.level).toBe('info');
    expect(membership.peers().map((p) => p.name)).toEqual(['node-2']);
  });

  it('an unchanged file applies nothing', async () => {
    const current = config({ membership: { peers: [peer2] } });
    const { ctx, synced } = context(current);
    const outcome = await reloadConfig(current, async () => config({ membership: { peers: [peer2] } }), ctx);
    expect(outcome).toMatchObject({ result: 'applied', applied: [], restartNeeded: [], problems: [] });
    expect(synced).toEqual([]);
  });
});
