/** nodenetctl inspect and peers (the NetworkAdmin service) against a fake connection. */
import { describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { InterfaceKind, Protocol, type InspectResponse } from '@nodenet/api';
import { formatInspect, formatPeers, formatPorts, formatTable } from '../src/format.js';
import { DEFAULT_TIMEOUT_MS } from '../src/parse.js';
import { fakeDaemon, grpcError, run } from './support.js';

const INSPECT: InspectResponse = {
  nodeName: 'node-1',
  underlayAddress: '198.18.0.1',
  backend: 'iproute2',
  overlayMode: 'vxlan',
  cni: { name: 'nodenet0', gateway: '198.19.1.1', subNetwork: '198.19.1.0/24', mtu: 1450, macAddress: '02:6e:c6:13:01:01' },
  interfaces: [
    {
      interfaceName: 'nni-c6130102',
      hostInterfaceName: 'nnh-c6130102',
      kind: InterfaceKind.VETH,
      ipAddress: '198.19.1.2',
      portMappings: [
        { hostPort: 8080, instancePort: 80, protocol: Protocol.TCP },
        { hostPort: 9000, instancePort: 9000, protocol: Protocol.UDP },
        { hostPort: 9000, instancePort: 9000, protocol: Protocol.TCP },
      ],
      netns: 'web1',
      ifname: 'eth0',
      macAddress: '02:6e:c6:13:01:02',
      mtu: 1450,
      state: 'present',
      createdAt: '2026-11-28T13:40:00.000Z',
    },
    {
      interfaceName: 'nni-c6130103',
      hostInterfaceName: 'nni-c6130103',
      kind: InterfaceKind.TAP,
      ipAddress: '198.19.1.3',
      portMappings: [],
      macAddress: '02:6e:c6:13:01:03',
      mtu: 1450,
      state: 'missing',
      createdAt: '2026-11-28T13:41:00.000Z',
    },
  ],
  peers: [
    { peer: { name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' }, programmed: true },
    { peer: { name: 'node-3', underlayAddress: '198.18.0.3', subnet: '198.19.3.0/24' }, programmed: false },
  ],
  lastReconcile: {
    startedAt: '2026-11-28T13:42:00.000Z',
    durationMs: 7,
    repairs: ['recreated nni-c6130103', 'restored the bridge address'],
    errors: ['could not reach etcd'],
  },
};

const INSPECT_TEXT = [
  'node_name         node-1',
  'underlay_address  198.18.0.1',
  'backend           iproute2',
  'overlay_mode      vxlan',
  'cni               nodenet0 gateway 198.19.1.1 subnet 198.19.1.0/24 mtu 1450 mac 02:6e:c6:13:01:01',
  '',
  'interfaces (2)',
  '  HANDLE        HOST          KIND  ADDRESS     PORTS                            NETNS/IFNAME  STATE',
  '  nni-c6130102  nnh-c6130102  veth  198.19.1.2  8080/tcp->80,9000/tcp+udp->9000  web1/eth0     present',
  '  nni-c6130103  nni-c6130103  tap   198.19.1.3  -                                -             missing',
  '',
  'peers (2)',
  '  NAME    UNDERLAY    SUBNET         PROGRAMMED',
  '  node-2  198.18.0.2  198.19.2.0/24  yes',
  '  node-3  198.18.0.3  198.19.3.0/24  no',
  '',
  'last_reconcile',
  '  started_at   2026-11-28T13:42:00.000Z',
  '  duration_ms  7',
  '  repairs      2',
  '    - recreated nni-c6130103',
  '    - restored the bridge address',
  '  errors       1',
  '    - could not reach etcd',
  '',
].join('\n');

describe('inspect', () => {
  it('calls Inspect with the timeout and prints the node, interfaces, peers and last reconcile', async () => {
    const daemon = fakeDaemon({ inspect: () => INSPECT });
    const r = await run(['--timeout', '4321', 'inspect'], daemon);
    expect(r).toEqual({ exitCode: 0, stdout: INSPECT_TEXT, stderr: '' });
    expect(daemon.calls).toEqual([{ method: 'inspect', request: undefined, options: { timeoutMs: 4321 } }]);
    expect(daemon.connections.map((c) => c.closed)).toEqual([true]);
  });

  it('--json prints the proto3 JSON (lowerCamelCase, enum names, defaults left out)', async () => {
    const daemon = fakeDaemon({ inspect: () => INSPECT });
    const r = await run(['inspect', '--json'], daemon);
    expect(r.exitCode).toBe(0);
    const parsed = JSON.parse(r.stdout) as Record<string, unknown> & { interfaces: Array<Record<string, unknown>>; peers: unknown[] };
    expect(parsed).toMatchObject({ nodeName: 'node-1', overlayMode: 'vxlan', cni: { subNetwork: '198.19.1.0/24', mtu: 1450 } });
    expect(parsed.interfaces[0]).toMatchObject({
      interfaceName: 'nni-c6130102',
      portMappings: [{ hostPort: 8080, instancePort: 80, protocol: 'TCP' }, { protocol: 'UDP' }, { protocol: 'TCP' }],
      netns: 'web1',
      state: 'present',
    });
    // VETH is the enum's default (0): proto3 JSON leaves it out; TAP is named.
    expect(parsed.interfaces[0]).not.toHaveProperty('kind');
    expect(parsed.interfaces[1]).toMatchObject({ kind: 'TAP', state: 'missing' });
    expect(parsed.peers).toEqual([
      { peer: { name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' }, programmed: true },
      { peer: { name: 'node-3', underlayAddress: '198.18.0.3', subnet: '198.19.3.0/24' } },
    ]);
    expect(parsed.lastReconcile).toEqual({
      startedAt: '2026-11-28T13:42:00.000Z',
      durationMs: 7,
      repairs: ['recreated nni-c6130103', 'restored the bridge address'],
      errors: ['could not reach etcd'],
    });
  });

  it('a node without a CNI, interfaces, peers or a reconcile yet says so', () => {
    const bare: InspectResponse = {
      nodeName: 'node-9',
      underlayAddress: '198.18.0.9',
      backend: 'ovs',
      overlayMode: 'host-gw',
      interfaces: [],
      peers: [],
    };
    expect(formatInspect(bare, false)).toBe(
      [
        'node_name         node-9',
        'underlay_address  198.18.0.9',
        'backend           ovs',
        'overlay_mode      host-gw',
        'cni               none (nodenetctl cni create makes it)',
        '',
        'interfaces (0)',
        '  none',
        '',
        'peers (0)',
        '  none',
        '',
        'last_reconcile',
        '  none yet',
        '',
      ].join('\n'),
    );
    expect(JSON.parse(formatInspect(bare, true))).toEqual({
      nodeName: 'node-9',
      underlayAddress: '198.18.0.9',
      backend: 'ovs',
      overlayMode: 'host-gw',
    });
  });

  it('an interface left in the node namespace shows `-`; a reconcile without repairs lists none', () => {
    const text = formatInspect(
      {
        ...INSPECT,
        interfaces: [
          {
            ...INSPECT.interfaces[0]!,
            netns: undefined,
            ifname: undefined,
            portMappings: [{ hostPort: 53, instancePort: 0, protocol: Protocol.TCP_AND_UDP }],
          },
        ],
        lastReconcile: { startedAt: 't', durationMs: 0, repairs: [], errors: [] },
      },
      false,
    );
    expect(text).toContain('  nni-c6130102  nnh-c6130102  veth  198.19.1.2  53/tcp+udp->53  -             present\n');
    expect(text).toMatch(/last_reconcile\n {2}started_at {3}t\n {2}duration_ms {2}0\n {2}repairs {6}0\n {2}errors {7}0\n$/);
  });

  it("a failure is the daemon's status on stderr, exit 1", async () => {
    const daemon = fakeDaemon({
      inspect: () => {
        throw grpcError(status.UNIMPLEMENTED, 'The server does not implement the method /network.NetworkAdmin/Inspect');
      },
    });
    expect(await run(['inspect'], daemon)).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: 'nodenetctl: UNIMPLEMENTED: The server does not implement the method /network.NetworkAdmin/Inspect\n',
    });
  });
});

describe('formatPorts and formatTable', () => {
  it('shows HOST/PROTO->INSTANCE, merging a tcp and a udp mapping of the same ports', () => {
    expect(formatPorts([])).toBe('-');
    expect(formatPorts([{ hostPort: 8080, instancePort: 80, protocol: Protocol.TCP }])).toBe('8080/tcp->80');
    expect(
      formatPorts([
        { hostPort: 53, instancePort: 53, protocol: Protocol.UDP },
        { hostPort: 53, instancePort: 53, protocol: Protocol.TCP },
        { hostPort: 8081, instancePort: 80, protocol: Protocol.UDP },
        { hostPort: 8082, instancePort: 0, protocol: Protocol.TCP },
      ]),
    ).toBe('53/tcp+udp->53,8081/udp->80,8082/tcp->8082');
    // A port on one host address shows it (IPv6 in brackets); the same port on another address stays apart.
    expect(
      formatPorts([
        { hostPort: 8080, instancePort: 80, protocol: Protocol.TCP, hostAddress: '127.0.0.1' },
        { hostPort: 8080, instancePort: 80, protocol: Protocol.UDP, hostAddress: '127.0.0.1' },
        { hostPort: 8080, instancePort: 80, protocol: Protocol.TCP, hostAddress: '198.18.0.5' },
        { hostPort: 8080, instancePort: 80, protocol: Protocol.TCP, hostAddress: '2001:db8:18::5' },
      ]),
    ).toBe('127.0.0.1:8080/tcp+udp->80,198.18.0.5:8080/tcp->80,[2001:db8:18::5]:8080/tcp->80');
    // Same host port to different instance ports stay apart (not merged into one protocol list).
    expect(
      formatPorts([
        { hostPort: 7000, instancePort: 70, protocol: Protocol.TCP },
        { hostPort: 7000, instancePort: 71, protocol: Protocol.UDP },
      ]),
    ).toBe('7000/tcp->70,7000/udp->71');
  });

  it('aligns columns without trailing blanks', () => {
    expect(
      formatTable(
        ['A', 'LONGER'],
        [
          ['wide-cell', 'x'],
          ['y', ''],
        ],
      ),
    ).toBe('A          LONGER\nwide-cell  x\ny\n');
    expect(formatTable(['ONLY'], [])).toBe('ONLY\n');
  });
});

describe('peers', () => {
  const LIST = {
    membership: 'static',
    peers: [{ peer: { name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' }, programmed: true }],
  };

  it('`peers` and `peers list` call ListPeers and print a table; --json the proto3 JSON', async () => {
    const daemon = fakeDaemon({ listPeers: () => LIST });
    const expected = 'NAME    UNDERLAY    SUBNET         PROGRAMMED\nnode-2  198.18.0.2  198.19.2.0/24  yes\n';
    expect(await run(['peers'], daemon)).toEqual({ exitCode: 0, stdout: expected, stderr: '' });
    expect(await run(['peers', 'list'], daemon)).toEqual({ exitCode: 0, stdout: expected, stderr: '' });
    const json = await run(['peers', '--json'], daemon);
    expect(JSON.parse(json.stdout)).toEqual(LIST);
    expect(daemon.calls).toEqual(Array(3).fill({ method: 'listPeers', request: undefined, options: { timeoutMs: DEFAULT_TIMEOUT_MS } }));
  });

  it('no peers: a line naming the membership', () => {
    expect(formatPeers({ membership: 'etcd', peers: [] }, false)).toBe('no peers (membership etcd)\n');
    expect(JSON.parse(formatPeers({ membership: 'static', peers: [] }, true))).toEqual({ membership: 'static' });
  });

  it('peers add sends the Peer; prints what it added, or {} with --json', async () => {
    const daemon = fakeDaemon({ addPeer: () => ({}) });
    const args = ['peers', 'add', '--name', 'node-2', '--underlay', '198.18.0.2', '--subnet', '198.19.2.0/24'];
    expect(await run(['--timeout', '900', ...args], daemon)).toEqual({ exitCode: 0, stdout: 'added peer node-2\n', stderr: '' });
    expect(daemon.calls[0]).toEqual({
      method: 'addPeer',
      request: { name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' },
      options: { timeoutMs: 900 },
    });
    expect((await run([...args, '--json'], daemon)).stdout).toBe('{}\n');
  });

  it('peers remove sends the name; prints what it removed', async () => {
    const daemon = fakeDaemon({ removePeer: () => ({}) });
    expect(await run(['peers', 'remove', 'node-2'], daemon)).toEqual({ exitCode: 0, stdout: 'removed peer node-2\n', stderr: '' });
    expect(daemon.calls[0]).toMatchObject({ method: 'removePeer', request: { name: 'node-2' } });
    expect((await run(['--json', 'peers', 'remove', 'node-2'], daemon)).stdout).toBe('{}\n');
  });

  it('the daemon refusing a peer: its status and message, exit 1', async () => {
    const details = 'membership is etcd: peers come from etcd; AddPeer and RemovePeer are for static membership';
    const daemon = fakeDaemon({
      addPeer: () => {
        throw grpcError(status.FAILED_PRECONDITION, details);
      },
    });
    const r = await run(['peers', 'add', '--name', 'node-2', '--underlay', '198.18.0.2', '--subnet', '198.19.2.0/24'], daemon);
    expect(r).toEqual({ exitCode: 1, stdout: '', stderr: `nodenetctl: FAILED_PRECONDITION: ${details}\n` });
  });

  it.each([
    [['peers', 'add', '--name', 'node-2', '--underlay', '198.18.0.2'], /required option '--subnet <cidr>' not specified/],
    [['peers', 'add', '--underlay', '198.18.0.2', '--subnet', '198.19.2.0/24'], /required option '--name <name>' not specified/],
    [['peers', 'remove'], /missing required argument 'name'/],
    [['peers', 'remove', 'a', 'b'], /too many arguments/],
    [['peers', 'bogus'], /^nodenetctl: unknown command 'peers bogus': use peers \[list\], peers add or peers remove\n$/],
    [['inspect', 'extra'], /too many arguments/],
  ])('usage error %j: exit 2, no call', async (args, message) => {
    const daemon = fakeDaemon();
    const r = await run(args, daemon);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
    expect(daemon.connections).toEqual([]);
  });

  it('help lists the new commands and the add options', async () => {
    const help = await run(['--help']);
    for (const word of ['inspect', 'peers', 'nodenetctl peers add --name']) expect(help.stdout).toContain(word);
    const addHelp = await run(['peers', 'add', '--help']);
    expect(addHelp.exitCode).toBe(0);
    for (const word of ['--name', '--underlay', '--subnet']) expect(addHelp.stdout).toContain(word);
  });
});
