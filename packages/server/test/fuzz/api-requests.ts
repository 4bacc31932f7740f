/**
 * fast-check arbitraries for the API fuzz test: a request for every RPC of Network and NetworkAdmin, built
 * from values near the edges of what each field accepts (addresses in and out of the node's subnet, ports
 * at and past their limits, unknown enum numbers, names that are nearly valid, random strings), encoded
 * with the API's own encoders, and then, for part of the cases, mutated as bytes (bit flips, cuts,
 * insertions, duplications, random bytes) so the daemon also sees wire data no encoder makes.
 */
import fc from 'fast-check';
import {
  CreateContainerNetworkInterfaceRequest,
  CreateInterfaceRequest,
  DeleteInterfaceRequest,
  Empty,
  InspectRequest,
  Peer,
  RemovePeerRequest,
} from '@nodenet/api';

/** What the arbitraries need to know about the node under test. */
export interface FuzzWorld {
  /** The CNI's gateway and subnet (created before the fuzzing). */
  readonly gateway: string;
  readonly subnet: string;
  /** Instance namespaces the test owns (the only existing namespaces a request may name). */
  readonly namespaces: readonly string[];
  /** Handles of instances alive now (DeleteInterface picks among them at run time). */
  readonly liveHandles: () => readonly string[];
}

/** One generated case: the method, the request's bytes (made when the case runs), and how they were made. */
export interface FuzzCase {
  readonly method: string;
  bytes(): Uint8Array;
  readonly description: string;
}

const int32 = fc.integer({ min: -2147483648, max: 2147483647 });
const port = fc.oneof(
  fc.constantFrom(0, 1, 22, 80, 443, 4789, 8080, 65535, 65536, -1, 2147483647, -2147483648),
  fc.integer({ min: 1, max: 65535 }),
  int32,
);
const enumNumber = (valid: readonly number[]) => fc.oneof(fc.constantFrom(...valid), fc.integer({ min: -3, max: 100 }));
const text = fc.string({ maxLength: 40, unit: 'binary' });

function address(world: FuzzWorld) {
  const base = world.gateway.split('.').slice(0, 3).join('.');
  return fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 2, max: 40 }).map((n) => `${base}.${n}`) },
    fc.constantFrom(
      world.gateway,
      `${base}.0`,
      `${base}.255`,
      '198.19.200.5',
      '10.0.0.1',
      '0.0.0.0',
      '255.255.255.255',
      '',
      `${base}.02`,
      ` ${base}.3`,
      `${base}.3/24`,
      'fd19::1',
      `::ffff:${base}.4`,
      '198.18.0.1',
      '127.0.0.1',
    ),
    fc.ipV4(),
    text,
  );
}

function netns(world: FuzzWorld) {
  return fc.option(
    fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...world.namespaces) },
      fc.constantFrom(
        'nnt-no-such-namespace',
        '/proc/self/ns/net',
        '/proc/999999999/ns/net',
        '',
        '.',
        '..',
        '../etc',
        '/etc/passwd',
        '/run/netns/',
        'a/b',
        'x'.repeat(300),
        '/dev/null',
        '/proc/self/ns/mnt',
      ),
      text,
    ),
    { nil: undefined },
  );
}

const ifname = fc.option(
  fc.oneof(
    fc.constantFrom(
      'eth0',
      'eth1',
      'lo',
      'nodenet0',
      '',
      'a'.repeat(15),
      'a'.repeat(16),
      'bad name',
      'eth0:1',
      '..',
      'nni-00000000',
      'ul0',
    ),
    text,
  ),
  { nil: undefined },
);

const portMapping = fc.record({ hostPort: port, instancePort: port, protocol: enumNumber([0, 1, 2]) });

/**
 * Requests that mostly pass validation reach the code behind it: a request whose fields are all drawn from
 * valid values, one with a single field drawn from the wild ones, or one wild in every field.
 */
function nearValid<T extends Record<string, unknown>>(
  valid: { [K in keyof T]: fc.Arbitrary<T[K]> },
  wild: { [K in keyof T]: fc.Arbitrary<T[K]> },
): fc.Arbitrary<T> {
  const keys = Object.keys(valid) as (keyof T)[];
  return fc.oneof(
    { weight: 3, arbitrary: fc.record(valid) as fc.Arbitrary<T> },
    {
      weight: 4,
      arbitrary: fc.constantFrom(...keys).chain((key) => fc.record({ ...valid, [key]: wild[key] }) as fc.Arbitrary<T>),
    },
    { weight: 2, arbitrary: fc.record(wild) as fc.Arbitrary<T> },
  );
}

function createInterface(world: FuzzWorld) {
  const base = world.gateway.split('.').slice(0, 3).join('.');
  const validPort = fc.integer({ min: 8000, max: 8040 });
  return nearValid(
    {
      ipAddress: fc.integer({ min: 2, max: 40 }).map((n) => `${base}.${n}`),
      ports: fc.array(validPort, { maxLength: 2 }),
      netns: fc.option(fc.constantFrom(...world.namespaces), { nil: undefined }),
      ifname: fc.option(fc.constantFrom('eth0', 'eth1', 'net0'), { nil: undefined }),
      kind: fc.option(fc.constant(0), { nil: undefined }),
      portMappings: fc.array(
        fc.record({ hostPort: validPort, instancePort: fc.integer({ min: 0, max: 65535 }), protocol: fc.constantFrom(0, 1, 2) }),
        { maxLength: 2 },
      ),
    },
    {
      ipAddress: address(world),
      ports: fc.array(port, { maxLength: 6 }),
      netns: netns(world),
      ifname,
      kind: fc.option(enumNumber([0, 1]), { nil: undefined }),
      portMappings: fc.array(portMapping, { maxLength: 4 }),
    },
  ).map((r) => ({ request: r, encode: () => CreateInterfaceRequest.encode(CreateInterfaceRequest.fromPartial(r as never)).finish() }));
}

function deleteInterface(world: FuzzWorld) {
  // A live handle is chosen when the case runs (fast-check generates before the node changes): `pick`.
  return fc
    .oneof(
      { weight: 2, arbitrary: fc.nat().map((pick) => ({ pick })) },
      fc
        .constantFrom('lo', 'eth0', 'nodenet0', 'nni-00000000', 'nnh-00000000', '', 'nni-', 'NNI-00000000', 'a'.repeat(16), '../x')
        .map((interfaceName) => ({ interfaceName })),
      text.map((interfaceName) => ({ interfaceName })),
    )
    .map((r) => ({
      request: r,
      encode: () => {
        const live = world.liveHandles();
        const interfaceName = 'pick' in r ? (live[r.pick % Math.max(1, live.length)] ?? 'nni-00000001') : r.interfaceName;
        return DeleteInterfaceRequest.encode({ interfaceName }).finish();
      },
    }));
}

function createCni(world: FuzzWorld) {
  return fc
    .record({
      ipAddress: fc.oneof(fc.constant(world.gateway), address(world)),
      subNetwork: fc.oneof(
        fc.constantFrom(world.subnet, '198.19.2.0/24', '198.19.1.0/25', '0.0.0.0/0', '198.19.1.0/33', '198.19.1.1/24', '198.18.0.0/24', ''),
        text,
      ),
    })
    .map((r) => ({ request: r, encode: () => CreateContainerNetworkInterfaceRequest.encode(r).finish() }));
}

const peerName = fc.oneof(fc.constantFrom('node-2', 'node-3', 'node-1', '', 'bad name', 'x'.repeat(300), '-lead'), text);

function addPeer() {
  return nearValid(
    {
      name: fc.constantFrom('node-2', 'node-3', 'node-4'),
      underlayAddress: fc.constantFrom('198.18.0.2', '198.18.0.3', '198.18.0.4'),
      subnet: fc.constantFrom('198.19.2.0/24', '198.19.3.0/24', '198.19.4.0/24'),
    },
    {
      name: peerName,
      underlayAddress: fc.oneof(fc.constantFrom('198.18.0.2', '198.18.0.3', '198.18.0.1', '198.18.0.100', '', '198.18.0.256'), text),
      subnet: fc.oneof(
        fc.constantFrom(
          '198.19.2.0/24',
          '198.19.3.0/24',
          '198.19.1.0/24',
          '198.19.0.0/16',
          '0.0.0.0/0',
          '198.18.0.0/24',
          '198.19.2.1/24',
          '',
        ),
        text,
      ),
    },
  ).map((r) => ({ request: r, encode: () => Peer.encode(r).finish() }));
}

const removePeer = peerName.map((name) => ({ request: { name }, encode: () => RemovePeerRequest.encode({ name }).finish() }));
const inspect = fc.constant({ request: {}, encode: () => InspectRequest.encode({}).finish() });
const listPeers = fc.constant({ request: {}, encode: () => Empty.encode({}).finish() });

/** Byte-level mutations of an encoded request. */
const mutation = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ kind: 'none' as const }) },
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('twice' as const) }),
  fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

export function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const b = Buffer.from(bytes);
  const at = 'at' in m ? m.at % (b.length + 1) : 0;
  switch (m.kind) {
    case 'none':
      return b;
    case 'flip':
      if (b.length === 0) return b;
      b[at % b.length]! ^= 1 << m.bit;
      return b;
    case 'cut':
      return b.subarray(0, at);
    case 'delete':
      return Buffer.concat([b.subarray(0, at), b.subarray(at + m.length)]);
    case 'insert':
      return Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
    case 'append':
      return Buffer.concat([b, Buffer.from(m.bytes)]);
    case 'twice':
      return Buffer.concat([b, b]);
    case 'random':
      return Buffer.from(m.bytes);
  }
}

/** Every RPC of both services, each with its request arbitrary. */
export function apiCases(world: FuzzWorld): fc.Arbitrary<FuzzCase> {
  const byMethod: [string, fc.Arbitrary<{ request: unknown; encode: () => Uint8Array }>, number][] = [
    ['Network/CreateInterface', createInterface(world), 6],
    ['Network/DeleteInterface', deleteInterface(world), 3],
    ['Network/CreateContainerNetworkInterface', createCni(world), 1],
    ['NetworkAdmin/Inspect', inspect, 1],
    ['NetworkAdmin/AddPeer', addPeer(), 2],
    ['NetworkAdmin/RemovePeer', removePeer, 1],
    ['NetworkAdmin/ListPeers', listPeers, 1],
  ];
  return fc.oneof(
    ...byMethod.map(([method, arbitrary, weight]) => ({
      weight,
      arbitrary: fc.tuple(arbitrary, mutation).map(([{ request, encode }, m]): FuzzCase => ({
        method,
        bytes: () => mutate(encode(), m),
        description: `${method} ${JSON.stringify(request)}${m.kind === 'none' ? '' : ` mutated ${JSON.stringify(m)}`}`,
      })),
    })),
  );
}

/** One valid request per RPC (run first, so every RPC is covered whatever the seed). */
export function oneOfEach(world: FuzzWorld): FuzzCase[] {
  const base = world.gateway.split('.').slice(0, 3).join('.');
  const cases: [string, unknown, () => Uint8Array][] = [
    [
      'Network/CreateInterface',
      { ipAddress: `${base}.50`, ports: [8050] },
      () => CreateInterfaceRequest.encode(CreateInterfaceRequest.fromPartial({ ipAddress: `${base}.50`, ports: [8050] })).finish(),
    ],
    [
      'Network/DeleteInterface',
      { pick: 0 },
      () => DeleteInterfaceRequest.encode({ interfaceName: world.liveHandles()[0] ?? 'nni-00000001' }).finish(),
    ],
    [
      'Network/CreateContainerNetworkInterface',
      { ipAddress: world.gateway, subNetwork: world.subnet },
      () => CreateContainerNetworkInterfaceRequest.encode({ ipAddress: world.gateway, subNetwork: world.subnet }).finish(),
    ],
    ['NetworkAdmin/Inspect', {}, () => InspectRequest.encode({}).finish()],
    [
      'NetworkAdmin/AddPeer',
      { name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' },
      () => Peer.encode({ name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' }).finish(),
    ],
    ['NetworkAdmin/RemovePeer', { name: 'node-2' }, () => RemovePeerRequest.encode({ name: 'node-2' }).finish()],
    ['NetworkAdmin/ListPeers', {}, () => Empty.encode({}).finish()],
  ];
  return cases.map(([method, request, bytes]) => ({ method, bytes, description: `${method} ${JSON.stringify(request)}` }));
}
