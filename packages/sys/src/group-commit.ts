/**
 * Group commit: what arrives while a commit is running waits and goes into the next commit, together.
 * Idle, an item is committed at once (no added latency); under load, N concurrent requests share one
 * process (one `nft -f`, one `ip -batch`) instead of spawning N. A failed group is retried one item at a
 * time, so each caller gets its own result and an error names only the item that caused it.
 */
export class GroupCommitter<T> {
  private queue: { item: T; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private running = false;

  constructor(
    /** Applies all items in one go (all or nothing, as one transaction or batch). */
    private readonly commit: (items: readonly T[]) => Promise<void>,
    private readonly maxBatch = 256,
  ) {}

  submit(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const group = this.queue.splice(0, this.maxBatch);
        try {
          await this.commit(group.map((g) => g.item));
          for (const g of group) g.resolve();
        } catch (e) {
          if (group.length === 1) {
            group[0]!.reject(e);
            continue;
          }
          // Someone in the group failed: give each its own answer.
          for (const g of group) {
            try {
              await this.commit([g.item]);
              g.resolve();
            } catch (err) {
              g.reject(err);
            }
          }
        }
      }
    } finally {
      this.running = false;
    }
  }
}
