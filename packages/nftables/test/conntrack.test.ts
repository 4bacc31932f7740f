import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, type Ipv4Address } from '@nodenet/core';
import { CONNTRACK_FILTERS, conntrackOutcome, conntrackScript } from '../src/conntrack.js';
import { CONNTRACK_HELPER_PATH } from '../src/conntrack-flusher.js';

describe('conntrackOutcome', () => {
  it('success, nothing to delete, a lost race, a real failure', () => {
    expect(conntrackOutcome(0, '')).toBe('done');
    expect(conntrackOutcome(0, 'conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n')).toBe('done');
    expect(conntrackOutcome(1, 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n')).toBe('done');
    expect(conntrackOutcome(1, "conntrack v1.4.7 (conntrack-tools): Operation failed: such conntrack doesn't exist\n")).toBe('retry');
    expect(
      conntrackOutcome(
        1,
        'conntrack v1.4.7 (conntrack-tools): 10 flow entries have been deleted.\nOperation failed: Operation not permitted\n',
      ),
    ).toBe('failed');
    expect(conntrackOutcome(1, 'conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted\n')).toBe('failed');
    expect(conntrackOutcome(2, 'conntrack v1.4.7 (conntrack-tools): Failed to open file /tmp/x for reading\n')).toBe('failed');
  });

  it('covers original source, original destination and reply source', () => {
    expect([...CONNTRACK_FILTERS].sort()).toEqual(['-d', '-r', '-s']);
  });
});

describe('conntrackScript', () => {
  it('one -D line per filter and address, for conntrack -R', () => {
    expect(conntrackScript(['198.19.1.2' as Ipv4Address])).toBe('-D -s 198.19.1.2\n-D -d 198.19.1.2\n-D -r 198.19.1.2\n');
    expect(conntrackScript(['198.19.1.2', '198.19.1.3'] as Ipv4Address[]).split('\n')).toHaveLength(7);
    expect(conntrackScript([])).toBe('');
  });

  it('re-validates the addresses', () => {
    expect(() => conntrackScript(['198.19.1.2\n-F' as Ipv4Address])).toThrow(InvalidArgumentError);
  });
});

describe('the conntrack cleaner', () => {
  it('ships where the code looks for it (beside src/ and dist/)', () => {
    expect(existsSync(CONNTRACK_HELPER_PATH)).toBe(true);
  });
});
