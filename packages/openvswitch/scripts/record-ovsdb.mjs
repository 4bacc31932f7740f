#!/usr/bin/env node
/**
 * Records an ovs-vsctl session with ovsdb-server (strace of its socket calls): what it sent and the
 * chunks it received, as the server cut them. The JSON stream splitter's unit tests replay these chunks.
 * Run as root against a running ovsdb-server with a bridge br0:
 *   node scripts/record-ovsdb.mjs unix:/path/db.sock > test/fixtures/ovsdb-recorded.json
 */
import { straceSocketCalls } from './strace-socket.mjs';

const db = process.argv[2];
if (!db) throw new Error('usage: record-ovsdb.mjs unix:/path/db.sock');

const CASES = [
  [
    '--no-wait',
    'add-port',
    'br0',
    'rec0',
    '--',
    'set',
    'Interface',
    'rec0',
    'type=internal',
    'external_ids:nodenet="a \\"quoted\\" {value}"',
  ],
  ['--no-wait', 'del-port', 'br0', 'rec0'],
];

const recorded = [];
for (const args of CASES) {
  const r = straceSocketCalls('ovs-vsctl', [`--db=${db}`, ...args]);
  if (r.status !== 0) throw new Error(`ovs-vsctl ${args.join(' ')}: ${r.stderr.slice(-2000)}`);
  const sent = r.sent.map((b) => b.toString('latin1'));
  const received = r.received.map((b) => b.toString('latin1'));
  // latin1 keeps each byte as one character, so a chunk cut inside a UTF-8 sequence survives the round trip.
  recorded.push({ command: ['ovs-vsctl', '--db=DB', ...args], encoding: 'latin1', sent, received });
}
process.stdout.write(`${JSON.stringify(recorded, null, 1)}\n`);
