/** The Markdown tables of a run (results/bench.md, the README's performance section, the end of `npm run bench`). */
import type { BenchResults, Target } from '../results.js';
import { clusterMarkdown } from './cluster-markdown.js';
import type { Summary } from '../stats.js';
import { SYSTEM_LABELS, SYSTEM_NAMES, type SystemName } from '../systems/types.js';

function num(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return value.toFixed(digits);
}

function row(cells: readonly string[]): string {
  return `| ${cells.join(' | ')} |`;
}

function table(header: readonly string[], rows: readonly (readonly string[])[], align?: readonly ('l' | 'r')[]): string[] {
  const marks = header.map((_, i) => ((align?.[i] ?? (i === 0 ? 'l' : 'r')) === 'l' ? '---' : '---:'));
  return [row(header), row(marks), ...rows.map(row)];
}

function verdict(t: Target): string {
  if (t.pass === null) return 'not measured';
  return t.pass ? 'met' : '**missed**';
}

function targetValue(t: Target): string {
  if (t.measured === null) return '–';
  if (t.unit === 'ratio') return t.measured.toFixed(3);
  return `${num(t.measured, t.unit === '/s' || t.unit === 'instances' ? 0 : 1)} ${t.unit}`;
}

function limitValue(t: Target): string {
  return `${t.comparator} ${t.unit === 'ratio' ? String(t.limit) : `${t.limit} ${t.unit}`}`;
}

export function renderMarkdown(r: BenchResults): string {
  const out: string[] = [];
  const env = r.environment;
  out.push(`### nodenet benchmark (${r.profile} run, ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC)`);
  out.push('');
  out.push(
    `Machine: ${env.cpus} × ${env.cpuModel}, ${env.memoryGiB} GiB, Linux ${env.kernel}, Node ${env.node}; load average ${num(env.loadStart, 2)} at start, ${num(env.loadEnd, 2)} at end. ` +
      `Peers: containernetworking-plugins ${env.versions['containernetworking-plugins']}, netavark ${env.versions.netavark}, iperf3 ${env.versions.iperf3}. Run time ${Math.round(r.durationSeconds)} s.`,
  );
  const wake = [env.wakeStart, env.wakeEnd].filter((w) => w !== undefined);
  if (wake.length > 0) {
    const both = (pick: (w: NonNullable<typeof env.wakeStart>) => number, digits: number) =>
      wake.map((w) => num(pick(w), digits)).join(' / ');
    out.push(
      '',
      `Idle wake-up on this machine (${wake.length === 2 ? 'start / end of the run' : 'start of the run'}; it moves every latency here, see packages/bench/src/wake-probe.ts): ` +
        `a round trip through a child process ${both((w) => w.pipeRoundTripMs.hot, 2)} ms back to back, ${both((w) => w.pipeRoundTripMs.afterIdle, 2)} ms after ${wake[0]!.idleMs} ms idle; ` +
        `reading a page ${both((w) => w.pageTouchUs.hot, 2)} µs hot, ${both((w) => w.pageTouchUs.afterIdle, 2)} µs after ${wake[0]!.idleMs} ms idle.`,
    );
  }
  const skipped = Object.entries(r.skipped);
  if (skipped.length > 0) out.push('', `Skipped: ${skipped.map(([k, v]) => `${k} (${v})`).join('; ')}.`);

  const systems = SYSTEM_NAMES.filter((s) => r.latency?.systems[s] || r.burst?.systems[s]);
  if (r.latency || r.burst) {
    out.push(
      '',
      `**Wiring an instance** (veth into its namespace, address, default route, 2 published ports TCP+UDP). ` +
        (r.latency ? `Latency: ${r.latency.instances} create/delete cycles per system, interleaved, sequential, ms. ` : '') +
        (r.burst
          ? `Burst: ${r.burst.systems.nodenet?.instances ?? '–'} (nodenet) / ${r.burst.systems.cni?.instances ?? r.burst.systems.netavark?.instances ?? '–'} (peers) instances, ${r.burst.systems.nodenet?.concurrency ?? '–'} concurrent clients.`
          : ''),
    );
    out.push('');
    const lat = (s: SystemName, which: 'create' | 'delete', p: keyof Summary) => num(r.latency?.systems[s]?.[which][p], 1);
    const rows: string[][] = [];
    if (r.latency) {
      rows.push(['create p50 (ms)', ...systems.map((s) => lat(s, 'create', 'p50'))]);
      rows.push(['create p99 (ms)', ...systems.map((s) => lat(s, 'create', 'p99'))]);
      rows.push(['delete p50 (ms)', ...systems.map((s) => lat(s, 'delete', 'p50'))]);
      rows.push(['delete p99 (ms)', ...systems.map((s) => lat(s, 'delete', 'p99'))]);
    }
    if (r.burst) {
      rows.push(['burst creates/s', ...systems.map((s) => num(r.burst?.systems[s]?.create.perSecond, 0))]);
      rows.push(['burst deletes/s', ...systems.map((s) => num(r.burst?.systems[s]?.delete.perSecond, 0))]);
      rows.push([
        'CPU per create / delete in the burst (ms)',
        ...systems.map(
          (s) => `${num(r.burst?.systems[s]?.create.cpuMsPerInstance, 1)} / ${num(r.burst?.systems[s]?.delete.cpuMsPerInstance, 1)}`,
        ),
      ]);
      rows.push([
        'burst create p50 / p99 (ms)',
        ...systems.map((s) => `${num(r.burst?.systems[s]?.create.latency.p50, 0)} / ${num(r.burst?.systems[s]?.create.latency.p99, 0)}`),
      ]);
      const errors = systems.map((s) => (r.burst?.systems[s]?.create.errors ?? 0) + (r.burst?.systems[s]?.delete.errors ?? 0));
      if (errors.some((e) => e > 0)) rows.push(['burst errors', ...errors.map(String)]);
    }
    out.push(...table(['', ...systems.map((s) => SYSTEM_LABELS[s])], rows));
  }

  if (r.scale && (r.scale.steps.length > 0 || r.scale.limit)) {
    const steps = r.scale.steps;
    out.push(
      '',
      `**Cost as the node fills** (nodenet; ${r.scale.samplesPerStep} creates sampled at each size, each followed by its delete; ratio last/first p50 = ${num(r.scale.p50Ratio, 2)}).`,
      '',
    );
    out.push(
      ...table(
        ['existing instances', ...steps.map((s) => String(s.existing))],
        [
          ['create p50 (ms)', ...steps.map((s) => num(s.create.p50))],
          ['create p99 (ms)', ...steps.map((s) => num(s.create.p99))],
          ['delete p50 (ms)', ...steps.map((s) => num(s.delete.p50))],
          ['daemon RSS (MB)', ...steps.map((s) => num(s.rssMB, 0))],
        ],
      ),
    );
  }
  if (r.scale?.limit) {
    out.push(
      '',
      `The node took ${r.scale.limit.reached} instances, not ${r.scale.limit.requested}: ${r.scale.limit.error.replace(/\|/g, '\\|')}. Daemon RSS then: ${num(r.scale.finalRssMB, 0)} MB.`,
    );
  }

  const restarts = [r.restart, r.restartOvs].filter((x): x is NonNullable<typeof x> => x !== undefined);
  if (restarts.length > 0) out.push('', ...restartMarkdown(restarts));

  if (r.datapath) {
    out.push(
      '',
      `**Datapath** (iperf3, one TCP stream, ${r.datapath.seconds} s${r.datapath.omitSeconds ? ` after ${r.datapath.omitSeconds} s omitted` : ''}, median of ${r.datapath.rounds} rounds, Gbit/s; ratio: the median of the per-round ratios, each round running both sides back to back).`,
      '',
    );
    out.push(
      ...table(
        ['path', 'subject', 'Gbit/s', 'baseline', 'Gbit/s', 'ratio'],
        r.datapath.pairs.map((p) => [
          p.name,
          p.subject.label.replace(/^nodenet: /, ''),
          num(p.subject.medianGbps, 2),
          p.baseline.label,
          num(p.baseline.medianGbps, 2),
          num(p.ratio, 3),
        ]),
        ['l', 'l', 'r', 'l', 'r', 'r'],
      ),
    );
  }

  if (r.cniPlugin) {
    const c = r.cniPlugin;
    out.push(
      '',
      `**Container runtimes through libcni** (one published port; ${c.rounds} ADD/DEL rounds per conflist, interleaved nodenet / stock; ms). Stock chain: bridge + host-local + portmap. Plugin's own cost: exec to exit, ADD against a stub daemon that answers at once.`,
      '',
    );
    out.push(
      ...table(
        ['', 'nodenet plugin', 'stock chain', 'ratio (p50)'],
        [
          [
            'ADD p50 / p99',
            `${num(c.nodenet.add.p50)} / ${num(c.nodenet.add.p99)}`,
            `${num(c.stock.add.p50)} / ${num(c.stock.add.p99)}`,
            num(c.addRatio, 3),
          ],
          [
            'DEL p50 / p99',
            `${num(c.nodenet.del.p50)} / ${num(c.nodenet.del.p99)}`,
            `${num(c.stock.del.p50)} / ${num(c.stock.del.p99)}`,
            num(c.delRatio, 3),
          ],
          ['plugin alone: VERSION p50 / p99', `${num(c.pluginOwn.version.p50, 2)} / ${num(c.pluginOwn.version.p99, 2)}`, '', ''],
          [
            'plugin alone: ADD (stub daemon) p50 / p99',
            `${num(c.pluginOwn.addAgainstStub.p50, 2)} / ${num(c.pluginOwn.addAgainstStub.p99, 2)}`,
            '',
            '',
          ],
        ],
      ),
    );
  }

  out.push(...clusterMarkdown(r));

  if (r.dualStack) {
    const d = r.dualStack;
    const side = (s: 'ipv4' | 'dual', which: 'create' | 'delete') =>
      `${num(d.latency[s]?.[which].p50)} / ${num(d.latency[s]?.[which].p99)}`;
    const row = (which: 'create' | 'delete') => {
      const r = which === 'create' ? d.createRatio : d.deleteRatio;
      return [which, side('ipv4', which), side('dual', which), num(r.p50, 3), num(r.p99, 3), num(r.paired, 3)];
    };
    out.push(
      '',
      `**Dual-stack** (iproute2; an instance with an IPv4 and an IPv6 address and 2 published ports TCP+UDP, against the same with IPv4 only, one node each; ${d.cycles} create/delete cycles per node, interleaved; ms; ratios dual / IPv4: of the p50s, of the p99s, and the median of the per-cycle ratios).`,
      '',
    );
    out.push(
      ...table(
        ['', 'IPv4 only p50 / p99', 'dual-stack p50 / p99', 'ratio p50', 'ratio p99', 'ratio per cycle'],
        [row('create'), row('delete')],
      ),
    );
  }

  out.push('', '**Targets** (from this one run):', '');
  out.push(
    ...table(
      ['target', 'measured', 'wanted', ''],
      r.targets.map((t) => [t.description, targetValue(t), limitValue(t), verdict(t)]),
      ['l', 'r', 'r', 'l'],
    ),
  );
  out.push('');
  return out.join('\n');
}

function finite(values: readonly (number | null)[]): number[] {
  return values.filter((v): v is number => v !== null && Number.isFinite(v));
}

function median(values: readonly (number | null)[]): number {
  const v = finite(values).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/**
 * The restart suite: per backend, the bundled daemon (as installed) and the unbundled one (the compiled
 * workspace) side by side; results from before the bundle was measured have unbundled runs only.
 */
function restartMarkdown(restarts: readonly NonNullable<BenchResults['restart']>[]): string[] {
  const out = [
    `**Restart** with the node full: SIGTERM, start, poll health every 10 ms; each run restarts the bundled daemon (as the release installs it) and the unbundled one (packages/*/dist) back to back. CPU: the daemon's user + system time (its reaped children's included) from spawn to SERVING.`,
    '',
  ];
  const rows: string[][] = [];
  for (const r of restarts) {
    const builds = ['bundled', 'unbundled'] as const;
    for (const build of builds) {
      const runs = r.runs.filter((x) => (x.build ?? 'unbundled') === build);
      if (runs.length === 0) continue;
      const ms = (f: (x: (typeof runs)[number]) => number | null) => {
        const xs = finite(runs.map(f));
        return xs.length === 0 ? '–' : `${num(median(xs), 0)} (${num(Math.min(...xs), 0)}-${num(Math.max(...xs), 0)})`;
      };
      rows.push([
        `${r.backend ?? 'iproute2'}, ${r.instances} instances`,
        build,
        String(runs.length),
        ms((x) => x.servingMs),
        ms((x) => x.cpuMs ?? null),
        ms((x) => x.restoreMs),
        ms((x) => x.startToReadyMs),
        ms((x) => x.rssMB),
      ]);
    }
  }
  out.push(
    ...table(
      ['node', 'daemon', 'runs', 'spawn → SERVING (ms)', 'CPU to SERVING (ms)', 'of which restore (ms)', 'start → ready (ms)', 'RSS (MB)'],
      rows,
    ),
  );
  return out;
}
