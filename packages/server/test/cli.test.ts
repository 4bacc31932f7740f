import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../src/cli.js';

function run(args: string[]) {
  let out = '';
  let err = '';
  const result = parseCommandLine(['node', 'nodenetd', ...args], { writeOut: (s) => (out += s), writeErr: (s) => (err += s) });
  return { result, out, err };
}

describe('parseCommandLine', () => {
  it('maps every flag to its config key', () => {
    const { result } = run([
      '--config',
      '/etc/nodenet.yaml',
      '--listen',
      'unix:///tmp/x.sock',
      '--backend',
      'iproute2',
      '--state-dir',
      '/s',
      '--node-name',
      'n1',
      '--underlay-address',
      '198.18.0.1',
      '--log-level',
      'debug',
    ]);
    expect(result).toEqual({
      action: 'run',
      commandLine: {
        configFile: '/etc/nodenet.yaml',
        flags: {
          listen: 'unix:///tmp/x.sock',
          backend: 'iproute2',
          stateDir: '/s',
          nodeName: 'n1',
          underlayAddress: '198.18.0.1',
          logLevel: 'debug',
        },
      },
    });
  });

  it('runs on defaults without flags', () => {
    expect(run([]).result).toEqual({ action: 'run', commandLine: { flags: {} } });
  });

  it('--help documents every flag and every config key, exit 0', () => {
    const { result, out } = run(['--help']);
    expect(result).toEqual({ action: 'exit', exitCode: 0 });
    for (const flag of ['--config', '--listen', '--backend', '--state-dir', '--node-name', '--underlay-address', '--log-level', '--help']) {
      expect(out).toContain(flag);
    }
    for (const key of [
      'nodeName:',
      'underlayAddress:',
      'listen:',
      'insecure:',
      'tls:',
      'cert:',
      'key:',
      'ca:',
      'backend:',
      'stateDir:',
      'reservedPorts:',
      'overlay:',
      'mode:',
      'vni:',
      'port:',
      'membership:',
      'type:',
      'peers:',
      'etcd:',
      'endpoints:',
      'prefix:',
      'leaseTtlSeconds:',
      'reconcileIntervalSeconds:',
      'repairOnChange:',
      'ovs:',
      'db:',
      'runDir:',
      'datapathType:',
      'logLevel:',
    ]) {
      expect(out).toContain(key);
    }
  });

  it('an unknown flag or a missing value is a usage error: exit 2, naming it', () => {
    const unknown = run(['--listne', 'x']);
    expect(unknown.result).toEqual({ action: 'exit', exitCode: 2 });
    expect(unknown.err).toContain('--listne');
    const missing = run(['--listen']);
    expect(missing.result).toEqual({ action: 'exit', exitCode: 2 });
    expect(missing.err).toContain('--listen');
    const extra = run(['serve']);
    expect(extra.result).toEqual({ action: 'exit', exitCode: 2 });
  });
});
