#!/usr/bin/env node
/**
 * Records an ovs-vsctl session with ovsdb-server (strace of its socket calls): what it sent and the
 * chunks it received, as the server cut them. The JSON stream splitter's unit tests replay these chunks.
 * Run as root against a running ovsdb-server with a bridge br0:
 *   node scripts/record-ovsdb.mjs unix:/path/db.sock > test/fixtures/ovsdb-recorded.json
 */
import { spawnSync } from 'node:child_process';

const db = process.argv[2];
if (!db) throw new Error('usage: record-ovsdb.mjs unix:/path/db.sock');

const CASES = [
  ['--no-wait', 'add-port', 'br0', 'rec0', '--', 'set', 'Interface', 'rec0', 'type=internal', 'external_ids:nodenet="a \\"quoted\\" {value}"'],
  ['--no-wait', 'del-port', 'br0', 'rec0'],
];

function unescape(s) {
  const out = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && s[i + 1] === 'x') {
      out.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else out.push(s.charCodeAt(i));
  }
  return Buffer.from(out);
}

const recorded = [];
for (const args of CASES) {
  const r = spawnSync('strace', ['-e', 'trace=sendto,recvfrom', '-xx', '-s', '10000000', 'ovs-vsctl', `--db=${db}`, ...args], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`ovs-vsctl ${args.join(' ')}: ${r.stderr.slice(-2000)}`);
  const sent = [];
  const received = [];
  for (const line of r.stderr.split('\n')) {
    const m = /^(sendto|recvfrom)\(\d+, "((?:[^"\\]|\\.)*)", \d+.*\) = (\d+)$/.exec(line);
    if (!m) continue;
    const text = unescape(m[2]).subarray(0, Number(m[3])).toString('latin1');
    (m[1] === 'sendto' ? sent : received).push(text);
  }
  // latin1 keeps each byte as one character, so a chunk cut inside a UTF-8 sequence survives the round trip.
  recorded.push({ command: ['ovs-vsctl', '--db=DB', ...args], encoding: 'latin1', sent, received });
}
process.stdout.write(`${JSON.stringify(recorded, null, 1)}\n`);
