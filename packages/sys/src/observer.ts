/**
 * Observing the commands nodenet runs (for metrics): every command run (run, runLean) and every request
 * to a long-lived command session reports its outcome to the observers registered here. Observers get
 * the tool's basename from a fixed set (`TOOLS`, anything else is `other`), so whatever they do with it
 * stays bounded. An observer that throws is ignored: observing never changes what a command does.
 */
import { basename } from 'node:path';

/** The tools nodenet runs, as reported to observers. */
export const TOOLS = [
  'ip',
  'bridge',
  'nft',
  'conntrack',
  'ovs-vsctl',
  'ovs-ofctl',
  'ovs-appctl',
  'nsenter',
  'unshare',
  'sysctl',
  'perl',
  // requests over the ovs backend's long-lived OVSDB session and OpenFlow connections (not processes)
  'ovsdb',
  'openflow',
  'other',
] as const;
export type Tool = (typeof TOOLS)[number];

/**
 * How a command ended: `ok`; `exit` (a non-zero exit status); `timeout`; `not_installed`; `error_output`
 * (a session request the tool answered with an error); `session_exited` (the session's process exited or
 * could not start before answering); `spawn_error` (the process could not be run).
 */
export const COMMAND_OUTCOMES = ['ok', 'exit', 'timeout', 'not_installed', 'error_output', 'session_exited', 'spawn_error'] as const;
export type CommandOutcome = (typeof COMMAND_OUTCOMES)[number];

export interface CommandEvent {
  readonly tool: Tool;
  readonly outcome: CommandOutcome;
}

export type CommandObserver = (event: CommandEvent) => void;

const observers = new Set<CommandObserver>();
const KNOWN = new Set<string>(TOOLS);

/** The tool label of a command file (`/usr/sbin/ip` -> `ip`; unknown -> `other`). */
export function toolOf(file: string): Tool {
  const name = basename(file);
  return KNOWN.has(name) ? (name as Tool) : 'other';
}

/** Registers an observer of every command this process runs; returns its removal. */
export function observeCommands(observer: CommandObserver): () => void {
  observers.add(observer);
  return () => observers.delete(observer);
}

/** Reports one command's outcome to the observers (called by run.ts and session.ts). */
export function reportCommand(file: string, outcome: CommandOutcome): void {
  if (observers.size === 0) return;
  const event: CommandEvent = { tool: toolOf(file), outcome };
  for (const observer of observers) {
    try {
      observer(event);
    } catch {
      // an observer's failure is not the command's
    }
  }
}
