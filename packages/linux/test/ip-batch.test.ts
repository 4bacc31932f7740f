import { describe, expect, it } from 'vitest';
import { InternalError } from '@nodenet/core';
import { commandInNamespace, formatIpBatch } from '../src/index.js';
import { parseIpBatchFailures } from '../src/ip-batch.js';
import { netnsPath, parseNetnsRef } from '@nodenet/core';

const netns = (s: string) => parseNetnsRef(s, 'netns');

describe('formatIpBatch', () => {
  it('writes one line per command, newline-terminated', () => {
    expect(
      formatIpBatch([
        { id: 'a', args: ['link', 'set', 'dev', 'lo', 'up'], step: 'lo up' },
        { id: 'b', args: ['address', 'add', '198.19.1.2/24', 'broadcast', '+', 'dev', 'eth0'], step: 'addr' },
      ]),
    ).toBe('link set dev lo up\naddress add 198.19.1.2/24 broadcast + dev eth0\n');
  });

  it.each([['two words'], ['a#comment'], ['"quoted"'], ["it's"], ['back\\slash'], ['new\nline'], ['']])(
    'refuses %j, which the batch reader would split, strip or join',
    (bad) => {
      expect(() => formatIpBatch([{ id: 'x', args: ['link', 'set', 'dev', bad, 'up'], step: 'set it up' }])).toThrow(InternalError);
    },
  );

  it('refuses an empty line', () => {
    expect(() => formatIpBatch([{ id: 'x', args: [], step: 'nothing' }])).toThrow(/empty ip batch line/);
  });
});

describe('parseIpBatchFailures', () => {
  it('attributes each message to the line named by the marker that follows it', () => {
    expect(parseIpBatchFailures('Cannot find device "nope"\nCommand failed -:2\n')).toEqual([
      { line: 2, message: 'Cannot find device "nope"' },
    ]);
    expect(
      parseIpBatchFailures('Cannot find device "v9"\nCommand failed -:1\nRTNETLINK answers: File exists\nCommand failed -:3\n'),
    ).toEqual([
      { line: 1, message: 'Cannot find device "v9"' },
      { line: 3, message: 'RTNETLINK answers: File exists' },
    ]);
  });

  it('reports an argument error (ip exits without a marker) as a failure of an unknown line', () => {
    expect(parseIpBatchFailures('Error: argument "nodenet0" is wrong: Device does not exist\n\n')).toEqual([
      { line: undefined, message: 'Error: argument "nodenet0" is wrong: Device does not exist' },
    ]);
  });

  it('finds nothing in empty output', () => {
    expect(parseIpBatchFailures('')).toEqual([]);
  });
});

describe('namespaces', () => {
  it('runs ip with -n for a name, through nsenter for a path, as is for the own namespace', () => {
    expect(commandInNamespace(undefined, 'ip', ['-batch', '-'])).toEqual({ file: 'ip', args: ['-batch', '-'] });
    expect(commandInNamespace(netns('node-1'), 'ip', ['-batch', '-'])).toEqual({ file: 'ip', args: ['-n', 'node-1', '-batch', '-'] });
    expect(commandInNamespace(netns('/proc/42/ns/net'), 'ip', ['-batch', '-'])).toEqual({
      file: 'nsenter',
      args: ['--net=/proc/42/ns/net', '--', 'ip', '-batch', '-'],
    });
    expect(commandInNamespace(netns('node-1'), 'sysctl', ['-w', 'a=1'])).toEqual({
      file: 'ip',
      args: ['netns', 'exec', 'node-1', 'sysctl', '-w', 'a=1'],
    });
  });

  it('passes names to iproute2 as /run/netns paths, so a numeric name is never read as a PID', () => {
    expect(netnsPath(netns('1234'))).toBe('/run/netns/1234');
    expect(netnsPath(netns('/proc/1234/ns/net'))).toBe('/proc/1234/ns/net');
  });
});
