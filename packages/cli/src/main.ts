/** `nodenetctl`: the command-line client of nodenetd. Exit codes: 0 ok, 1 the call failed, 2 usage. */
import { readFile } from 'node:fs/promises';
import { runCli } from './program.js';

process.exitCode = await runCli(process.argv.slice(2), {
  writeOut: (s) => void process.stdout.write(s),
  writeErr: (s) => void process.stderr.write(s),
  env: process.env,
  readFile: (path) => readFile(path),
});
