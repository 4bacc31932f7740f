/**
 * Reading back what the kernel holds, from `nft -j list table ...` (used only on the fallback paths of
 * addInstance / removeInstance, never per request). Elements that do not parse are skipped: they cannot
 * be nodenet's, so they are never deleted on their account.
 */
import type { Protocol } from '@nodenet/core';
import { ALLOWED_SOURCES, PUBLISHED_PORTS, type ListedPort, type ListedSource } from './script.js';

type Json = unknown;

/** The objects (`{"map": ...}`, `{"set": ...}`, ...) of an `nft -j` document. */
function objects(json: string): Record<string, Json>[] {
  const doc = JSON.parse(json) as { nftables?: unknown };
  return Array.isArray(doc.nftables) ? (doc.nftables as Record<string, Json>[]) : [];
}

function named(json: string, kind: 'map' | 'set', name: string): Record<string, Json> | null {
  for (const o of objects(json)) {
    const body = o[kind] as Record<string, Json> | undefined;
    if (body && body.name === name) return body;
  }
  return null;
}

/** Unwraps `{"elem": {"val": X, "counter": ...}}` (elements with options) to X. */
function value(e: Json): Json {
  if (e && typeof e === 'object' && 'elem' in e) return value((e as { elem: { val?: Json } }).elem.val);
  return e;
}

function concat(e: Json): Json[] | null {
  const v = value(e);
  if (v && typeof v === 'object' && Array.isArray((v as { concat?: unknown }).concat)) return (v as { concat: Json[] }).concat;
  return null;
}

const PROTOCOL_NUMBERS: Record<string, Protocol> = { '6': 'tcp', '17': 'udp', tcp: 'tcp', udp: 'udp' };

function protocol(v: Json): Protocol | null {
  return PROTOCOL_NUMBERS[String(v)] ?? null;
}

function port(v: Json): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : null;
}

/** The published_ports elements of `nft -j list table ip nodenet` output; null when the map is absent. */
export function parsePublishedPorts(json: string): ListedPort[] | null {
  const map = named(json, 'map', PUBLISHED_PORTS);
  if (!map) return null;
  const out: ListedPort[] = [];
  for (const e of Array.isArray(map.elem) ? map.elem : []) {
    if (!Array.isArray(e) || e.length !== 2) continue;
    const key = concat(e[0]);
    const data = concat(e[1]);
    if (!key || !data || key.length !== 2 || data.length !== 2) continue;
    const p = protocol(key[0]);
    const hostPort = port(key[1]);
    const instancePort = port(data[1]);
    if (!p || hostPort === null || instancePort === null || typeof data[0] !== 'string') continue;
    out.push({ protocol: p, hostPort, address: data[0], instancePort });
  }
  return out;
}

/** The allowed_sources elements of `nft -j list table bridge nodenet` output; null when the set is absent. */
export function parseAllowedSources(json: string): ListedSource[] | null {
  const set = named(json, 'set', ALLOWED_SOURCES);
  if (!set) return null;
  const out: ListedSource[] = [];
  for (const e of Array.isArray(set.elem) ? set.elem : []) {
    const parts = concat(e);
    if (!parts || parts.length !== 2 || typeof parts[0] !== 'string' || typeof parts[1] !== 'string') continue;
    out.push({ ifname: parts[0], address: parts[1] });
  }
  return out;
}

/** Number of rules in an `nft -j list ...` document (for tests and diagnostics). */
export function countRules(json: string): number {
  return objects(json).filter((o) => 'rule' in o).length;
}
