/**
 * What the update2 diffs need from the database schema: whether a column is a set (its diff is the
 * elements to toggle), a map (the pairs to add, change or remove) or a single atom (its diff is the new
 * value). RFC 7047 section 3.2: a column type with a `value` is a map; `max` other than 1 or `min` 0 makes
 * a set.
 */
export type ColumnKind = 'atom' | 'set' | 'map';

interface ColumnSchema {
  readonly type: string | { key: unknown; value?: unknown; min?: number; max?: number | 'unlimited' };
}

export class ColumnKinds {
  private readonly kinds = new Map<string, ColumnKind>();

  constructor(schema: unknown) {
    const tables = (schema as { tables?: Record<string, { columns?: Record<string, ColumnSchema> }> }).tables ?? {};
    for (const [table, t] of Object.entries(tables)) {
      for (const [column, c] of Object.entries(t.columns ?? {})) this.kinds.set(`${table}\0${column}`, kindOf(c));
    }
  }

  of(table: string, column: string): ColumnKind {
    return this.kinds.get(`${table}\0${column}`) ?? 'atom';
  }
}

function kindOf(c: ColumnSchema): ColumnKind {
  if (typeof c.type === 'string') return 'atom';
  if (c.type.value !== undefined) return 'map';
  const min = c.type.min ?? 1;
  const max = c.type.max ?? 1;
  return min === 1 && max === 1 ? 'atom' : 'set';
}
