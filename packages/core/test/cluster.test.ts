import { describe, expect, it } from 'vitest';
import {
  parseNodeRecord,
  PeerSync,
  StaticMembership,
  type NodeRecord,
  type Overlay,
  type PeerBatchResult,
  type IpSubnet,
} from '@nodenet/core';

const node = (n: number, subnet = `198.19.${n}.0/24`): NodeRecord =>
  parseNodeRecord({ name: `node-${n}`, underlayAddress: `198.18.0.${n}`, subnet }, 'peer');

class RecordingOverlay implements Overlay {
  readonly mode = 'vxlan' as const;
  readonly overhead = 50;
  readonly log: string[] = [];
  failFor = new Set<string>();
  async ensureEndpoint(self: NodeRecord) {
    this.log.push(`endpoint ${self.name}`);
  }
  async ensurePeer(p: NodeRecord) {
    if (this.failFor.has(p.name)) throw new Error('boom');
    this.log.push(`+${p.name} ${String(p.subnet)} via ${p.underlayAddress}`);
  }
  async removePeer(p: NodeRecord) {
    this.log.push(`-${p.name} ${String(p.subnet)}`);
  }
  async ensurePeers(peers: readonly NodeRecord[]) {
    return perPeer(peers, (p) => this.ensurePeer(p));
  }
  async removePeers(peers: readonly NodeRecord[]) {
    return perPeer(peers, (p) => this.removePeer(p));
  }
  validatePeer(_p: NodeRecord) {}
}

async function perPeer(peers: readonly NodeRecord[], fn: (p: NodeRecord) => Promise<void>): Promise<PeerBatchResult> {
  const failed = new Map<string, Error>();
  for (const p of peers) await fn(p).catch((e: unknown) => failed.set(p.name, e as Error));
  return { failed };
}

describe('parseNodeRecord', () => {
  it('names the field that is wrong', () => {
    expect(() => parseNodeRecord({ name: 'n', underlayAddress: '198.18.0.01', subnet: '198.19.1.0/24' }, 'membership.peers[2]')).toThrow(
      /^membership\.peers\[2\]\.underlayAddress: /,
    );
    expect(() => parseNodeRecord({ name: '-x', underlayAddress: '198.18.0.1', subnet: '198.19.1.0/24' }, 'p')).toThrow(/^p\.name: /);
    expect(() => parseNodeRecord({ name: 'n', underlayAddress: '198.18.0.1', subnet: '198.19.1.1/24' }, 'p')).toThrow(
      /^p\.subnet: .*host bits/,
    );
  });
});

describe('StaticMembership', () => {
  it('refuses overlapping or duplicate peers, is idempotent, notifies on change', async () => {
    expect(() => new StaticMembership([node(2), node(3, '198.19.2.128/25')])).toThrow(
      /overlaps 198.19.2.0\/24, the subnet of peer node node-2/,
    );
    const m = new StaticMembership([node(2)]);
    const seen: string[][] = [];
    await m.start((ps) => seen.push(ps.map((p) => p.name)));
    await m.addPeer(node(3));
    await m.addPeer(node(3));
    await expect(
      m.addPeer(parseNodeRecord({ name: 'node-4', underlayAddress: '198.18.0.4', subnet: '198.19.3.0/25' }, 'p')),
    ).rejects.toThrow(/overlaps 198.19.3.0\/24, the subnet of peer node node-3/);
    await m.removePeer('node-2');
    await m.removePeer('node-2');
    expect(seen).toEqual([['node-2'], ['node-2', 'node-3'], ['node-3']]);
  });

  it('refuses a peer overlapping this node once announced', async () => {
    const m = new StaticMembership([]);
    await m.announce(node(1));
    await expect(m.addPeer(node(9, '198.19.1.0/25'))).rejects.toThrow(/overlaps 198.19.1.0\/24, this node's subnet/);
  });
});

describe('PeerSync', () => {
  it('programs nothing before this node has a subnet, then converges on every change', async () => {
    const overlay = new RecordingOverlay();
    const subnets: string[][] = [];
    const sync = new PeerSync(overlay, async (s: readonly IpSubnet[]) => void subnets.push(s.map(String)));
    await sync.update([node(2), node(3)]);
    expect(overlay.log).toEqual([]);
    await sync.setSelf(node(1));
    expect(overlay.log).toEqual(['endpoint node-1', '+node-2 198.19.2.0/24 via 198.18.0.2', '+node-3 198.19.3.0/24 via 198.18.0.3']);
    overlay.log.length = 0;
    // node-3 moves to another underlay address, node-2 leaves, node-4 joins, node-1 (self) is ignored
    await sync.update([
      parseNodeRecord({ name: 'node-3', underlayAddress: '198.18.0.33', subnet: '198.19.3.0/24' }, 'p'),
      node(4),
      node(1),
    ]);
    expect(overlay.log).toEqual([
      '-node-2 198.19.2.0/24',
      '-node-3 198.19.3.0/24',
      '+node-3 198.19.3.0/24 via 198.18.0.33',
      '+node-4 198.19.4.0/24 via 198.18.0.4',
    ]);
    expect(subnets.at(-1)).toEqual(['198.19.1.0/24', '198.19.3.0/24', '198.19.4.0/24']);
    // A resync with nothing changed does not rewrite the list (a rewrite is a flush of the set, which change
    // notifications report: event-driven repair would loop on it).
    const written = subnets.length;
    await sync.resync();
    await sync.update([parseNodeRecord({ name: 'node-3', underlayAddress: '198.18.0.33', subnet: '198.19.3.0/24' }, 'p'), node(4)]);
    expect(subnets.length).toBe(written);
    await sync.update([node(4)]);
    expect(subnets.length).toBe(written + 1);
  });

  it('retries a peer that failed on the next update', async () => {
    const overlay = new RecordingOverlay();
    const sync = new PeerSync(overlay, async () => {});
    await sync.setSelf(node(1));
    overlay.failFor.add('node-2');
    await sync.update([node(2)]);
    expect(sync.current()).toEqual([]);
    overlay.failFor.clear();
    await sync.update([node(2)]);
    expect(sync.current().map((p) => p.name)).toEqual(['node-2']);
  });

  it('ignores a peer whose subnet overlaps this node', async () => {
    const overlay = new RecordingOverlay();
    const sync = new PeerSync(overlay, async () => {});
    await sync.setSelf(node(1));
    await sync.update([node(7, '198.19.1.0/25')]);
    expect(sync.current()).toEqual([]);
  });
});
