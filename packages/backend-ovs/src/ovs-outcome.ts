/**
 * Requests to Open vSwitch over the long-lived connections (OVSDB transactions, OpenFlow requests) count as
 * commands for the metrics, like the processes and sessions of @nodenet/sys: each reports its outcome to
 * sys's observers under the tool `ovsdb` or `openflow`, with the reasons sys uses (the label sets stay
 * fixed): `error_output` (the switch or database answered with an error), `timeout` (no answer in time),
 * `session_exited` (the connection could not be made or was lost).
 */
import { UnavailableError } from '@nodenet/core';
import { reportCommand, type CommandOutcome } from '@nodenet/sys';
import { OpenFlowError, OvsdbRpcError, OvsdbTransactionError, VswitchTimeoutError } from '@nodenet/openvswitch';

export type OvsProtocol = 'ovsdb' | 'openflow';

/** How a failed request to Open vSwitch ended, as a command outcome. */
export function ovsFailureOutcome(e: unknown): CommandOutcome {
  if (e instanceof VswitchTimeoutError) return 'timeout';
  // An error answer (OvsdbRpcError is an UnavailableError: it is checked before those).
  if (e instanceof OvsdbRpcError || e instanceof OvsdbTransactionError || e instanceof OpenFlowError) return 'error_output';
  if (e instanceof UnavailableError) return /\bno reply\b.*\bwithin \d+ ms\b/.test(e.message) ? 'timeout' : 'session_exited';
  return 'error_output';
}

/** Runs one request, reporting its outcome (ok or how it failed) as a command of `protocol`. */
export async function observedRequest<T>(protocol: OvsProtocol, request: () => Promise<T>): Promise<T> {
  try {
    const result = await request();
    reportCommand(protocol, 'ok');
    return result;
  } catch (e) {
    reportCommand(protocol, ovsFailureOutcome(e));
    throw e;
  }
}
