/**
 * Runs a program under strace and returns the bytes it sent and received on its sockets (sendto /
 * recvfrom, as OVS's tools use them), chunk by chunk as the kernel handed them over. For the recording
 * scripts only (root, strace installed).
 */
import { spawnSync } from 'node:child_process';

/** strace's -xx escapes (`\xNN`) back to bytes. */
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

/** `{ status, stdout, stderr, sent: Buffer[], received: Buffer[] }` of `program args...` fed `input`. */
export function straceSocketCalls(program, args, input = '') {
  const r = spawnSync('strace', ['-e', 'trace=sendto,recvfrom', '-xx', '-s', '10000000', program, ...args], {
    input,
    encoding: 'utf8',
    maxBuffer: 256 << 20,
  });
  const sent = [];
  const received = [];
  const output = [];
  for (const line of r.stderr.split('\n')) {
    const m = /^(sendto|recvfrom)\(\d+, "((?:[^"\\]|\\.)*)", \d+.*\) = (\d+)$/.exec(line);
    if (!m) {
      if (!/^(sendto|recvfrom|\+\+\+|---)/.test(line)) output.push(line);
      continue;
    }
    (m[1] === 'sendto' ? sent : received).push(unescape(m[2]).subarray(0, Number(m[3])));
  }
  return { status: r.status, stdout: r.stdout, stderr: output.join('\n'), sent, received };
}
