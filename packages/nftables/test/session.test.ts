import { describe, expect, it } from 'vitest';
import { InternalError } from '@nodenet/core';
import { answerFailed, findAnswer, nftSessionFraming, pointedCommand, sessionLine } from '../src/session.js';

/** What nft 1.0.6 prints for the marker line `nnmark<seq>`. */
const markerAnswer = (seq: number) => `Error: syntax error, unexpected newline, expecting string\nnnmark${seq}\n       ^\n`;

/** Feeds `stderr` to findAnswer in chunks of `size` characters, as CommandSession does; returns the answers in order. */
function answers(stderr: string, size: number, seqs: number[]): string[] {
  let buffer = '';
  const out: string[] = [];
  const queue = [...seqs];
  for (let i = 0; i < stderr.length; i += size) {
    buffer += stderr.slice(i, i + size);
    for (;;) {
      const seq = queue[0];
      if (seq === undefined) break;
      const found = findAnswer(buffer, seq);
      if (!found) break;
      buffer = buffer.slice(found.consumed);
      queue.shift();
      out.push(found.output);
    }
  }
  expect(queue).toEqual([]);
  return out;
}

describe('nft session framing', () => {
  it('writes a bare marker line per request', () => {
    expect(nftSessionFraming.marker(5)).toBe('nnmark5\n');
  });

  it('a request that succeeded: empty output, consumed through the echoed marker (its caret line is left)', () => {
    const stderr = markerAnswer(1);
    const found = findAnswer(stderr, 1);
    expect(found).toEqual({ output: '', consumed: stderr.indexOf('nnmark1\n') + 'nnmark1\n'.length });
    expect(stderr.slice(found!.consumed)).toBe('       ^\n');
  });

  it('waits for the echoed marker and its newline, and for the marker of this request', () => {
    expect(findAnswer('', 1)).toBeNull();
    expect(findAnswer('Error: syntax error, unexpected newline, expecting string\n', 1)).toBeNull();
    expect(findAnswer('Error: syntax error, unexpected newline, expecting string\nnnmark1', 1)).toBeNull();
    // nnmark12 is not nnmark1; nor is a marker inside a line.
    expect(findAnswer('Error: syntax error, unexpected newline, expecting string\nnnmark12\n', 1)).toBeNull();
    expect(findAnswer('add element x nnmark1\n', 1)).toBeNull();
    expect(findAnswer(markerAnswer(1), 2)).toBeNull();
  });

  it('every chunking of several answers gives the same answers, with the caret lines of markers arriving late', () => {
    const failed =
      'Error: Could not process rule: File exists\n' +
      'add element ip nodenet published_ports { tcp . 81 : 198.19.1.2 . 80 }; add element ip nodenet published_ports { tcp . 80 : 198.19.1.3 . 80 }\n' +
      '                                                                                                                ^^^^^^^^\n';
    const stderr = markerAnswer(1) + failed + markerAnswer(2) + markerAnswer(3);
    const expected = [
      '',
      'Error: Could not process rule: File exists\nadd element ip nodenet published_ports { tcp . 80 : 198.19.1.3 . 80 }',
      '',
    ];
    for (const size of [1, 2, 3, 7, 16, 64, stderr.length]) expect(answers(stderr, size, [1, 2, 3])).toEqual(expected);
  });

  it('a caret line left over from the previous marker is no part of the next answer', () => {
    expect(findAnswer('       ^\n' + markerAnswer(4), 4)!.output).toBe('');
    expect(
      findAnswer(
        '       ^\nError: No such file or directory\nadd element ip nodenet nosuch { tcp . 81 : 198.19.1.2 . 80 }\n                       ^^^^^^\n' +
          markerAnswer(4),
        4,
      )!.output,
    ).toBe('Error: No such file or directory\nadd element ip nodenet nosuch { tcp . 81 : 198.19.1.2 . 80 }');
  });

  it('keeps every error of a request (one per failing command), each with the command it points at', () => {
    const echoed = 'delete element ip nodenet published_ports { tcp . 99 }; delete element ip nodenet published_ports { tcp . 98 }';
    const stderr =
      `Error: Could not process rule: No such file or directory\n${echoed}\n${' '.repeat(44)}^^^^^^^^\n` +
      `Error: Could not process rule: No such file or directory\n${echoed}\n${' '.repeat(100)}^^^^^^^^\n` +
      markerAnswer(9);
    const { output } = findAnswer(stderr, 9)!;
    expect(output).toBe(
      'Error: Could not process rule: No such file or directory\ndelete element ip nodenet published_ports { tcp . 99 }\n' +
        'Error: Could not process rule: No such file or directory\ndelete element ip nodenet published_ports { tcp . 98 }',
    );
    expect(answerFailed(output)).toBe(true);
  });

  it('an error without an echoed line, and blank lines, are kept as they are and dropped', () => {
    expect(findAnswer('\nError: Could not process rule: Operation not permitted\n\n' + markerAnswer(2), 2)!.output).toBe(
      'Error: Could not process rule: Operation not permitted',
    );
  });

  it("without the marker's own complaint (not seen with nft 1.0.6), keeps all that came before the echo", () => {
    expect(findAnswer('something\nnnmark3\n', 3)!.output).toBe('something');
  });
});

describe('pointedCommand', () => {
  it('the command of the joined line the caret points into', () => {
    const line = 'add element ip t a { 1 }; add element ip t b { 2 }; add element ip t c { 3 }';
    expect(pointedCommand(line, `${' '.repeat(line.indexOf('b {'))}^`)).toBe('add element ip t b { 2 }');
    expect(pointedCommand(line, '^^^')).toBe('add element ip t a { 1 }');
    expect(pointedCommand(line, `${' '.repeat(line.indexOf('c {'))}~~~~^^`)).toBe('add element ip t c { 3 }');
    // A caret past the line (not seen): the line, shortened.
    expect(pointedCommand('short', '          ^')).toBe('short');
  });

  it('a long command is shortened and the marked part quoted', () => {
    const elements = Array.from({ length: 100 }, (_, i) => `tcp . ${1000 + i} : 198.19.1.2 . 80`).join(', ');
    const line = `add element ip nodenet published_ports { ${elements} }`;
    const at = line.indexOf('tcp . 1050');
    const shown = pointedCommand(line, `${' '.repeat(at)}^^^^^^^^^^`);
    expect(shown).toMatch(/^add element ip nodenet published_ports \{ tcp \. 1000 .*\.\.\. \(\d+ characters\) \(at "tcp \. 1050"\)$/);
    expect(shown.length).toBeLessThan(320);
  });
});

describe('answerFailed', () => {
  it('an answer with an Error: line is a failed transaction; nothing or a warning is not', () => {
    expect(answerFailed('')).toBe(false);
    expect(answerFailed('Warning: something')).toBe(false);
    expect(answerFailed('Error: Could not process rule: File exists\nadd element x')).toBe(true);
    expect(answerFailed('Warning: x\nError: y')).toBe(true);
  });
});

describe('sessionLine', () => {
  it('joins the commands of a script into one line (one transaction)', () => {
    expect(sessionLine('add element ip t s { 1 }\ndelete element ip t s { 1 }\n', 'step')).toBe(
      'add element ip t s { 1 }; delete element ip t s { 1 }',
    );
    expect(sessionLine('add element ip t s { 1 }\n', 'step')).toBe('add element ip t s { 1 }');
  });

  it('null for a script without a command', () => {
    expect(sessionLine('', 'step')).toBeNull();
    expect(sessionLine('\n\n', 'step')).toBeNull();
  });

  it('refuses what would end, continue or split the line, or be read as a marker', () => {
    for (const bad of [
      'add element ip t s { 1 } # comment\n',
      'add element ip t s { 1 } \\\n',
      'add element ip t s { "a\rb" }\n',
      'add element ip t s { "a\tb" }\n',
      'add element ip t s { "a\u0000b" }\n',
      'quit\n',
      'nnmark3\n',
    ]) {
      expect(() => sessionLine(bad, 'publish ports'), JSON.stringify(bad)).toThrow(InternalError);
    }
    expect(() => sessionLine('add element ip t s { 1 } # x\n', 'publish ports')).toThrow(/publish ports/);
  });
});
