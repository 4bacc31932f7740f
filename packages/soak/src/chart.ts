/**
 * The soak's plot: one small line chart per metric against time (plus live instances and operations),
 * daemon restarts as vertical lines (SIGKILL in red), the judged half shaded. SVG written by hand: the
 * bench's charts are bar charts, this is the one line chart the repository needs.
 */
import { linearTicks } from '@nodenet/bench';
import type { MetricKey, SoakSample, SoakVerdict } from './metrics.js';
import type { SoakEvent } from './run.js';

const PANEL_W = 430;
const PANEL_H = 150;
const COLS = 2;
const MARGIN = { left: 58, right: 14, top: 24, bottom: 30 };

interface Series {
  readonly title: string;
  readonly key: MetricKey | 'live' | 'ops';
  readonly verdict?: string;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function tickLabel(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${+(v / 1e3).toFixed(0)}k`;
  return String(+v.toFixed(2));
}

function panel(s: Series, samples: readonly SoakSample[], events: readonly SoakEvent[], judgeFrom: number, x0: number, y0: number): string {
  const tMax = Math.max(1, samples[samples.length - 1]?.t ?? 1);
  const values = samples.map((p) => p[s.key]);
  const top = Math.max(1e-9, ...values);
  const ticks = linearTicks(top, 4);
  // linearTicks stops at or below the maximum: one more step so the line stays inside the panel.
  if (ticks[ticks.length - 1]! < top) ticks.push(ticks[ticks.length - 1]! + (ticks[1] ?? top) - ticks[0]!);
  const yMax = ticks[ticks.length - 1] ?? 1;
  const w = PANEL_W - MARGIN.left - MARGIN.right;
  const h = PANEL_H - MARGIN.top - MARGIN.bottom;
  const px = (t: number): number => x0 + MARGIN.left + (t / tMax) * w;
  const py = (v: number): number => y0 + MARGIN.top + h - (v / yMax) * h;
  const out: string[] = [];
  out.push(
    `<rect x="${px(judgeFrom).toFixed(1)}" y="${y0 + MARGIN.top}" width="${(px(tMax) - px(judgeFrom)).toFixed(1)}" height="${h}" fill="#f3f6fb"/>`,
  );
  for (const v of ticks) {
    out.push(
      `<line x1="${x0 + MARGIN.left}" x2="${x0 + MARGIN.left + w}" y1="${py(v).toFixed(1)}" y2="${py(v).toFixed(1)}" stroke="#ddd"/>`,
    );
    out.push(`<text x="${x0 + MARGIN.left - 4}" y="${(py(v) + 3).toFixed(1)}" text-anchor="end" font-size="9">${tickLabel(v)}</text>`);
  }
  for (const e of events) {
    if (e.kind !== 'restart' && e.kind !== 'kill') continue;
    out.push(
      `<line x1="${px(e.t).toFixed(1)}" x2="${px(e.t).toFixed(1)}" y1="${y0 + MARGIN.top}" y2="${y0 + MARGIN.top + h}" stroke="${e.kind === 'kill' ? '#d33' : '#999'}" stroke-dasharray="2,2"/>`,
    );
  }
  const minutes = tMax / 60;
  for (const m of linearTicks(minutes, 6)) {
    if (m > minutes) continue;
    out.push(
      `<text x="${px(m * 60).toFixed(1)}" y="${y0 + MARGIN.top + h + 12}" text-anchor="middle" font-size="9">${tickLabel(m)}</text>`,
    );
  }
  out.push(`<text x="${x0 + MARGIN.left + w}" y="${y0 + PANEL_H - 4}" text-anchor="end" font-size="9" fill="#666">minutes</text>`);
  const points = samples.map((p) => `${px(p.t).toFixed(1)},${py(p[s.key]).toFixed(1)}`).join(' ');
  out.push(`<polyline points="${points}" fill="none" stroke="#2a6fdb" stroke-width="1.2"/>`);
  out.push(`<text x="${x0 + MARGIN.left}" y="${y0 + 15}" font-size="11" font-weight="bold">${esc(s.title)}</text>`);
  if (s.verdict) {
    const pass = s.verdict.startsWith('PASS');
    out.push(
      `<text x="${x0 + MARGIN.left + w}" y="${y0 + 15}" text-anchor="end" font-size="10" fill="${pass ? '#1a7f37' : '#d33'}">${esc(s.verdict)}</text>`,
    );
  }
  out.push(`<rect x="${x0 + MARGIN.left}" y="${y0 + MARGIN.top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`);
  return out.join('\n');
}

export function renderSoakSvg(title: string, samples: readonly SoakSample[], events: readonly SoakEvent[], verdict: SoakVerdict): string {
  const series: Series[] = [
    { title: 'live instances', key: 'live' },
    { title: 'operations done', key: 'ops' },
    ...verdict.metrics.map((v) => ({
      title: `${v.label} (${v.unit})`,
      key: v.key,
      verdict: `${v.pass ? 'PASS' : 'FAIL'}: ${v.growth >= 0 ? '+' : ''}${tickLabel(Number(v.growth.toFixed(2)))} / ${tickLabel(v.allowed)} allowed`,
    })),
  ];
  const rows = Math.ceil(series.length / COLS);
  const width = COLS * PANEL_W;
  const height = 40 + rows * PANEL_H + 20;
  const body = series.map((s, i) =>
    panel(s, samples, events, verdict.judgeFrom, (i % COLS) * PANEL_W, 40 + Math.floor(i / COLS) * PANEL_H),
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="10" y="18" font-size="12" font-weight="bold">${esc(title)}</text>`,
    `<text x="10" y="33" font-size="10" fill="#555">shaded: judged half; dashed lines: daemon restarts (grey SIGTERM, red SIGKILL); verdict: growth with operations / allowed</text>`,
    ...body,
    `</svg>`,
    '',
  ].join('\n');
}
