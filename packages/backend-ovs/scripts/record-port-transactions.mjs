#!/usr/bin/env node
/**
 * Records the OVSDB transactions ovs-vsctl sends for nodenet's port commands (ovsdb.ts's
 * addInstancePortCommands and deletePortCommands, from dist: build first), so the unit tests can hold the
 * OVSDB operations the daemon sends over its session (addInstancePortOps, deletePortOps) to the same
 * content. Runs its own ovsdb-server in a temp dir (no ovs-vswitchd, hence --no-wait; no link is made).
 * As root, with strace and Open vSwitch installed, from packages/backend-ovs:
 *   node scripts/record-port-transactions.mjs > test/fixtures/port-transactions-recorded.json
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { straceSocketCalls } from '../../openvswitch/scripts/strace-socket.mjs';
import { addInstancePortCommands, deletePortCommands } from '../dist/ovsdb.js';

const dir = mkdtempSync(join(tmpdir(), 'nodenet-record-'));
const db = `unix:${join(dir, 'db.sock')}`;
const pidfile = join(dir, 'ovsdb-server.pid');
const spec = { handle: 'nni-0000001a', address: '198.19.1.26', mac: '02:00:c6:13:01:1a', kind: 'veth' };
const CASES = [
  ['--no-wait', ...addInstancePortCommands('nodenet0', 'nnh-0000001a', spec, 26)],
  ['--no-wait', ...deletePortCommands('nodenet0', ['nnh-0000001a'])],
];
try {
  execFileSync('ovsdb-tool', ['create', join(dir, 'conf.db'), '/usr/share/openvswitch/vswitch.ovsschema']);
  execFileSync('ovsdb-server', [
    join(dir, 'conf.db'),
    `--remote=p${db}`,
    `--pidfile=${pidfile}`,
    `--unixctl=${join(dir, 'ctl')}`,
    '--detach',
  ]);
  execFileSync('ovs-vsctl', [`--db=${db}`, '--no-wait', 'init', '--', 'add-br', 'nodenet0']);
  const recorded = CASES.map((args) => {
    const r = straceSocketCalls('ovs-vsctl', [`--db=${db}`, ...args]);
    if (r.status !== 0) throw new Error(`ovs-vsctl ${args.join(' ')}: ${r.stderr.slice(-2000)}`);
    const requests = r.sent.map((b) => JSON.parse(b.toString('utf8')));
    const transact = requests.filter((m) => m.method === 'transact').map((m) => m.params);
    return { command: ['ovs-vsctl', '--db=DB', ...args], transact };
  });
  process.stdout.write(`${JSON.stringify(recorded, null, 1)}\n`);
} finally {
  try {
    execFileSync('ovs-appctl', ['-t', join(dir, 'ctl'), 'exit']);
  } catch {
    // not started
  }
  rmSync(dir, { recursive: true, force: true });
}
