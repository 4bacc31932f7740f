/** The pure parts of the packaging: copyright (DEP-5), control file, changelog, launchers. */
import { describe, expect, it } from 'vitest';
import { changelog, control, copyrightFile, DEPENDS, launcher, licenseIds } from '../src/index.js';

describe('copyright', () => {
  it('licenseIds splits SPDX expressions', () => {
    expect(licenseIds('(Apache-2.0 AND BSD-3-Clause)')).toEqual(['Apache-2.0', 'BSD-3-Clause']);
    expect(licenseIds('MIT')).toEqual(['MIT']);
    expect(licenseIds('MIT OR Apache-2.0')).toEqual(['MIT', 'Apache-2.0']);
  });

  it('lists every bundled package and carries the text of each license used, once', () => {
    const text = copyrightFile([
      { name: 'yaml', version: '2.9.1', license: 'ISC' },
      { name: '@bufbuild/protobuf', version: '2.17.0', license: '(Apache-2.0 AND BSD-3-Clause)' },
    ]);
    expect(text.startsWith('Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n')).toBe(true);
    expect(text).toContain('\nFiles: *\nCopyright: 2026 the nodenet authors\nLicense: Apache-2.0\n');
    expect(text).toContain('License: Apache-2.0 and BSD-3-Clause and ISC\n');
    expect(text).toContain(' yaml 2.9.1 ISC\n');
    for (const id of ['Apache-2.0', 'BSD-3-Clause', 'ISC']) expect(text.split(`\nLicense: ${id}\n `)).toHaveLength(2);
    expect(text).not.toContain('License: MIT\n');
    // Paragraphs are separated by one empty line; continuation lines start with a space.
    for (const paragraph of text.trim().split('\n\n')) {
      for (const line of paragraph.split('\n').slice(1)) expect(line, line).toMatch(/^( |[A-Z][A-Za-z-]*: )/);
    }
  });

  it('refuses a license it has no text for', () => {
    expect(() => copyrightFile([{ name: 'x', version: '1.0.0', license: 'GPL-3.0-only' }])).toThrow(/GPL-3.0-only/);
  });
});

describe('control and changelog', () => {
  it('control: the fields dpkg needs, Depends as the README lists them, a wrapped description', () => {
    const text = control('0.2.0', 'all', 4518);
    expect(text).toContain('Package: nodenet\nVersion: 0.2.0\nArchitecture: all\n');
    expect(text).toContain(`Depends: ${DEPENDS}\n`);
    expect(text).toContain('Installed-Size: 4518\n');
    expect(text.endsWith('\n')).toBe(true);
    for (const line of text.split('\n').filter((l) => l.startsWith(' '))) expect(line.length, line).toBeLessThanOrEqual(80);
  });

  it('changelog: the Debian format, one entry', () => {
    const text = changelog('0.2.0', new Date(Date.UTC(2026, 11, 6, 20, 0, 0)));
    expect(text.split('\n')[0]).toBe('nodenet (0.2.0) unstable; urgency=medium');
    expect(text).toMatch(/\n -- .+ <.+@.+> {2}Sun, 06 Dec 2026 20:00:00 \+0000\n$/);
  });
});

describe('launcher', () => {
  it('runs the bundle beside it with the node flags, passing the arguments on', () => {
    const text = launcher('nodenetd', ['--max-old-space-size=128']);
    expect(text.startsWith('#!/bin/sh\n')).toBe(true);
    expect(text).toContain('exec node --max-old-space-size=128 "$here/../lib/nodenet/nodenetd.mjs" "$@"\n');
  });
});
