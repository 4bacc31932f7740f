import { describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { InterfaceKind, Protocol } from '@nodenet/api';
import { formatCreateInterface, formatHealth, formatRows, formatRpcError } from '../src/format.js';
import { DEFAULT_TARGET, DEFAULT_TIMEOUT_MS } from '../src/parse.js';
import { fakeDaemon, grpcError, run } from './support.js';

const FULL_RESPONSE = {
  interfaceName: 'nni-7b0161b8',
  hostInterfaceName: 'nnh-7b0161b8',
  macAddress: '02:6e:c6:13:01:02',
  gateway: '198.19.1.1',
  prefixLength: 24,
  mtu: 1450,
};

describe('create: arguments into the CreateInterface request', () => {
  it('ports, mappings with protocols, netns, ifname, TAP and the timeout', async () => {
    const daemon = fakeDaemon({ createInterface: () => FULL_RESPONSE });
    const r = await run(
      [
        '--timeout',
        '1234',
        'create',
        '--ip',
        '198.19.1.2',
        '--port',
        '8080',
        '--port',
        '9090',
        '--map',
        '8081:80/tcp',
        '--map',
        '5353:53/udp',
        '--map',
        '7000',
        '--netns',
        'web1',
        '--ifname',
        'eth1',
        '--tap',
      ],
      daemon,
    );
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(daemon.calls).toEqual([
      {
        method: 'createInterface',
        request: {
          ipAddress: '198.19.1.2',
          ports: [8080, 9090],
          portMappings: [
            { hostPort: 8081, instancePort: 80, protocol: Protocol.TCP },
            { hostPort: 5353, instancePort: 53, protocol: Protocol.UDP },
            { hostPort: 7000, instancePort: 7000, protocol: Protocol.TCP_AND_UDP },
          ],
          netns: 'web1',
          ifname: 'eth1',
          kind: InterfaceKind.TAP,
        },
        options: { timeoutMs: 1234 },
      },
    ]);
  });

  it('leaves the extensions out when not asked for (a seed-shaped request), default timeout', async () => {
    const daemon = fakeDaemon({ createInterface: () => ({ interfaceName: 'nni-00000001' }) });
    const r = await run(['create', '--ip', '198.19.1.3'], daemon);
    expect(r.exitCode).toBe(0);
    expect(daemon.calls[0]).toEqual({
      method: 'createInterface',
      request: { ipAddress: '198.19.1.3', ports: [] },
      options: { timeoutMs: DEFAULT_TIMEOUT_MS },
    });
    expect(r.stdout).toBe('interface_name  nni-00000001\n');
  });

  it('prints the handle and every extension field as a table, or the proto3 JSON with --json (also after the command)', async () => {
    const daemon = fakeDaemon({ createInterface: () => FULL_RESPONSE });
    const human = await run(['create', '--ip', '198.19.1.2'], daemon);
    expect(human.stdout).toBe(
      [
        'interface_name       nni-7b0161b8',
        'host_interface_name  nnh-7b0161b8',
        'mac_address          02:6e:c6:13:01:02',
        'gateway              198.19.1.1',
        'prefix_length        24',
        'mtu                  1450',
        '',
      ].join('\n'),
    );
    const json = await run(['create', '--ip', '198.19.1.2', '--json'], daemon);
    expect(json.exitCode).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(FULL_RESPONSE);
  });

  it.each([
    [
      ['create', '--ip', '198.19.1.2', '--map', '8081:x/tcp'],
      /--map <HOST_PORT.*argument '8081:x\/tcp' is invalid\. instance port 'x' is not a port number/,
    ],
    [['create', '--ip', '198.19.1.2', '--map', '8081:80/sctp'], /protocol 'sctp' is not tcp or udp/],
    [
      ['create', '--ip', '198.19.1.2', '--port', '0'],
      /--port <port>' argument '0' is invalid\. port '0' is not a port number: use 1\.\.65535/,
    ],
    [['create', '--ip', '198.19.1.2', '--port'], /option '--port <port>' argument missing/],
    [['create', '--port', '80'], /required option '--ip <address>' not specified/],
    [['create', '--ip', '198.19.1.2', '--bogus'], /unknown option '--bogus'/],
    [['--timeout', '0', 'health'], /'0' is not a timeout/],
    [['delete'], /missing required argument 'handle'/],
    [['delete', 'a', 'b'], /too many arguments/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['cni', 'create', '--gateway', '198.19.1.1'], /required option '--subnet <cidr>' not specified/],
  ])('usage error %j: exit 2, a message naming it, no call', async (args, message) => {
    const daemon = fakeDaemon();
    const r = await run(args, daemon);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^nodenetctl: /);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
    expect(daemon.connections).toEqual([]);
  });

  it('no command at all is a usage error (help on stderr); --help is not', async () => {
    const bare = await run([]);
    expect(bare.exitCode).toBe(2);
    expect(bare.stderr).toContain('Usage: nodenetctl');
    const help = await run(['--help']);
    expect(help.exitCode).toBe(0);
    for (const word of [
      'cni',
      'create',
      'delete',
      'health',
      '--target',
      '--tls-ca',
      '--tls-cert',
      '--tls-key',
      '--insecure',
      '--json',
      '--timeout',
    ]) {
      expect(help.stdout).toContain(word);
    }
    const createHelp = await run(['create', '--help']);
    expect(createHelp.exitCode).toBe(0);
    for (const word of ['--ip', '--port', '--map', '--netns', '--ifname', '--tap']) expect(createHelp.stdout).toContain(word);
  });
});

describe('cni create and delete', () => {
  it('cni create sends gateway and subnet and prints the name', async () => {
    const daemon = fakeDaemon({ createContainerNetworkInterface: () => ({ interfaceName: 'nodenet0' }) });
    const r = await run(['cni', 'create', '--gateway', '198.19.1.1', '--subnet', '198.19.1.0/24'], daemon);
    expect(r).toEqual({ exitCode: 0, stdout: 'nodenet0\n', stderr: '' });
    expect(daemon.calls[0]?.request).toEqual({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
    const json = await run(['--json', 'cni', 'create', '--gateway', '198.19.1.1', '--subnet', '198.19.1.0/24'], daemon);
    expect(JSON.parse(json.stdout)).toEqual({ interfaceName: 'nodenet0' });
  });

  it('delete sends the handle; prints what it deleted, or {} with --json', async () => {
    const daemon = fakeDaemon({ deleteInterface: () => ({}) });
    expect(await run(['delete', 'nni-7b0161b8'], daemon)).toEqual({ exitCode: 0, stdout: 'deleted nni-7b0161b8\n', stderr: '' });
    expect(daemon.calls[0]?.request).toEqual({ interfaceName: 'nni-7b0161b8' });
    expect((await run(['delete', 'nni-7b0161b8', '--json'], daemon)).stdout).toBe('{}\n');
  });
});

describe('errors of the daemon', () => {
  it('a failed call prints "nodenetctl: <CODE>: <details>" on stderr, exit 1, and closes the connection', async () => {
    const details = 'interface eth0 was not created by nodenet for an instance';
    const daemon = fakeDaemon({
      deleteInterface: () => {
        throw grpcError(status.PERMISSION_DENIED, details);
      },
    });
    const r = await run(['delete', 'eth0'], daemon);
    expect(r).toEqual({ exitCode: 1, stdout: '', stderr: `nodenetctl: PERMISSION_DENIED: ${details}\n` });
    expect(daemon.connections.map((c) => c.closed)).toEqual([true]);
  });

  it('formatRpcError names every status and trims grpc-js connection noise', () => {
    expect(formatRpcError({ code: status.ALREADY_EXISTS, details: 'port 8080/tcp is already published' })).toBe(
      'nodenetctl: ALREADY_EXISTS: port 8080/tcp is already published\n',
    );
    expect(
      formatRpcError({
        code: status.UNAVAILABLE,
        details: 'No connection established. Last error: Error: connect ENOENT /run/nodenet/nodenet.sock. Resolution note: ',
      }),
    ).toBe('nodenetctl: UNAVAILABLE: No connection established; last error: connect ENOENT /run/nodenet/nodenet.sock\n');
    expect(formatRpcError({ code: 42, details: '', message: 'odd' })).toBe('nodenetctl: UNKNOWN_STATUS_42: odd\n');
  });
});

describe('health', () => {
  it('checks "" and network.Network; exit 0 when both are SERVING', async () => {
    const daemon = fakeDaemon();
    const r = await run(['health'], daemon);
    expect(r).toEqual({ exitCode: 0, stdout: '""               SERVING\nnetwork.Network  SERVING\n', stderr: '' });
    expect(daemon.calls.map((c) => c.request).sort()).toEqual(['', 'network.Network']);
  });

  it('exit 1 when one is not SERVING, naming it; --json reports serving: false', async () => {
    const daemon = fakeDaemon();
    daemon.health = (service) => (service === '' ? 'SERVING' : 'NOT_SERVING');
    const r = await run(['health', '--json'], daemon);
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ serving: false, services: { '': 'SERVING', 'network.Network': 'NOT_SERVING' } });
    expect(r.stderr).toBe('nodenetctl: not serving: network.Network is NOT_SERVING\n');
  });

  it('--wait polls until SERVING, waiting for the channel to connect', async () => {
    const daemon = fakeDaemon();
    daemon.health = (_service, attempt) => (attempt < 2 ? 'NOT_SERVING' : 'SERVING');
    const r = await run(['health', '--wait', '--timeout', '20000'], daemon);
    expect(r.exitCode).toBe(0);
    expect(daemon.calls.filter((c) => c.request === 'network.Network')).toHaveLength(3);
    expect(daemon.calls.every((c) => (c.options as { waitForReady: boolean }).waitForReady)).toBe(true);
  });

  it('an unreachable daemon is a gRPC error: exit 1 with its code', async () => {
    const daemon = fakeDaemon();
    daemon.health = () => {
      throw grpcError(status.UNAVAILABLE, 'No connection established');
    };
    const r = await run(['health'], daemon);
    expect(r).toEqual({ exitCode: 1, stdout: '', stderr: 'nodenetctl: UNAVAILABLE: No connection established\n' });
  });

  it('formatHealth aligns the services', () => {
    expect(
      formatHealth(
        [
          { service: '', status: 'SERVING' },
          { service: 'network.Network', status: 'SERVICE_UNKNOWN' },
        ],
        false,
      ),
    ).toBe('""               SERVING\nnetwork.Network  SERVICE_UNKNOWN\n');
    expect(formatRows([])).toBe('');
  });
});

describe('connection options', () => {
  it('the target: --target, else NODENET_TARGET, else the default socket; a bare path means a unix socket', async () => {
    const daemon = fakeDaemon();
    await run(['health'], daemon);
    await run(['health'], daemon, { env: { NODENET_TARGET: 'unix:///tmp/a.sock' } });
    await run(['--target', '/tmp/b.sock', 'health'], daemon, { env: { NODENET_TARGET: 'unix:///tmp/a.sock' } });
    expect(daemon.connections.map((c) => c.target)).toEqual([DEFAULT_TARGET, 'unix:///tmp/a.sock', 'unix:///tmp/b.sock']);
    expect(daemon.connections.map((c) => c.options)).toEqual([{}, {}, {}]);
  });

  it('TLS files are read and passed as PEM; --insecure gives plaintext TCP', async () => {
    const daemon = fakeDaemon();
    const files = { '/ca.pem': 'CA', '/me.pem': 'CERT', '/me.key': 'KEY' };
    const tls = await run(
      [
        '--target',
        '10.0.0.5:7443',
        '--tls-ca',
        '/ca.pem',
        '--tls-cert',
        '/me.pem',
        '--tls-key',
        '/me.key',
        '--tls-server-name',
        'node-1',
        'health',
      ],
      daemon,
      { files },
    );
    expect(tls.exitCode).toBe(0);
    expect(daemon.connections[0]?.options).toEqual({
      tls: { ca: Buffer.from('CA'), cert: Buffer.from('CERT'), key: Buffer.from('KEY'), serverName: 'node-1' },
    });
    await run(['--target', '10.0.0.5:7443', '--insecure', 'health'], daemon);
    expect(daemon.connections[1]?.options).toEqual({ insecure: true });
  });

  it.each([
    [['--target', '10.0.0.5:7443', 'health'], /target 10\.0\.0\.5:7443 is TCP: give --tls-ca FILE .* or --insecure/],
    [['--tls-cert', '/me.pem', 'health'], /--tls-cert and --tls-key go together/],
    [['--insecure', '--tls-ca', '/ca.pem', 'health'], /--insecure means plaintext/],
    [['--tls-ca', '/missing.pem', 'health'], /cannot read the --tls-ca file '\/missing\.pem': ENOENT/],
  ])('options that do not go together %j: exit 2, nothing called', async (args, message) => {
    const daemon = fakeDaemon();
    const r = await run(args, daemon, { files: { '/ca.pem': 'CA' } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(daemon.connections).toEqual([]);
  });
});

describe('formatCreateInterface', () => {
  it('omits absent extension fields in both forms', () => {
    const response = { interfaceName: 'nni-1', mtu: 1500 };
    expect(formatCreateInterface(response, false)).toBe('interface_name  nni-1\nmtu             1500\n');
    expect(JSON.parse(formatCreateInterface(response, true))).toEqual({ interfaceName: 'nni-1', mtu: 1500 });
  });
});
