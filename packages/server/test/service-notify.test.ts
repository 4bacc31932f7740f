/** The readiness notifier: silent without NOTIFY_SOCKET; a failed send is reported, never thrown. */
import { describe, expect, it } from 'vitest';
import { createServiceNotifier } from '../src/service-notify.js';

describe('createServiceNotifier', () => {
  it('without NOTIFY_SOCKET (unset or empty) sends nothing and reports nothing', async () => {
    for (const env of [{}, { NOTIFY_SOCKET: '' }]) {
      const failures: string[] = [];
      const notifier = createServiceNotifier(env, process.pid, (message) => failures.push(message));
      await notifier.ready('serving');
      await notifier.stopping('stopping');
      expect(failures).toEqual([]);
    }
  });

  it('a socket no one listens on: systemd-notify fails, the failure is reported with the socket, nothing throws', async () => {
    const failures: Array<{ message: string; err: string }> = [];
    const socket = `/nonexistent-${process.pid}/notify.sock`;
    const notifier = createServiceNotifier({ NOTIFY_SOCKET: socket }, process.pid, (message, err) => failures.push({ message, err }));
    await notifier.ready('serving on unix:///run/nodenet/nodenet.sock: 0 instances');
    expect(failures).toHaveLength(1);
    expect(failures[0]!.message).toContain(socket);
    expect(failures[0]!.err).toMatch(/systemd-notify --pid=\d+ --no-block READY=1/);
  });
});
