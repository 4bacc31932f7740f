/**
 * results/bench.svg: left, the distributions of create and delete latency per system (empirical CDFs on a
 * log time axis); right, nodenet's cost curve as the node fills (create p50 and p99, RSS labelled at each
 * step). Plain SVG, no dependencies.
 */
import type { BenchResults } from '../results.js';
import { SYSTEM_LABELS, SYSTEM_NAMES, type SystemName } from '../systems/types.js';

const WIDTH = 1000;
const HEIGHT = 420;
const COLORS: Record<SystemName, string> = { nodenet: '#1b7837', cni: '#2166ac', netavark: '#b2182b' };

interface Box {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

/** Tick values 1, 2, 5 x 10^k covering [min, max]. */
export function logTicks(min: number, max: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= min * 0.999 && v <= max * 1.001) ticks.push(v);
    }
  }
  return ticks;
}

/** About `count` round tick values covering [0, max]. */
export function linearTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = 0; v <= max * 1.0001; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
  return ticks;
}

function axisFrame(box: Box, title: string, xLabel: string, yLabel: string): string[] {
  return [
    `<rect x="${box.x}" y="${box.y}" width="${box.w}" height="${box.h}" fill="none" stroke="#999"/>`,
    `<text x="${box.x + box.w / 2}" y="${box.y - 12}" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
    `<text x="${box.x + box.w / 2}" y="${box.y + box.h + 36}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>`,
    `<text transform="translate(${box.x - 44},${box.y + box.h / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>`,
  ];
}

function cdfPanel(r: BenchResults, box: Box): string[] {
  const out = axisFrame(box, 'Wiring latency: create (solid) and delete (dashed)', 'milliseconds (log scale)', 'fraction of instances');
  const series: { system: SystemName; kind: 'create' | 'delete'; samples: number[] }[] = [];
  for (const system of SYSTEM_NAMES) {
    const s = r.latency?.systems[system];
    if (!s) continue;
    series.push({ system, kind: 'create', samples: s.createSamples.filter((v) => v > 0) });
    series.push({ system, kind: 'delete', samples: s.deleteSamples.filter((v) => v > 0) });
  }
  const all = series.flatMap((s) => s.samples);
  if (all.length === 0) {
    out.push(
      `<text x="${box.x + box.w / 2}" y="${box.y + box.h / 2}" text-anchor="middle" font-size="12">no latency samples in this run</text>`,
    );
    return out;
  }
  const lo = 10 ** Math.floor(Math.log10(Math.min(...all)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...all)));
  const x = (v: number) => box.x + ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * box.w;
  const y = (f: number) => box.y + box.h - f * box.h;
  for (const t of logTicks(lo, hi)) {
    out.push(`<line x1="${fmt(x(t))}" y1="${box.y}" x2="${fmt(x(t))}" y2="${box.y + box.h}" stroke="#eee"/>`);
    out.push(`<text x="${fmt(x(t))}" y="${box.y + box.h + 16}" text-anchor="middle" font-size="11">${t}</text>`);
  }
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    out.push(`<line x1="${box.x}" y1="${fmt(y(f))}" x2="${box.x + box.w}" y2="${fmt(y(f))}" stroke="#eee"/>`);
    out.push(`<text x="${box.x - 6}" y="${fmt(y(f) + 4)}" text-anchor="end" font-size="11">${f}</text>`);
  }
  for (const s of series) {
    // An empirical CDF is a step function: up at each sample, flat to the next.
    const sorted = [...s.samples].sort((a, b) => a - b);
    const points: string[] = [];
    sorted.forEach((v, i) => {
      points.push(`${fmt(x(v))},${fmt(y(i / sorted.length))}`, `${fmt(x(v))},${fmt(y((i + 1) / sorted.length))}`);
    });
    out.push(
      `<polyline fill="none" stroke="${COLORS[s.system]}" stroke-width="1.8"${s.kind === 'delete' ? ' stroke-dasharray="5,3"' : ''} points="${points.join(' ')}"><title>${esc(`${SYSTEM_LABELS[s.system]} ${s.kind}`)}</title></polyline>`,
    );
  }
  // Legend
  const systems = [...new Set(series.map((s) => s.system))];
  systems.forEach((system, i) => {
    const ly = box.y + 14 + i * 16;
    out.push(`<line x1="${box.x + 10}" y1="${ly - 4}" x2="${box.x + 30}" y2="${ly - 4}" stroke="${COLORS[system]}" stroke-width="2"/>`);
    out.push(`<text x="${box.x + 35}" y="${ly}" font-size="11">${esc(SYSTEM_LABELS[system])}</text>`);
  });
  return out;
}

function scalePanel(r: BenchResults, box: Box): string[] {
  const out = axisFrame(box, 'nodenet create latency as the node fills', 'existing instances (2 published ports each)', 'milliseconds');
  const steps = r.scale?.steps ?? [];
  if (steps.length === 0) {
    out.push(
      `<text x="${box.x + box.w / 2}" y="${box.y + box.h / 2}" text-anchor="middle" font-size="12">no scale steps in this run</text>`,
    );
    return out;
  }
  const maxX = Math.max(...steps.map((s) => s.existing));
  const maxY = Math.max(...steps.map((s) => (Number.isFinite(s.create.p99) ? s.create.p99 : 0)), 1) * 1.15;
  const yTicks = linearTicks(maxY);
  const top = yTicks[yTicks.length - 1]! || maxY;
  const xTicks = linearTicks(maxX);
  const xTop = xTicks[xTicks.length - 1]! || maxX;
  const x = (v: number) => box.x + (v / xTop) * box.w;
  const y = (v: number) => box.y + box.h - (v / top) * box.h;
  for (const t of xTicks) {
    out.push(`<line x1="${fmt(x(t))}" y1="${box.y}" x2="${fmt(x(t))}" y2="${box.y + box.h}" stroke="#eee"/>`);
    out.push(`<text x="${fmt(x(t))}" y="${box.y + box.h + 16}" text-anchor="middle" font-size="11">${t}</text>`);
  }
  for (const t of yTicks) {
    out.push(`<line x1="${box.x}" y1="${fmt(y(t))}" x2="${box.x + box.w}" y2="${fmt(y(t))}" stroke="#eee"/>`);
    out.push(`<text x="${box.x - 6}" y="${fmt(y(t) + 4)}" text-anchor="end" font-size="11">${t}</text>`);
  }
  const line = (pick: (s: (typeof steps)[number]) => number, dashed: boolean, label: string) => {
    const pts = steps.filter((s) => Number.isFinite(pick(s))).map((s) => `${fmt(x(s.existing))},${fmt(y(pick(s)))}`);
    out.push(
      `<polyline fill="none" stroke="${COLORS.nodenet}" stroke-width="2"${dashed ? ' stroke-dasharray="5,3"' : ''} points="${pts.join(' ')}"><title>${label}</title></polyline>`,
    );
    for (const s of steps) {
      if (Number.isFinite(pick(s))) out.push(`<circle cx="${fmt(x(s.existing))}" cy="${fmt(y(pick(s)))}" r="3" fill="${COLORS.nodenet}"/>`);
    }
  };
  line((s) => s.create.p50, false, 'create p50');
  line((s) => s.create.p99, true, 'create p99');
  for (const s of steps) {
    if (!Number.isFinite(s.create.p50)) continue;
    const anchor = s.existing === xTop ? 'end' : 'middle';
    out.push(
      `<text x="${fmt(x(s.existing))}" y="${fmt(y(s.create.p50) + 16)}" text-anchor="${anchor}" font-size="10" fill="#555">${fmt(s.create.p50)} ms · ${Math.round(s.rssMB)} MB</text>`,
    );
  }
  // Notes at the bottom of the panel: the curves sit above the x axis by at least the p50 label.
  const notes = ['solid: p50 · dashed: p99 · labels: p50 and daemon RSS'];
  if (r.scale) notes.push(`p50 at ${steps[steps.length - 1]!.existing} / at ${steps[0]!.existing}: ${r.scale.p50Ratio}`);
  if (r.scale?.limit) notes.push(`the node took ${r.scale.limit.reached} instances, not ${r.scale.limit.requested}`);
  notes.forEach((note, i) => {
    out.push(`<text x="${box.x + 10}" y="${box.y + box.h - 10 - (notes.length - 1 - i) * 15}" font-size="11">${esc(note)}</text>`);
  });
  return out;
}

export function renderSvg(r: BenchResults): string {
  const left: Box = { x: 70, y: 50, w: 380, h: 300 };
  const right: Box = { x: 580, y: 50, w: 380, h: 300 };
  const body = [
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    ...cdfPanel(r, left),
    ...scalePanel(r, right),
    `<text x="${WIDTH - 10}" y="${HEIGHT - 8}" text-anchor="end" font-size="10" fill="#777">${esc(`nodenet bench, ${r.profile} run, ${r.startedAt}`)}</text>`,
  ];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif">\n${body.join('\n')}\n</svg>\n`;
}
