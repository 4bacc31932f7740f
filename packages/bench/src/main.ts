#!/usr/bin/env node
/**
 * `npm run bench` (root): nodenet side by side with the CNI reference plugins and netavark, in network
 * namespaces made for the run. Needs root, a built tree (`npm run build`) and the peers
 * (packages/bench/scripts/install-peers.sh). Prints the Markdown table at the end.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_OUT_DIR, SUITE_NAMES, fullOptions, quickOptions, type SuiteName } from './options.js';
import { renderMarkdown } from './report/markdown.js';
import { renderSvg } from './report/svg.js';
import { RESULTS_SCHEMA, type BenchResults } from './results.js';
import { runBench } from './run.js';

const USAGE = `usage: nodenet-bench [--quick] [--out DIR] [--suites ${SUITE_NAMES.join(',')}] [--allow-missing-peers]
       nodenet-bench --render RESULTS.json [--out DIR]

  --quick                a few instances of everything (a smoke run: checks the harness, not speed);
                         writes to ${join(DEFAULT_OUT_DIR, 'quick')} unless --out is given
  --out DIR              where bench-<date>.json, bench.md and bench.svg go (default ${DEFAULT_OUT_DIR})
  --suites LIST          run only these suites (restart measures the node as scale left it)
  --allow-missing-peers  run without a peer that is not installed (recorded as skipped)
  --render FILE          write bench.md and bench.svg again from a results file (no run; no root needed)
Needs root. Install the peers with packages/bench/scripts/install-peers.sh.`;

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        out: { type: 'string' },
        suites: { type: 'string' },
        'allow-missing-peers': { type: 'boolean', default: false },
        render: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    });
  } catch (e) {
    process.stderr.write(`nodenet-bench: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (v.render !== undefined) {
    const results = JSON.parse(await readFile(v.render, 'utf8')) as BenchResults;
    if ((results as { schema?: unknown }).schema !== RESULTS_SCHEMA) {
      process.stderr.write(`nodenet-bench: ${v.render} is not a ${RESULTS_SCHEMA} results file\n`);
      return 2;
    }
    const outDir = v.out ?? dirname(v.render);
    const markdown = renderMarkdown(results);
    await writeFile(join(outDir, 'bench.md'), markdown);
    await writeFile(join(outDir, 'bench.svg'), renderSvg(results));
    process.stderr.write(`wrote ${join(outDir, 'bench.md')}, ${join(outDir, 'bench.svg')}\n\n`);
    process.stdout.write(markdown);
    return 0;
  }
  let suites: SuiteName[] = [...SUITE_NAMES];
  if (v.suites !== undefined) {
    const wanted = v.suites
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const unknown = wanted.filter((s) => !SUITE_NAMES.includes(s as SuiteName));
    if (unknown.length > 0 || wanted.length === 0) {
      process.stderr.write(
        `nodenet-bench: unknown suite(s) ${unknown.join(', ') || '(none given)'}: choose from ${SUITE_NAMES.join(', ')}\n`,
      );
      return 2;
    }
    suites = wanted as SuiteName[];
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('nodenet-bench: run as root (the benchmark creates network namespaces)\n');
    return 2;
  }
  const overrides = {
    suites,
    allowMissingPeers: v['allow-missing-peers'],
    outDir: v.out ?? (v.quick ? join(DEFAULT_OUT_DIR, 'quick') : DEFAULT_OUT_DIR),
  };
  const options = v.quick ? quickOptions(overrides) : fullOptions(overrides);
  const { markdown, files } = await runBench(options);
  process.stderr.write(`\nwrote ${files.json}, ${files.markdown}, ${files.svg}\n\n`);
  process.stdout.write(markdown);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`nodenet-bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
