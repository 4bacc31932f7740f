/**
 * The service manager's readiness protocol (sd_notify(3)): with NOTIFY_SOCKET set (systemd's Type=notify),
 * the daemon reports READY=1 once it is SERVING, STOPPING=1 when it begins to stop, and STATUS= lines.
 * Without NOTIFY_SOCKET nothing is sent and nothing is spawned.
 *
 * Node cannot send on a unix datagram socket, so `systemd-notify` sends for it, with `--pid=` naming the
 * daemon: its message then carries the daemon's PID in its credentials (root may set them), so systemd
 * attributes it to the service even after systemd-notify has exited, and adds MAINPID= for the same PID.
 * `--no-block`: no wait for systemd to have processed the message (nothing here depends on it).
 */
import { run } from '@nodenet/sys';

export interface ServiceNotifier {
  /** READY=1 with a status line: the daemon is SERVING. */
  ready(status: string): Promise<void>;
  /** STOPPING=1 with a status line: the daemon has begun to stop. */
  stopping(status: string): Promise<void>;
}

/** The command that sends for the daemon (package systemd). */
export const SYSTEMD_NOTIFY = 'systemd-notify';

/** Sends nothing: the daemon was not started by a service manager that listens. */
const SILENT: ServiceNotifier = {
  ready: async () => undefined,
  stopping: async () => undefined,
};

/** What a failed send is logged with (a failure never stops the daemon: systemd's timeout then reports it). */
export type NotifyFailureLogger = (message: string, err: string) => void;

/**
 * The notifier for this process: silent unless NOTIFY_SOCKET is set. The STATUS text goes through as one
 * argument; line breaks would start new variables, so they become spaces.
 */
export function createServiceNotifier(env: NodeJS.ProcessEnv, pid: number, onFailure: NotifyFailureLogger): ServiceNotifier {
  const socket = env.NOTIFY_SOCKET;
  if (socket === undefined || socket === '') return SILENT;
  const send = async (variables: readonly string[]) => {
    try {
      await run(SYSTEMD_NOTIFY, [`--pid=${pid}`, '--no-block', ...variables], { step: 'notify the service manager', timeoutMs: 5000 });
    } catch (e) {
      onFailure(`telling the service manager (NOTIFY_SOCKET=${socket}) failed`, e instanceof Error ? e.message : String(e));
    }
  };
  const statusLine = (text: string) => `STATUS=${text.replace(/[\r\n]+/g, ' ')}`;
  return {
    ready: (status) => send(['READY=1', statusLine(status)]),
    stopping: (status) => send(['STOPPING=1', statusLine(status)]),
  };
}
