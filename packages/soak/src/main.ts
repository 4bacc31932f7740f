/**
 * `npm run soak -- --hours H`: see USAGE in options.ts.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { serverMainPath } from '@nodenet/testkit';
import { judgeSoak, renderVerdictTable } from './metrics.js';
import { USAGE, UsageError, parseCommand } from './options.js';
import { renderSummary, soakPassed, writeSoakResults } from './report.js';
import { runSoak, type SoakResult } from './run.js';

async function main(): Promise<number> {
  let command;
  try {
    command = parseCommand(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`nodenet soak: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (command.kind === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (command.kind === 'judge') {
    const recorded = JSON.parse(await readFile(command.file, 'utf8')) as SoakResult;
    const verdict = judgeSoak(recorded.samples, { warmupSeconds: recorded.options.warmupSeconds });
    console.log(renderVerdictTable(verdict, recorded.samples));
    return verdict.pass ? 0 : 1;
  }
  if (process.getuid?.() !== 0) {
    console.error('nodenet soak: needs root (it creates network namespaces)');
    return 2;
  }
  if (!existsSync(serverMainPath)) {
    console.error(`nodenet soak: the daemon is not built (${serverMainPath} is missing): run npm run build first`);
    return 2;
  }
  const stamp = (): string => new Date().toISOString().slice(11, 19);
  const result = await runSoak({ ...command.options, log: (line) => console.log(`${stamp()} ${line}`) });
  const files = await writeSoakResults(result, command.outDir);
  console.log(`\n${renderSummary(result)}\n\nwrote ${files.json} and ${files.svg}`);
  return soakPassed(result) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`nodenet soak failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);
