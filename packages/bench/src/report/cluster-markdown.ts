/** The Markdown of the cluster and backends suites (part of bench.md; renderMarkdown places it before the targets). */
import { BACKEND_NAMES } from '../cluster/peer-facts.js';
import type { BenchResults } from '../results.js';

function num(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return value.toFixed(digits);
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const row = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [row(header), row(header.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(row)];
}

export function clusterMarkdown(r: Pick<BenchResults, 'cluster' | 'backends'>): string[] {
  const out: string[] = [];
  const c = r.cluster;
  if (c) {
    const backends = BACKEND_NAMES.filter((b) => c.backends[b]);
    const largest = Math.max(...c.sizes);
    out.push(
      '',
      `**Cluster scale** (vxlan; a real etcd holding N simulated nodes, a real daemon with etcd membership on a fresh node per size; ` +
        `routed = route + neighbour + FDB entry (iproute2) or route + neighbour + flows (ovs), timed from \`ip monitor\` (ovs flows: dumped back to back); ` +
        `at ${largest} peers: ${c.repetitions} records added then removed one at a time; ms).`,
      '',
    );
    const join = (b: (typeof backends)[number], size: number) => c.backends[b]?.joins.find((j) => j.peers === size);
    out.push(
      ...table(
        ['', ...backends],
        [
          ...c.sizes.map((size) => [`${size} peers: CNI call → all routed`, ...backends.map((b) => num(join(b, size)?.joinMs, 0))]),
          [`the CNI call itself, at ${largest} peers`, ...backends.map((b) => num(join(b, largest)?.cniMs, 0))],
          [`growth ${largest} / ${Math.min(...c.sizes)}`, ...backends.map((b) => num(c.backends[b]?.growth, 2))],
          [
            'one record added → routed, p50 / p99',
            ...backends.map((b) => `${num(c.backends[b]?.addRouted.p50)} / ${num(c.backends[b]?.addRouted.p99)}`),
          ],
          [
            'one record deleted → cleaned up, p50 / p99',
            ...backends.map((b) => `${num(c.backends[b]?.removeCleaned.p50)} / ${num(c.backends[b]?.removeCleaned.p99)}`),
          ],
          [
            '10% leave in one txn → cleaned up',
            ...backends.map((b) => {
              const leave = c.backends[b]?.leave;
              return leave ? `${num(leave.ms, 0)} (${leave.leaving})` : '–';
            }),
          ],
          [`daemon RSS at ${largest} peers (MB)`, ...backends.map((b) => num(join(b, largest)?.rssMB, 0))],
          [`daemon CPU from start to ${largest} joined (ms)`, ...backends.map((b) => num(join(b, largest)?.cpuMs, 0))],
          [
            `daemon CPU idle with ${largest} peers (% of a core, ${c.idleSeconds} s)`,
            ...backends.map((b) => num(c.backends[b]?.idleCpuPercent, 2)),
          ],
        ],
      ),
    );
    const errors = backends.flatMap((b) => c.backends[b]!.firstErrors.map((e) => `${b}: ${e}`));
    if (errors.length > 0) out.push('', `Errors: ${errors.join('; ').replace(/\|/g, '\\|')}.`);
  }
  const k = r.backends;
  if (k) {
    out.push(
      '',
      `**ovs next to iproute2** (one bench node each; ${k.cycles} create/delete cycles interleaved on empty nodes; one more port's create + delete p50 with instances on the node; ms).`,
      '',
    );
    const steps = [...new Set(BACKEND_NAMES.flatMap((b) => k.portCost[b]?.steps.map((s) => s.existing) ?? []))].sort((a, b) => a - b);
    const step = (b: (typeof BACKEND_NAMES)[number], existing: number) => k.portCost[b]?.steps.find((s) => s.existing === existing);
    out.push(
      ...table(
        ['', ...BACKEND_NAMES, 'ovs / iproute2'],
        [
          [
            'create p50 / p99',
            ...BACKEND_NAMES.map((b) => `${num(k.latency[b]?.create.p50)} / ${num(k.latency[b]?.create.p99)}`),
            num(k.createRatio, 2),
          ],
          [
            'delete p50 / p99',
            ...BACKEND_NAMES.map((b) => `${num(k.latency[b]?.delete.p50)} / ${num(k.latency[b]?.delete.p99)}`),
            num(k.deleteRatio, 2),
          ],
          ...steps.map((e) => [
            `one more port at ${e} instances (create + delete p50)`,
            ...BACKEND_NAMES.map((b) => num(step(b, e)?.portCostMs)),
            '',
          ]),
          [
            `ratio ${steps[steps.length - 1] ?? '–'} / ${steps[0] ?? '–'}`,
            ...BACKEND_NAMES.map((b) => `${num(k.portCost[b]?.ratio, 2)}${k.portCost[b]?.fromScaleSuite ? ' (scale suite)' : ''}`),
            '',
          ],
        ],
      ),
    );
  }
  return out;
}
