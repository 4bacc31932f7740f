/**
 * The soak's output: results/soak-<date>.json (options, totals, every sample and event, the verdict) and
 * results/soak-<date>.svg (the curves), plus the summary printed at the end.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderSoakSvg } from './chart.js';
import { renderVerdictTable } from './metrics.js';
import type { SoakResult } from './run.js';

export async function writeSoakResults(result: SoakResult, outDir: string): Promise<{ json: string; svg: string }> {
  await mkdir(outDir, { recursive: true });
  const stamp = result.startedAt.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  const json = join(outDir, `soak-${stamp}.json`);
  const svg = join(outDir, `soak-${stamp}.svg`);
  await writeFile(json, soakJson(result));
  await writeFile(svg, renderSoakSvg(soakTitle(result), result.samples, result.events, result.verdict));
  return { json, svg };
}

/** The result as JSON with one line per sample and per event (a one-hour run stays near 100 KB and diffs well). */
export function soakJson(result: SoakResult): string {
  const { events, samples, ...rest } = result;
  const lines = (xs: readonly unknown[]): string => xs.map((x) => `  ${JSON.stringify(x)}`).join(',\n');
  const head = JSON.stringify(rest, null, 1).replace(/\n}$/, '');
  return `${head},\n "events": [\n${lines(events)}\n ],\n "samples": [\n${lines(samples)}\n ]\n}\n`;
}

export function soakTitle(r: SoakResult): string {
  const t = r.totals;
  return `nodenet soak ${r.startedAt.slice(0, 16)}Z: ${(t.seconds / 60).toFixed(0)} min, ${t.ops} operations, ${t.restarts + t.kills} restarts (${t.kills} SIGKILL), ${t.disruptions} disruptions, load ${r.machine.load1.median} on ${r.machine.cpus} cpus`;
}

export function renderSummary(r: SoakResult): string {
  const t = r.totals;
  const tr = r.traffic;
  return [
    soakTitle(r),
    `operations: ${t.ops} (${t.creates} creates, ${t.deletes} deletes, ${t.opErrors} failed)`,
    `restarts: ${t.restarts} SIGTERM + ${t.kills} SIGKILL, back to SERVING in median ${r.restartMs.median} ms (max ${r.restartMs.max})`,
    `disruptions: ${t.disruptions}, repaired in median ${r.repairMs.median} ms (max ${r.repairMs.max}), ${t.repairTimeouts} not repaired in time`,
    `traffic failures: ping ${tr.ping.failures}/${tr.ping.attempts}, tcp ${tr.tcp.failures}/${tr.tcp.attempts}, udp ${tr.udp.failures}/${tr.udp.attempts}`,
    `machine load (1 min): min ${r.machine.load1.min}, median ${r.machine.load1.median}, max ${r.machine.load1.max} on ${r.machine.cpus} cpus`,
    '',
    renderVerdictTable(r.verdict, r.samples),
  ].join('\n');
}

/** The run passes when nothing grows with operations, no operation failed and every disruption was repaired. */
export function soakPassed(r: SoakResult): boolean {
  return r.verdict.pass && r.totals.opErrors === 0 && r.totals.repairTimeouts === 0;
}
