import { describe, expect, it } from 'vitest';
import { CONNTRACK_FILTERS, conntrackOutcome } from '../src/index.js';

describe('conntrackOutcome', () => {
  it('success, nothing to delete, a lost race, a real failure', () => {
    expect(conntrackOutcome(0, 'conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n')).toBe('done');
    expect(conntrackOutcome(1, 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n')).toBe('done');
    expect(conntrackOutcome(1, "conntrack v1.4.7 (conntrack-tools): Operation failed: such conntrack doesn't exist\n")).toBe('retry');
    expect(conntrackOutcome(1, 'conntrack v1.4.7 (conntrack-tools): 10 flow entries have been deleted.\nOperation failed: Operation not permitted\n')).toBe('failed');
    expect(conntrackOutcome(1, 'conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted\n')).toBe('failed');
  });

  it('covers original source, original destination and reply source', () => {
    expect([...CONNTRACK_FILTERS].sort()).toEqual(['-d', '-r', '-s']);
  });
});
