/**
 * "Wait until ovs-vswitchd applied it", as ovs-vsctl does without --no-wait: the transaction also
 * increments Open_vSwitch.next_cfg and reads it back; ovs-vswitchd copies next_cfg to cur_cfg once it has
 * reconfigured the switch accordingly, which a monitor on those two columns sees.
 */
import { UnavailableError } from '@nodenet/core';
import type { MonitorReplica } from './replica.js';
import type { OvsdbClient } from './client.js';
import type { Operation, OperationResult } from './operations.js';

/** The transaction committed, but ovs-vswitchd did not report applying it in time (is it running?). */
export class VswitchTimeoutError extends UnavailableError {
  constructor(
    readonly step: string,
    readonly remote: string,
    readonly timeoutMs: number,
    options?: { cause?: unknown },
  ) {
    super(
      `${step}: committed to OVSDB at ${remote}, but ovs-vswitchd did not apply it within ${timeoutMs} ms: is ovs-vswitchd running?`,
      options,
    );
  }
}

export class VswitchConfigWaiter {
  private constructor(
    private readonly client: OvsdbClient,
    private readonly replica: MonitorReplica,
  ) {}

  static async start(client: OvsdbClient): Promise<VswitchConfigWaiter> {
    return new VswitchConfigWaiter(client, await client.monitor({ Open_vSwitch: { columns: ['cur_cfg', 'next_cfg'] } }));
  }

  /**
   * Runs `ops` plus the next_cfg increment in one transaction, then waits (up to `timeoutMs`) for
   * ovs-vswitchd to report that configuration. Returns the results of `ops` alone.
   */
  async transactAndWait(ops: readonly Operation[], step: string, timeoutMs = 10_000): Promise<OperationResult[]> {
    const all: Operation[] = [
      ...ops,
      { op: 'mutate', table: 'Open_vSwitch', where: [], mutations: [['next_cfg', '+=', 1]] },
      { op: 'select', table: 'Open_vSwitch', where: [], columns: ['next_cfg'] },
    ];
    const results = await this.client.transact(all, step);
    const target = Number(results[ops.length + 1]?.rows?.[0]?.['next_cfg']);
    try {
      await this.replica.waitFor(
        () => [...this.replica.rows('Open_vSwitch').values()].some((r) => Number(r['cur_cfg']) >= target),
        timeoutMs,
        `${step}: ovs-vswitchd applying configuration ${target} (is ovs-vswitchd running?)`,
      );
    } catch (e) {
      throw new VswitchTimeoutError(step, this.client.remote, timeoutMs, { cause: e });
    }
    return results.slice(0, ops.length);
  }

  cancel(): Promise<void> {
    return this.replica.cancel();
  }
}
