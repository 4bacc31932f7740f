import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { JsonObjectSplitter, JsonStreamError } from '../src/index.js';

interface RecordedSession {
  readonly command: string[];
  readonly encoding: 'latin1';
  readonly sent: string[];
  readonly received: string[];
}
const sessions = JSON.parse(readFileSync(new URL('./fixtures/ovsdb-recorded.json', import.meta.url), 'utf8')) as RecordedSession[];

function splitAll(chunks: readonly Buffer[]): unknown[] {
  const s = new JsonObjectSplitter();
  return chunks.flatMap((c) => s.push(c));
}

describe('JsonObjectSplitter', () => {
  it('splits concatenated objects, whatever the chunk boundaries', () => {
    const messages = [
      { id: 1, result: { a: '}{', b: ['[', ']'] }, error: null },
      { method: 'echo', params: ['x\\"}'], id: 'echo' },
      [1, { z: '\u00e9\u4e2d' }],
    ];
    const stream = Buffer.from(messages.map((m) => JSON.stringify(m)).join(' \n'));
    for (let size = 1; size <= stream.length; size++) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < stream.length; i += size) chunks.push(stream.subarray(i, i + size));
      expect(splitAll(chunks)).toEqual(messages);
    }
  });

  it('cuts at every position of each recorded ovsdb-server reply stream (escaped JSON inside strings, UTF-8)', () => {
    for (const session of sessions) {
      const chunks = session.received.map((c) => Buffer.from(c, 'latin1'));
      const stream = Buffer.concat(chunks);
      // As recorded (the server's own cuts): the replies to get_schema, monitor_cond, monitor_cond_since and
      // transact, and the update3 notifications the transaction caused.
      const asRecorded = splitAll(chunks) as Array<{ id: number | null; method?: string; error?: unknown }>;
      expect(asRecorded.filter((m) => m.method === undefined).map((m) => m.id)).toEqual([1, 2, 3, 4]);
      expect(asRecorded.filter((m) => m.method === 'update3').length).toBeGreaterThanOrEqual(1);
      expect(asRecorded.every((m) => m.method !== undefined || m.error === null)).toBe(true);
      for (let cut = 1; cut < stream.length; cut += 97) {
        expect(splitAll([stream.subarray(0, cut), stream.subarray(cut)])).toEqual(asRecorded);
      }
    }
  });

  it("parses the recorded client side too (ovs-vsctl's requests back to back)", () => {
    const session = sessions[0]!;
    const sent = splitAll([Buffer.from(session.sent.join(''), 'latin1')]) as Array<{ method: string }>;
    expect(sent.map((m) => m.method)).toEqual(['get_schema', 'monitor_cond', 'monitor_cond_since', 'transact']);
  });

  it('refuses bytes that do not start a JSON object or array', () => {
    expect(() => new JsonObjectSplitter().push(Buffer.from('{"a":1} x'))).toThrow(JsonStreamError);
  });

  it('refuses a message larger than its limit', () => {
    const s = new JsonObjectSplitter(10);
    expect(() => s.push(Buffer.from('{"aaaaaaaaaaaaaaaa":'))).toThrow(/exceeds 10 bytes/);
  });
});
