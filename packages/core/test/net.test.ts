import { describe, expect, it } from 'vitest';
import { parseIpv4Address, Subnet } from '@nodenet/core';

describe('smoke', () => {
  it('parses', () => {
    expect(parseIpv4Address('198.19.1.2', 'ip')).toBe('198.19.1.2');
    expect(Subnet.parse('198.19.1.0/24', 's').broadcast).toBe('198.19.1.255');
  });
});
