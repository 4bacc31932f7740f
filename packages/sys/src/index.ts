/**
 * @nodenet/sys: the one place nodenet runs system commands (argument arrays, never a shell; failures as
 * core's errors naming the command and the package to install):
 * - run / runLean: one command (runLean also takes input that comes later);
 * - CommandSession: a long-lived batch process (ip -batch, nft -i) fed line by line, with framing that
 *   tells where one answer ends;
 * - GroupCommitter: coalesces concurrent work items into one batch.
 */
export { CommandError, notInstalled, run, runLean, type LeanInput, type RunOptions, type RunResult } from './run.js';
export { GroupCommitter } from './group-commit.js';
export { CommandSession, SessionExitedError, helperLineFraming, type CommandSessionOptions, type SessionFraming } from './session.js';
export {
  COMMAND_OUTCOMES,
  TOOLS,
  observeCommands,
  reportCommand,
  toolOf,
  type CommandEvent,
  type CommandObserver,
  type CommandOutcome,
  type Tool,
} from './observer.js';
export { LineMonitor, type LineMonitorOptions } from './line-monitor.js';
