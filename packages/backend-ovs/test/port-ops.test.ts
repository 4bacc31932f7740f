/**
 * The OVSDB operations a port's add and delete send over the session hold the same content as the ovs-vsctl
 * transactions they replaced: checked against what ovs-vsctl itself sent for nodenet's commands, recorded
 * by scripts/record-port-transactions.mjs (test/fixtures/port-transactions-recorded.json), so ports made
 * either way look the same to a restarted daemon (adoption, the registry, reconciliation).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseIpv4Address, type IfName } from '@nodenet/core';
import type { Operation } from '@nodenet/openvswitch';
import {
  addInstancePortCommands,
  addInstancePortOps,
  deletePortCommands,
  deletePortOps,
  detachPortOps,
  ofportOfColumn,
  unregisterPortOps,
} from '../src/ovsdb.js';

interface Recorded {
  readonly command: string[];
  /** The params of each `transact` request: the database name, then the operations. */
  readonly transact: [string, ...Operation[]][];
}

const recorded = JSON.parse(readFileSync(new URL('./fixtures/port-transactions-recorded.json', import.meta.url), 'utf8')) as Recorded[];

// What the recording script passed to the command builders.
const BRIDGE = 'nodenet0';
const PORT = 'nnh-0000001a' as IfName;
const spec = {
  handle: 'nni-0000001a' as IfName,
  address: parseIpv4Address('198.19.1.26', 'test'),
  mac: '02:00:c6:13:01:1a',
  kind: 'veth' as const,
};
const REGISTRY_KEY = `nodenet-port-${PORT}`;

/** The one recorded transaction of `command` (ovs-vsctl's own arguments after --db and --no-wait). */
function transactionOf(command: readonly string[]): Operation[] {
  const r = recorded.find((x) => JSON.stringify(x.command.slice(3)) === JSON.stringify(command));
  if (!r) throw new Error(`no recording of ovs-vsctl ${command.join(' ')}: run scripts/record-port-transactions.mjs`);
  expect(r.transact).toHaveLength(1);
  return r.transact[0]!.slice(1) as Operation[];
}

/** An OVSDB map or set with its members sorted (ovs-vsctl and nodenet list them in different orders). */
function sorted(v: unknown): unknown {
  if (Array.isArray(v) && (v[0] === 'map' || v[0] === 'set') && Array.isArray(v[1]))
    return [v[0], [...(v[1] as unknown[])].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))];
  return v;
}
function sortedRow(row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, sorted(v)]));
}
const inserted = (ops: readonly Operation[], table: string) =>
  ops.find((o) => o.op === 'insert' && o.table === table) as Operation & { row: Record<string, unknown>; 'uuid-name': string };
const mapPairs = (v: unknown): [string, string][] => (Array.isArray(v) && v[0] === 'map' ? (v[1] as [string, string][]) : []);
const setMembers = (v: unknown): unknown[] => (Array.isArray(v) && v[0] === 'set' ? (v[1] as unknown[]) : v === undefined ? [] : [v]);

describe("adding an instance port: the session's operations against ovs-vsctl's recorded transaction", () => {
  const theirs = transactionOf(addInstancePortCommands(BRIDGE, PORT, spec, 26));
  const ours = addInstancePortOps(BRIDGE, PORT, spec, 26);

  it('inserts the same Interface row: name, requested port number and every external_id', () => {
    expect(sortedRow(inserted(ours, 'Interface').row)).toEqual(sortedRow(inserted(theirs, 'Interface').row));
  });

  it('inserts a Port of the same name holding that Interface', () => {
    const [port, theirPort] = [inserted(ours, 'Port'), inserted(theirs, 'Port')];
    expect(port.row['name']).toBe(theirPort.row['name']);
    expect(port.row['interfaces']).toEqual(['named-uuid', inserted(ours, 'Interface')['uuid-name']]);
    expect(theirPort.row['interfaces']).toEqual(['named-uuid', inserted(theirs, 'Interface')['uuid-name']]);
  });

  it("adds that Port to the bridge's ports (a mutation where ovs-vsctl rewrites the set)", () => {
    const theirPorts = (theirs.find((o) => o.op === 'update' && o.table === 'Bridge') as { row: Record<string, unknown> }).row['ports'];
    expect(setMembers(theirPorts)).toContainEqual(['named-uuid', inserted(theirs, 'Port')['uuid-name']]);
    const mutate = ours.find((o) => o.op === 'mutate' && o.table === 'Bridge') as { where: unknown; mutations: unknown[][] };
    expect(mutate.where).toEqual([['name', '==', BRIDGE]]);
    expect(mutate.mutations).toContainEqual(['ports', 'insert', ['set', [['named-uuid', inserted(ours, 'Port')['uuid-name']]]]]);
  });

  it('writes the same registry entry on the bridge (the old one deleted first: an insert never replaces a key)', () => {
    const theirEntry = theirs
      .filter((o): o is Extract<Operation, { op: 'mutate' }> => o.op === 'mutate' && o.table === 'Bridge')
      .flatMap((o) => o.mutations)
      .filter((m) => m[0] === 'external_ids' && m[1] === 'insert')
      .flatMap((m) => mapPairs(m[2]));
    expect(theirEntry).toEqual([[REGISTRY_KEY, 'nni-0000001a 198.19.1.26 02:00:c6:13:01:1a veth']]);
    const mutations = (ours.find((o) => o.op === 'mutate' && o.table === 'Bridge') as { mutations: unknown[][] }).mutations;
    expect(mutations).toContainEqual(['external_ids', 'delete', ['set', [REGISTRY_KEY]]]);
    expect(mutations).toContainEqual(['external_ids', 'insert', ['map', theirEntry]]);
  });

  it('fails at once when the bridge is missing (as ovs-vsctl refuses, "no bridge named")', () => {
    expect(ours[0]).toEqual({
      op: 'wait',
      table: 'Bridge',
      where: [['name', '==', BRIDGE]],
      columns: ['name'],
      until: '==',
      rows: [{ name: BRIDGE }],
      timeout: 0,
    });
  });
});

describe("deleting instance ports: the session's operations against ovs-vsctl's recorded transaction", () => {
  const theirs = transactionOf(deletePortCommands(BRIDGE, [PORT]));
  const before = (theirs.find((o) => o.op === 'wait' && o.table === 'Bridge') as { rows: Record<string, unknown>[] }).rows[0]!;
  const after = (theirs.find((o) => o.op === 'update' && o.table === 'Bridge') as { row: Record<string, unknown> }).row;
  const removedPorts = setMembers(before['ports']).filter(
    (u) => !setMembers(after['ports']).some((v) => JSON.stringify(v) === JSON.stringify(u)),
  );
  const removedKeys = mapPairs(before['external_ids'])
    .map(([k]) => k)
    .filter((k) => !mapPairs(after['external_ids']).some(([a]) => a === k));

  it('takes the same Port off the bridge and drops the same registry key', () => {
    expect(removedPorts).toHaveLength(1);
    expect(removedKeys).toEqual([REGISTRY_KEY]);
    const uuid = (removedPorts[0] as [string, string])[1];
    expect(deletePortOps(BRIDGE, [PORT], [uuid])).toEqual([
      { op: 'mutate', table: 'Bridge', where: [], mutations: [['ports', 'delete', ['set', removedPorts]]] },
      { op: 'mutate', table: 'Bridge', where: [['name', '==', BRIDGE]], mutations: [['external_ids', 'delete', ['set', removedKeys]]] },
    ]);
  });

  it('splits into detaching (any bridge, by UUID) and unregistering (the CNI bridge), each nothing when given nothing', () => {
    expect(detachPortOps([])).toEqual([]);
    expect(unregisterPortOps(BRIDGE, [])).toEqual([]);
    expect(deletePortOps(BRIDGE, [PORT], [])).toEqual(unregisterPortOps(BRIDGE, [PORT]));
    expect([...detachPortOps(['0b1c0d2e-0000-4000-8000-000000000001']), ...unregisterPortOps(BRIDGE, [PORT])]).toEqual(
      deletePortOps(BRIDGE, [PORT], ['0b1c0d2e-0000-4000-8000-000000000001']),
    );
  });
});

describe('the port number as OVSDB gives it', () => {
  it('an integer, or none (the empty set) before ovs-vswitchd assigned one', () => {
    expect(ofportOfColumn(26)).toBe(26);
    expect(ofportOfColumn(['set', []])).toBeNull();
    expect(ofportOfColumn(undefined)).toBeNull();
  });
});
