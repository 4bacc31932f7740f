/**
 * OVSDB's typed JSON values (RFC 7047 section 5.1): atoms are JSON strings, numbers and booleans; a UUID
 * is `["uuid", U]`, a reference to a row inserted in the same transaction `["named-uuid", NAME]`; a set
 * with other than one element is `["set", [...]]`; a map is `["map", [[k, v], ...]]`. Builders for
 * writing, and readers that accept every form the server may send (a one-element set as its atom).
 */

export type OvsdbAtom = string | number | boolean | OvsdbUuid | OvsdbNamedUuid;
export type OvsdbUuid = ['uuid', string];
export type OvsdbNamedUuid = ['named-uuid', string];
export type OvsdbSet = ['set', OvsdbAtom[]];
export type OvsdbMap = ['map', [OvsdbAtom, OvsdbAtom][]];
export type OvsdbValue = OvsdbAtom | OvsdbSet | OvsdbMap;

export type OvsdbRow = Record<string, OvsdbValue>;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** RFC 7047: a uuid-name is an `<id>`: a letter or `_`, then letters, digits and `_`. */
const ID_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function uuid(u: string): OvsdbUuid {
  if (!UUID_RE.test(u)) throw new TypeError(`'${u}' is not a UUID`);
  return ['uuid', u];
}

export function namedUuid(name: string): OvsdbNamedUuid {
  if (!ID_RE.test(name)) throw new TypeError(`'${name}' is not a valid uuid-name (a letter or _, then letters, digits, _)`);
  return ['named-uuid', name];
}

export function set(atoms: readonly OvsdbAtom[]): OvsdbSet {
  return ['set', [...atoms]];
}

/** A map from a plain object (string keys and values: external_ids, options, other_config). */
export function map(entries: Readonly<Record<string, OvsdbAtom>> | ReadonlyMap<OvsdbAtom, OvsdbAtom>): OvsdbMap {
  const pairs = entries instanceof Map ? [...entries.entries()] : Object.entries(entries);
  return ['map', pairs.map(([k, v]) => [k, v] as [OvsdbAtom, OvsdbAtom])];
}

/** The empty set: how an optional column (`min: 0, max: 1`) is cleared. */
export const EMPTY_SET: OvsdbSet = ['set', []];

// ---------------------------------------------------------------------------------------------------
// Readers

export function isUuid(v: unknown): v is OvsdbUuid {
  return Array.isArray(v) && v.length === 2 && v[0] === 'uuid' && typeof v[1] === 'string';
}

/** The UUID string of `["uuid", U]` (undefined for anything else). */
export function uuidOf(v: unknown): string | undefined {
  return isUuid(v) ? v[1] : undefined;
}

/** The elements of a set column (a bare atom is a one-element set; absent is empty). */
export function setOf(v: unknown): OvsdbAtom[] {
  if (Array.isArray(v) && v[0] === 'set') return Array.isArray(v[1]) ? (v[1] as OvsdbAtom[]) : [];
  if (v === undefined || v === null) return [];
  return [v as OvsdbAtom];
}

/** The UUIDs of a set of references. */
export function uuidsOf(v: unknown): string[] {
  return setOf(v).flatMap((a) => (isUuid(a) ? [a[1]] : []));
}

/** A map column with string keys, values as strings (numbers and booleans converted). */
export function mapOf(v: unknown): Record<string, string> {
  if (!(Array.isArray(v) && v[0] === 'map' && Array.isArray(v[1]))) return {};
  const out: Record<string, string> = {};
  for (const kv of v[1] as unknown[]) {
    if (Array.isArray(kv) && kv.length === 2) out[String(atomText(kv[0]))] = String(atomText(kv[1]));
  }
  return out;
}

/** An optional column's value (`min: 0, max: 1`): its atom or undefined when the set is empty. */
export function optionalOf(v: unknown): OvsdbAtom | undefined {
  const s = setOf(v);
  return s[0];
}

function atomText(a: unknown): string | number | boolean {
  if (isUuid(a)) return a[1];
  return typeof a === 'string' || typeof a === 'number' || typeof a === 'boolean' ? a : JSON.stringify(a);
}
