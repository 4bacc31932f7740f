/** Apply steps in order; on failure undo the applied ones in reverse and report every undo that failed too. */
import { asNodenetError, type NodenetError } from './errors.js';
import type { Logger } from './ports-of-core.js';

export class Transaction {
  private readonly undos: { step: string; undo: () => Promise<void> }[] = [];

  constructor(
    private readonly logger: Logger,
    private readonly context: object,
  ) {}

  /** Runs `apply`; a failure is wrapped as an INTERNAL error naming `step` unless it already is a NodenetError. */
  async do<T>(step: string, apply: () => Promise<T>, undo?: () => Promise<void>): Promise<T> {
    let result: T;
    try {
      result = await apply();
    } catch (e) {
      throw asNodenetError(e, step);
    }
    if (undo) this.undos.push({ step, undo });
    return result;
  }

  /** Undoes applied steps, newest first; keeps going past failures (they are logged) so as much as possible is cleaned. */
  async rollback(cause: NodenetError): Promise<void> {
    for (const { step, undo } of this.undos.reverse()) {
      try {
        await undo();
      } catch (e) {
        this.logger.error({ ...this.context, step, err: String(e), cause: cause.message }, 'roll-back step failed');
      }
    }
    this.undos.length = 0;
  }
}
