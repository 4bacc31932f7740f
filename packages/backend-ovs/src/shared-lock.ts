/**
 * A shared/exclusive lock. Creates and deletes of instances change only their own flows and run
 * concurrently (shared); a reconcile pass compares the whole flow table with OVSDB and must not see a create
 * half-way (its flows written, its port not yet), so it runs alone (exclusive). Waiters are served in
 * arrival order, so neither side starves.
 */
export class SharedLock {
  private active = 0;
  private exclusiveActive = false;
  private readonly queue: Array<{ exclusive: boolean; wake: () => void }> = [];

  shared<T>(fn: () => Promise<T>): Promise<T> {
    return this.acquire(false).then(() => this.release(fn, false));
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.acquire(true).then(() => this.release(fn, true));
  }

  private acquire(exclusive: boolean): Promise<void> {
    if (this.queue.length === 0 && this.canEnter(exclusive)) {
      this.enter(exclusive);
      return Promise.resolve();
    }
    return new Promise((wake) => this.queue.push({ exclusive, wake }));
  }

  private canEnter(exclusive: boolean): boolean {
    return exclusive ? this.active === 0 && !this.exclusiveActive : !this.exclusiveActive;
  }

  private enter(exclusive: boolean): void {
    if (exclusive) this.exclusiveActive = true;
    else this.active += 1;
  }

  private async release<T>(fn: () => Promise<T>, exclusive: boolean): Promise<T> {
    try {
      return await fn();
    } finally {
      if (exclusive) this.exclusiveActive = false;
      else this.active -= 1;
      while (this.queue.length > 0 && this.canEnter(this.queue[0]!.exclusive)) {
        const next = this.queue.shift()!;
        this.enter(next.exclusive);
        next.wake();
      }
    }
  }
}
