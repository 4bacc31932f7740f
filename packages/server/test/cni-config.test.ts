// The CNI plugin's socket in the daemon's config: cni.listen and --cni-listen.
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, type FlagOverrides } from '../src/config.js';
import { parseCommandLine } from '../src/cli.js';

const backends = ['iproute2'];
const parse = (raw: unknown, flags: FlagOverrides = {}) => parseConfig(raw, { backends, flags });

function problemsOf(raw: unknown, flags: FlagOverrides = {}): string[] {
  try {
    parse(raw, flags);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).problems];
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be refused`);
}

describe('cni.listen', () => {
  it('defaults to /run/nodenet/cni.sock, beside the API socket when that moves, and stays there for a TCP API', () => {
    expect(parse({}).cni.listen).toEqual({ path: '/run/nodenet/cni.sock', uri: 'unix:///run/nodenet/cni.sock' });
    expect(parse({ listen: 'unix:///tmp/x/api.sock' }).cni.listen?.path).toBe('/tmp/x/cni.sock');
    expect(parse({ listen: '0.0.0.0:7443', insecure: true }).cni.listen?.path).toBe('/run/nodenet/cni.sock');
  });

  it('takes a unix path, "" turns it off, and the flag overrides the file', () => {
    expect(parse({ cni: { listen: 'unix:///var/run/x.sock' } }).cni.listen?.path).toBe('/var/run/x.sock');
    expect(parse({ cni: { listen: '' } }).cni.listen).toBeNull();
    expect(parse({ cni: { listen: 'unix:///a.sock' } }, { cniListen: 'unix:///b.sock' }).cni.listen?.path).toBe('/b.sock');
    expect(parse({}, { cniListen: '' }).cni.listen).toBeNull();
  });

  it('refuses TCP, a relative path, the API socket itself and unknown keys, naming the key or flag', () => {
    expect(problemsOf({ cni: { listen: '0.0.0.0:9000' } })).toEqual([expect.stringMatching(/^config: cni\.listen: .*unix socket only/)]);
    expect(problemsOf({}, { cniListen: 'unix:relative.sock' })).toEqual([expect.stringMatching(/^--cni-listen: .*absolute path/)]);
    expect(problemsOf({ listen: 'unix:///tmp/a.sock', cni: { listen: 'unix:///tmp/a.sock' } })).toEqual([
      expect.stringContaining("also the API's socket"),
    ]);
    expect(problemsOf({ cni: { socket: '/x' } })).toEqual([
      expect.stringContaining("config: cni: unknown key 'socket': valid keys are listen"),
    ]);
  });

  it('--cni-listen is a flag of nodenetd', () => {
    const r = parseCommandLine(['node', 'nodenetd', '--cni-listen', ''], { writeOut: () => undefined, writeErr: () => undefined });
    expect(r).toEqual({ action: 'run', commandLine: { flags: { cniListen: '' } } });
  });
});
