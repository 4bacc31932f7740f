// Runs commands for the benchmark inside the namespace it was started in (`ip netns exec NODE node
// peer-runner.mjs`), as a container runtime on the node runs CNI plugins or netavark: one long-lived process
// spawning each command directly, so no `ip netns exec` per command is counted. Requests and replies are JSON
// lines: {id, file, args, env, input} -> {id, exitCode, signal, stdout, stderr, ms}; ms is spawn to exit.
// Requests run concurrently.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const basePath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function reply(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    reply({ id: -1, error: `bad request: ${e.message}` });
    return;
  }
  const { id, file, args = [], env = {}, input = '' } = request;
  const started = performance.now();
  let child;
  try {
    child = spawn(file, args, { env: { PATH: basePath, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    reply({ id, error: e.message });
    return;
  }
  const out = [];
  const err = [];
  child.stdout.on('data', (c) => out.push(c));
  child.stderr.on('data', (c) => err.push(c));
  child.on('error', (e) => reply({ id, error: e.message }));
  child.on('close', (exitCode, signal) => {
    const ms = performance.now() - started;
    reply({ id, exitCode, signal, ms, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
  });
  child.stdin.on('error', () => undefined); // a command that does not read its input
  child.stdin.end(input);
});
lines.on('close', () => process.exit(0));
reply({ id: 0, ready: true });
