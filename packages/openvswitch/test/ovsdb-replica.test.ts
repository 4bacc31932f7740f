/**
 * The monitor replica applying update2 notifications as ovsdb-server sends them (initial, insert, modify
 * diffs of atoms, sets and maps, delete), with column kinds from a schema excerpt of vswitch.ovsschema.
 */
import { describe, expect, it } from 'vitest';
import { ColumnKinds, MonitorReplica, mapOf, namedUuid, set, map, setOf, uuid, uuidsOf } from '../src/index.js';

const schema = {
  tables: {
    Bridge: {
      columns: {
        name: { type: 'string' },
        ports: { type: { key: { type: 'uuid', refTable: 'Port' }, min: 0, max: 'unlimited' } },
        fail_mode: { type: { key: { type: 'string', enum: ['set', ['standalone', 'secure']] }, min: 0, max: 1 } },
        external_ids: { type: { key: 'string', value: 'string', min: 0, max: 'unlimited' } },
      },
    },
  },
};

function replica() {
  const changes: Array<[string, string, boolean, boolean]> = [];
  const r = new MonitorReplica(
    'm',
    { Bridge: { columns: ['name', 'ports', 'fail_mode', 'external_ids'] } },
    new ColumnKinds(schema),
    async () => undefined,
  );
  r.on('change', (table, id, row, old) => changes.push([table, id, row !== undefined, old !== undefined]));
  return { r, changes };
}

const P1 = '11111111-1111-1111-1111-111111111111';
const P2 = '22222222-2222-2222-2222-222222222222';

describe('MonitorReplica', () => {
  it('applies initial rows, then modify diffs of a set, an optional column and a map, then a delete', () => {
    const { r, changes } = replica();
    r.reset({
      Bridge: {
        b1: {
          initial: {
            name: 'br0',
            ports: ['uuid', P1],
            fail_mode: ['set', []],
            external_ids: [
              'map',
              [
                ['a', '1'],
                ['b', '2'],
              ],
            ],
          },
        },
      },
    });
    expect(r.find('Bridge', 'name', 'br0')?.[0]).toBe('b1');
    r.apply({
      Bridge: {
        b1: {
          modify: {
            ports: ['uuid', P2],
            fail_mode: 'secure',
            external_ids: [
              'map',
              [
                ['a', '1'],
                ['b', '3'],
                ['c', '4'],
              ],
            ],
          },
        },
      },
    });
    const row = r.rows('Bridge').get('b1')!;
    expect(uuidsOf(row['ports']).sort()).toEqual([P1, P2]);
    expect(setOf(row['fail_mode'])).toEqual(['secure']);
    expect(mapOf(row['external_ids'])).toEqual({ b: '3', c: '4' });
    r.apply({ Bridge: { b1: { modify: { ports: ['set', [['uuid', P1]]], fail_mode: ['set', ['secure', 'standalone']] } } } });
    expect(uuidsOf(r.rows('Bridge').get('b1')!['ports'])).toEqual([P2]);
    expect(setOf(r.rows('Bridge').get('b1')!['fail_mode'])).toEqual(['standalone']);
    r.apply({ Bridge: { b1: { delete: null } } });
    expect(r.rows('Bridge').size).toBe(0);
    expect(changes).toEqual([
      ['Bridge', 'b1', true, true],
      ['Bridge', 'b1', true, true],
      ['Bridge', 'b1', false, true],
    ]);
  });

  it('waitFor resolves on the change that satisfies it and times out naming what it waited for', async () => {
    const { r } = replica();
    r.reset({});
    const seen = r.waitFor(() => r.find('Bridge', 'name', 'br1'), 1000, 'bridge br1');
    r.apply({ Bridge: { b2: { insert: { name: 'br1' } } } });
    expect((await seen)[0]).toBe('b2');
    await expect(r.waitFor(() => r.find('Bridge', 'name', 'nope'), 20, 'bridge nope')).rejects.toThrow(
      /bridge nope: not seen within 20 ms/,
    );
  });
});

describe('OVSDB value builders', () => {
  it('builds the typed JSON forms and refuses malformed names', () => {
    expect(uuid(P1)).toEqual(['uuid', P1]);
    expect(namedUuid('port_1')).toEqual(['named-uuid', 'port_1']);
    expect(set([namedUuid('a'), 'x'])).toEqual(['set', [['named-uuid', 'a'], 'x']]);
    expect(map({ k: 'v' })).toEqual(['map', [['k', 'v']]]);
    expect(() => uuid('nope')).toThrow(TypeError);
    expect(() => namedUuid('1bad')).toThrow(/uuid-name/);
  });
});
