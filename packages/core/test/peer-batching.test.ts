import { describe, expect, it } from 'vitest';
import { allFailed, parseNodeRecord, PeerSync, type NodeRecord, type Overlay, type PeerBatchResult } from '@nodenet/core';

/** Peers node-2.. with distinct underlay addresses and distinct /28 subnets (no overlaps, none with `self`). */
const peers = (count: number, from = 2): NodeRecord[] =>
  Array.from({ length: count }, (_, i) => {
    const n = from + i;
    return parseNodeRecord(
      { name: `node-${n}`, underlayAddress: `198.18.${n >> 8}.${n & 255}`, subnet: `198.19.${n >> 4}.${(n & 15) * 16}/28` },
      'peer',
    );
  });
const self = parseNodeRecord({ name: 'self', underlayAddress: '198.18.255.1', subnet: '198.19.255.0/24' }, 'self');

/** Records every batch; can fail chosen peers, throw for a whole batch, and hold batches until released. */
class BatchingOverlay implements Overlay {
  readonly mode = 'vxlan' as const;
  readonly overhead = 50;
  readonly batches: { kind: 'ensure' | 'remove'; names: string[] }[] = [];
  /** What the "kernel" holds. */
  readonly installed = new Set<string>();
  failFor = new Set<string>();
  throwAll = false;
  private gate: Promise<void> | null = null;
  private release: (() => void) | null = null;
  /** Resolves when a batch has started (to act while it is in flight). */
  started: Promise<void> = Promise.resolve();
  private signalStarted: () => void = () => {};

  hold(): void {
    this.gate = new Promise((r) => (this.release = r));
    this.started = new Promise((r) => (this.signalStarted = r));
  }
  open(): void {
    this.gate = null;
    this.release?.();
  }
  async ensureEndpoint() {}
  validatePeer() {}
  async ensurePeer(p: NodeRecord) {
    const { failed } = await this.ensurePeers([p]);
    if (failed.has(p.name)) throw failed.get(p.name)!;
  }
  async removePeer(p: NodeRecord) {
    const { failed } = await this.removePeers([p]);
    if (failed.has(p.name)) throw failed.get(p.name)!;
  }
  ensurePeers(ps: readonly NodeRecord[]) {
    return this.batch('ensure', ps);
  }
  removePeers(ps: readonly NodeRecord[]) {
    return this.batch('remove', ps);
  }
  private async batch(kind: 'ensure' | 'remove', ps: readonly NodeRecord[]): Promise<PeerBatchResult> {
    this.batches.push({ kind, names: ps.map((p) => p.name) });
    this.signalStarted();
    if (this.gate) await this.gate;
    if (this.throwAll) throw new Error('the tool could not start');
    const failed = new Map<string, Error>();
    for (const p of ps) {
      if (this.failFor.has(p.name)) failed.set(p.name, new Error(`line of ${p.name} refused`));
      else if (kind === 'ensure') this.installed.add(`${p.name} ${String(p.subnet)} ${p.underlayAddress}`);
      else for (const e of [...this.installed]) if (e.startsWith(`${p.name} `)) this.installed.delete(e);
    }
    return { failed };
  }
}

const names = (ps: readonly NodeRecord[]) => ps.map((p) => p.name).sort();

describe('PeerSync batching', () => {
  it('programs the initial list as one batch and a 10% departure as one batch', async () => {
    const overlay = new BatchingOverlay();
    const sync = new PeerSync(overlay, async () => {}, undefined, { coalesceMs: 0 });
    const all = peers(200);
    await sync.update(all);
    await sync.setSelf(self);
    expect(overlay.batches).toEqual([{ kind: 'ensure', names: all.map((p) => p.name) }]);
    expect(overlay.installed.size).toBe(200);
    overlay.batches.length = 0;
    const leaving = all.filter((_, i) => i % 10 === 0);
    await sync.update(all.filter((_, i) => i % 10 !== 0));
    expect(overlay.batches).toEqual([{ kind: 'remove', names: leaving.map((p) => p.name) }]);
    expect(names(sync.current())).toEqual(names(all.filter((_, i) => i % 10 !== 0)));
    expect(overlay.installed.size).toBe(180);
  });

  it('coalesces a burst of changes arriving within the window into one batch, newest set winning', async () => {
    const overlay = new BatchingOverlay();
    const sync = new PeerSync(overlay, async () => {}, undefined, { coalesceMs: 20 });
    await sync.setSelf(self);
    const all = peers(50);
    // A watch burst: one update per new peer, each with the set so far.
    const updates = all.map((_, i) => sync.update(all.slice(0, i + 1)));
    expect(new Set(updates).size).toBe(1); // every caller waits for the same apply
    await Promise.all(updates);
    expect(overlay.batches).toEqual([{ kind: 'ensure', names: all.map((p) => p.name) }]);
    expect(names(sync.current())).toEqual(names(all));
  });

  it('lets changes arriving while a batch is in flight join the next batch', async () => {
    const overlay = new BatchingOverlay();
    const sync = new PeerSync(overlay, async () => {}, undefined, { coalesceMs: 0 });
    await sync.setSelf(self);
    const all = peers(30);
    overlay.hold();
    const first = sync.update(all.slice(0, 10));
    await overlay.started;
    // In flight: ten more changes, each adding one peer, then one peer of the first batch leaves.
    const later = [...Array.from({ length: 10 }, (_, i) => sync.update(all.slice(0, 11 + i))), sync.update(all.slice(1, 20))];
    overlay.open();
    await Promise.all([first, ...later]);
    expect(overlay.batches).toEqual([
      { kind: 'ensure', names: all.slice(0, 10).map((p) => p.name) },
      { kind: 'remove', names: ['node-2'] },
      { kind: 'ensure', names: all.slice(10, 20).map((p) => p.name) },
    ]);
    expect(names(sync.current())).toEqual(names(all.slice(1, 20)));
  });

  it('reports only the peers that failed, and retries exactly those with the next change', async () => {
    const overlay = new BatchingOverlay();
    const sync = new PeerSync(overlay, async () => {}, undefined, { coalesceMs: 0 });
    await sync.setSelf(self);
    const all = peers(10);
    overlay.failFor = new Set(['node-4', 'node-7']);
    await sync.update(all);
    expect(names(sync.current())).toEqual(names(all.filter((p) => !overlay.failFor.has(p.name))));
    overlay.failFor.clear();
    overlay.batches.length = 0;
    await sync.update(all);
    expect(overlay.batches).toEqual([{ kind: 'ensure', names: ['node-4', 'node-7'] }]);
    expect(names(sync.current())).toEqual(names(all));
  });

  it('treats a batch that throws as failed for every peer of it, and retries them', async () => {
    const overlay = new BatchingOverlay();
    const subnets: number[] = [];
    const sync = new PeerSync(overlay, async (s) => void subnets.push(s.length), undefined, { coalesceMs: 0 });
    await sync.setSelf(self);
    overlay.throwAll = true;
    await sync.update(peers(5));
    expect(sync.current()).toEqual([]);
    // Wanted peers are never masqueraded, programmed or not.
    expect(subnets.at(-1)).toBe(6);
    overlay.throwAll = false;
    await sync.resync();
    expect(sync.current()).toHaveLength(5);
  });

  it('keeps a peer whose removal failed as programmed and removes it on a later pass', async () => {
    const overlay = new BatchingOverlay();
    const sync = new PeerSync(overlay, async () => {}, undefined, { coalesceMs: 0 });
    await sync.setSelf(self);
    const all = peers(4);
    await sync.update(all);
    overlay.failFor = new Set(['node-2']);
    await sync.update([]);
    expect(names(sync.current())).toEqual(['node-2']);
    overlay.failFor.clear();
    overlay.batches.length = 0;
    await sync.resync();
    expect(overlay.batches).toEqual([
      { kind: 'ensure', names: ['node-2'] }, // resync re-converges what is programmed, in one batch
      { kind: 'remove', names: ['node-2'] },
    ]);
    expect(sync.current()).toEqual([]);
    expect(overlay.installed.size).toBe(0);
  });

  it('applies changed peers as a removal batch of the old records and an ensure batch of the new', async () => {
    const overlay = new BatchingOverlay();
    const sync = new PeerSync(overlay, async () => {}, undefined, { coalesceMs: 0 });
    await sync.setSelf(self);
    const all = peers(3);
    await sync.update(all);
    overlay.batches.length = 0;
    // node-2 and node-3 move to other underlay addresses; node-4 stays as it is.
    const changed = all.map((p, i) =>
      i < 2 ? parseNodeRecord({ name: p.name, underlayAddress: `198.18.100.${i + 1}`, subnet: String(p.subnet) }, 'p') : p,
    );
    await sync.update(changed);
    expect(overlay.batches).toEqual([
      { kind: 'remove', names: ['node-2', 'node-3'] },
      { kind: 'ensure', names: ['node-2', 'node-3'] },
    ]);
    expect([...overlay.installed].sort()).toEqual(changed.map((p) => `${p.name} ${String(p.subnet)} ${p.underlayAddress}`).sort());
  });

  it('allFailed gives every peer the same error', () => {
    const e = new Error('x');
    expect([...allFailed(peers(3), e).failed.entries()]).toEqual([
      ['node-2', e],
      ['node-3', e],
      ['node-4', e],
    ]);
  });
});
