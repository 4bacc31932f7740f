/**
 * OVSDB as the ovs backend sees it, built by pure functions: the ovs-vsctl transactions of the rare steps
 * (bridges), the OVSDB operations the session sends for ports (the same rows ovs-vsctl wrote: see
 * test/port-ops.test.ts), and the one read (Bridge, Port and Interface in one transaction, or
 * `ovs-vsctl --format=json list` without the session), parsed into plain objects.
 */
import { InternalError, type CniSpec, type IfName, type InstanceSpec, type IpAddress, type Ipv6Address } from '@nodenet/core';
import { OvsdbTransactionError, map, namedUuid, set, uuid, type Operation } from '@nodenet/openvswitch';
import {
  CNI_OWNER_TAG,
  EXT,
  OVERLAY_OWNER_TAG,
  TUNNEL_OFPORT,
  TUNNEL_PORT,
  UPLINK_BRIDGE,
  UPLINK_OWNER_TAG,
  instanceOwnerTag,
  type DatapathType,
} from './names.js';

// ---------------------------------------------------------------------------------------------------
// Values

/**
 * A value in ovs-vsctl's `column:key=value` syntax, always quoted: ovs-vsctl reads a double-quoted value as a
 * JSON string, so no character in it (':' of a MAC or of an owner tag) is taken for syntax.
 */

/**
 * What OVSDB records of an instance port: its addresses as its record holds them (`address`: IPv4, or IPv6 for
 * an IPv6-only instance; `ipv6Address`: a dual-stack instance's IPv6 address).
 */
export type OvsPortIdentity = Pick<InstanceSpec, 'handle' | 'mac' | 'kind'> & {
  readonly address: IpAddress;
  readonly ipv6Address?: Ipv6Address;
};

export function quoted(value: string): string {
  if (/[\p{Cc}"\\]/u.test(value))
    throw new InternalError('build an OVSDB transaction', `refusing to write ${JSON.stringify(value)} into OVSDB`);
  return `"${value}"`;
}

function mapEntries(column: string, entries: Readonly<Record<string, string>>): string[] {
  return Object.entries(entries).map(([k, v]) => `${column}:${k}=${quoted(v)}`);
}

// ---------------------------------------------------------------------------------------------------
// Transactions (the arguments after ovs-vsctl's global options; each starts a command with `--`)

/** The CNI bridge and its internal port (the gateway's), created or converged in one transaction. */
export function cniBridgeCommands(spec: Pick<CniSpec, 'name' | 'mac' | 'mtu'>, datapathType: DatapathType): string[] {
  return [
    '--',
    '--may-exist',
    'add-br',
    spec.name,
    '--',
    'set',
    'Bridge',
    spec.name,
    ...cniBridgeColumns(spec, datapathType),
    '--',
    'set',
    'Interface',
    spec.name,
    `mtu_request=${spec.mtu}`,
    ...mapEntries('external_ids', { [EXT.owner]: CNI_OWNER_TAG }),
  ];
}

/** The Bridge columns nodenet sets on its CNI bridge (also what ensureCni compares). */
export function cniBridgeColumns(spec: Pick<CniSpec, 'mac'>, datapathType: DatapathType): string[] {
  return [
    `datapath_type=${datapathType}`,
    // No flow but nodenet's: without them nothing passes (NORMAL would bypass anti-spoofing).
    'fail_mode=secure',
    ...mapEntries('other_config', { hwaddr: spec.mac, 'disable-in-band': 'true' }),
    ...mapEntries('external_ids', { [EXT.owner]: CNI_OWNER_TAG }),
  ];
}

/** The CNI bridge with only what the overlay needs of it (the overlay may run before the CNI is converged). */
export function cniSkeletonCommands(name: IfName, datapathType: DatapathType): string[] {
  return [
    '--',
    '--may-exist',
    'add-br',
    name,
    '--',
    'set',
    'Bridge',
    name,
    `datapath_type=${datapathType}`,
    'fail_mode=secure',
    ...mapEntries('external_ids', { [EXT.owner]: CNI_OWNER_TAG }),
  ];
}

export function deleteBridgeCommands(name: string): string[] {
  return ['--', '--if-exists', 'del-br', name];
}

/** The external_ids of an instance's port: what adoption and reconciliation read back. */
export function instanceExternalIds(spec: OvsPortIdentity): Record<string, string> {
  return {
    [EXT.owner]: instanceOwnerTag(spec.handle),
    [EXT.handle]: spec.handle,
    [EXT.address]: spec.address,
    ...(spec.ipv6Address ? { [EXT.ipv6Address]: spec.ipv6Address } : {}),
    [EXT.mac]: spec.mac,
    [EXT.kind]: spec.kind,
  };
}

/**
 * Adds an instance's node-side link as a port of the CNI bridge, tagged, with its requested port number,
 * and records it in the bridge's port registry (same transaction).
 */
export function addInstancePortCommands(bridge: string, port: IfName, spec: OvsPortIdentity, ofport: number | undefined): string[] {
  return [
    '--',
    'add-port',
    bridge,
    port,
    '--',
    'set',
    'Interface',
    port,
    ...(ofport === undefined ? [] : [`ofport_request=${ofport}`]),
    ...mapEntries('external_ids', instanceExternalIds(spec)),
    ...registerPortCommands(bridge, port, spec),
  ];
}

// ---------------------------------------------------------------------------------------------------
// The port registry: the CNI bridge's own external_ids name every instance port it should have
// (`nodenet-port-NAME = "HANDLE ADDRESS MAC KIND[ IPV6ADDRESS]"`, the last for a dual-stack instance). A Port row can be deleted on its own (an operator's
// del-port, a delete cut short between its switch and kernel steps); the registry outlives it, so the
// reconcile loop can put the port back with its tags and flows instead of guessing from the kernel.
// `add`/`remove` are OVSDB mutations: concurrent creates do not conflict.

export const PORT_REGISTRY_PREFIX = 'nodenet-port-';

export interface RegisteredPort {
  readonly name: string;
  readonly handle: string;
  readonly address: string;
  readonly mac: string;
  readonly kind: string;
  readonly ipv6Address?: string;
}

/** A registry entry's value. */
function registryValue(spec: OvsPortIdentity): string {
  return [spec.handle, spec.address, spec.mac, spec.kind, ...(spec.ipv6Address ? [spec.ipv6Address] : [])].join(' ');
}

export function registerPortCommands(bridge: string, port: string, spec: OvsPortIdentity): string[] {
  const key = `${PORT_REGISTRY_PREFIX}${port}`;
  return [
    '--',
    'remove',
    'Bridge',
    bridge,
    'external_ids',
    key,
    '--',
    'add',
    'Bridge',
    bridge,
    'external_ids',
    `${key}=${quoted(registryValue(spec))}`,
  ];
}

export function unregisterPortCommands(bridge: string, ports: readonly string[]): string[] {
  return ports.flatMap((p) => ['--', 'remove', 'Bridge', bridge, 'external_ids', `${PORT_REGISTRY_PREFIX}${p}`]);
}

/** The registry of a bridge (malformed entries are skipped). */
export function registeredPortsOf(bridge: OvsBridge): RegisteredPort[] {
  return Object.entries(bridge.externalIds).flatMap(([key, value]) => {
    if (!key.startsWith(PORT_REGISTRY_PREFIX)) return [];
    const [handle, address, mac, kind, ipv6Address, ...rest] = value.split(' ');
    if (!handle || !address || !mac || !kind || ipv6Address === '' || rest.length > 0) return [];
    return [{ name: key.slice(PORT_REGISTRY_PREFIX.length), handle, address, mac, kind, ...(ipv6Address ? { ipv6Address } : {}) }];
  });
}

/** ovs-vsctl's refusal to add a port whose name OVSDB already has. */
export const PORT_EXISTS_RE = /cannot create a port named \S+ because a port named \S+ already exists/;

// ---------------------------------------------------------------------------------------------------
// The same transactions as OVSDB operations (the long-lived session's form of the hot path)

/**
 * addInstancePortCommands as OVSDB operations: the bridge must exist (a wait that fails at once otherwise,
 * as ovs-vsctl's "no bridge named"), Interface and Port inserted, the Port added to the bridge's ports and
 * the registry entry replaced (delete then insert: an insert never replaces a map key).
 */
export function addInstancePortOps(bridge: string, port: IfName, spec: OvsPortIdentity, ofport: number | undefined): Operation[] {
  const key = `${PORT_REGISTRY_PREFIX}${port}`;
  return [
    bridgeMustExist(bridge),
    {
      op: 'insert',
      table: 'Interface',
      row: { name: port, ...(ofport === undefined ? {} : { ofport_request: ofport }), external_ids: map(instanceExternalIds(spec)) },
      'uuid-name': 'iface',
    },
    { op: 'insert', table: 'Port', row: { name: port, interfaces: namedUuid('iface') }, 'uuid-name': 'port' },
    {
      op: 'mutate',
      table: 'Bridge',
      where: [['name', '==', bridge]],
      mutations: [
        ['ports', 'insert', set([namedUuid('port')])],
        ['external_ids', 'delete', set([key])],
        ['external_ids', 'insert', map({ [key]: registryValue(spec) })],
      ],
    },
  ];
}

/**
 * deletePortCommands as OVSDB operations: the ports (by UUID) out of every bridge holding them (OVSDB then
 * removes the unreferenced Port and Interface rows) and their registry entries off `bridge`. Ports or a
 * bridge that are gone already are fine (--if-exists).
 */
export function deletePortOps(bridge: string, ports: readonly string[], portUuids: readonly string[]): Operation[] {
  return [...detachPortOps(portUuids), ...unregisterPortOps(bridge, ports)];
}

/**
 * The ports (by UUID) out of every bridge holding them, registry untouched: OVSDB then removes the
 * unreferenced Port and Interface rows (ovs-vsctl's `--if-exists del-port`). No UUID, no operation.
 */
export function detachPortOps(portUuids: readonly string[]): Operation[] {
  if (portUuids.length === 0) return [];
  return [{ op: 'mutate', table: 'Bridge', where: [], mutations: [['ports', 'delete', set(portUuids.map(uuid))]] }];
}

/** unregisterPortCommands as an OVSDB operation: the ports' registry entries off `bridge` (absent keys are fine). */
export function unregisterPortOps(bridge: string, ports: readonly string[]): Operation[] {
  if (ports.length === 0) return [];
  return [
    {
      op: 'mutate',
      table: 'Bridge',
      where: [['name', '==', bridge]],
      mutations: [['external_ids', 'delete', set(ports.map((p) => `${PORT_REGISTRY_PREFIX}${p}`))]],
    },
  ];
}

/** An Interface's `ofport` as OVSDB gives it (an integer, or the empty set before ovs-vswitchd assigned one). */
export function ofportOfColumn(value: unknown): number | null {
  return optionalNumber(value);
}

function bridgeMustExist(bridge: string): Operation {
  return {
    op: 'wait',
    table: 'Bridge',
    where: [['name', '==', bridge]],
    columns: ['name'],
    until: '==',
    rows: [{ name: bridge }],
    timeout: 0,
  };
}

/** Whether a failed add says the port's name is taken (ovs-vsctl's words, or OVSDB's index violation). */
export function isPortExistsError(e: unknown): boolean {
  if (e instanceof OvsdbTransactionError) return e.error === 'constraint violation' && /for index on column "name"/.test(e.details ?? '');
  return PORT_EXISTS_RE.test((e as Error | undefined)?.message ?? '');
}

/** The bridge an OVSDB transaction waited for and did not find (see bridgeMustExist), if that is why it failed. */
export function missingBridgeOf(e: unknown): string | undefined {
  if (!(e instanceof OvsdbTransactionError) || e.error !== 'timed out' || e.operation?.op !== 'wait' || e.operation.table !== 'Bridge')
    return undefined;
  const name = e.operation.where[0]?.[2];
  return typeof name === 'string' ? name : undefined;
}

/** Removes ports (absent ones are fine) and their registry entries. */
export function deletePortCommands(bridge: string, ports: readonly string[]): string[] {
  return [...ports.flatMap((p) => ['--', '--if-exists', 'del-port', p]), ...unregisterPortCommands(bridge, ports)];
}

export interface TunnelSpec {
  readonly vni: number;
  readonly port: number;
}

/** The tunnel port's Interface columns (also what ensureEndpoint compares). */
export function tunnelColumns(t: TunnelSpec): Record<string, string> {
  return { type: 'vxlan', 'options:remote_ip': 'flow', 'options:key': String(t.vni), 'options:dst_port': String(t.port) };
}

/**
 * The tunnel port, as OVSDB operations (the overlay's session): its Interface converged in
 * place when `bridge` holds it already (type, options, requested number, owner tag; other external_ids
 * kept), else Interface and Port inserted and added to `bridge` (which must exist). A tunnel port on
 * another bridge is removed first (deletePortOps), as ovs-vsctl's del-port would.
 */
export function tunnelPortOps(bridge: string, t: TunnelSpec, onBridge: boolean): Operation[] {
  const columns = tunnelColumns(t);
  const options = Object.fromEntries(
    Object.entries(columns)
      .filter(([k]) => k.startsWith('options:'))
      .map(([k, v]) => [k.slice('options:'.length), v]),
  );
  const row = { type: columns['type']!, options: map(options), ofport_request: TUNNEL_OFPORT };
  if (onBridge)
    return [
      { op: 'update', table: 'Interface', where: [['name', '==', TUNNEL_PORT]], row },
      {
        op: 'mutate',
        table: 'Interface',
        where: [['name', '==', TUNNEL_PORT]],
        mutations: [
          ['external_ids', 'delete', set([EXT.owner])],
          ['external_ids', 'insert', map({ [EXT.owner]: OVERLAY_OWNER_TAG })],
        ],
      },
    ];
  return [
    bridgeMustExist(bridge),
    {
      op: 'insert',
      table: 'Interface',
      row: { name: TUNNEL_PORT, ...row, external_ids: map({ [EXT.owner]: OVERLAY_OWNER_TAG }) },
      'uuid-name': 'tun_iface',
    },
    { op: 'insert', table: 'Port', row: { name: TUNNEL_PORT, interfaces: namedUuid('tun_iface') }, 'uuid-name': 'tun_port' },
    { op: 'mutate', table: 'Bridge', where: [['name', '==', bridge]], mutations: [['ports', 'insert', set([namedUuid('tun_port')])]] },
  ];
}

/** netdev: the uplink bridge, with the host's underlay interface as its port and that interface's MAC. */
export function uplinkBridgeCommands(uplink: IfName, mac: string, mtu: number): string[] {
  return [
    '--',
    '--may-exist',
    'add-br',
    UPLINK_BRIDGE,
    '--',
    'set',
    'Bridge',
    UPLINK_BRIDGE,
    'datapath_type=netdev',
    'fail_mode=standalone',
    ...mapEntries('other_config', { hwaddr: mac }),
    ...mapEntries('external_ids', { [EXT.owner]: UPLINK_OWNER_TAG }),
    '--',
    'set',
    'Interface',
    UPLINK_BRIDGE,
    `mtu_request=${mtu}`,
    ...mapEntries('external_ids', { [EXT.owner]: UPLINK_OWNER_TAG }),
    '--',
    '--may-exist',
    'add-port',
    UPLINK_BRIDGE,
    uplink,
    '--',
    'set',
    'Interface',
    uplink,
    ...mapEntries('external_ids', { [EXT.uplinkOf]: UPLINK_BRIDGE }),
  ];
}

/**
 * Re-adds ports as they were (after the bridge had to be recreated): type, options, requested number and
 * external_ids come from what OVSDB held.
 */
export function readdPortCommands(bridge: string, ifaces: readonly OvsInterface[]): string[] {
  return ifaces.flatMap((i) => [
    '--',
    '--may-exist',
    'add-port',
    bridge,
    i.name,
    '--',
    'set',
    'Interface',
    i.name,
    ...(i.type ? [`type=${i.type}`] : []),
    ...Object.entries(i.options).map(([k, v]) => `options:${k}=${quoted(v)}`),
    ...(i.ofportRequest !== null
      ? [`ofport_request=${i.ofportRequest}`]
      : i.ofport !== null && i.ofport > 0
        ? [`ofport_request=${i.ofport}`]
        : []),
    ...(i.mtuRequest !== null ? [`mtu_request=${i.mtuRequest}`] : []),
    ...mapEntries('external_ids', i.externalIds),
  ]);
}

// ---------------------------------------------------------------------------------------------------
// The read

export interface OvsBridge {
  readonly name: string;
  readonly datapathType: string;
  readonly failMode: string | null;
  readonly externalIds: Readonly<Record<string, string>>;
  readonly otherConfig: Readonly<Record<string, string>>;
  /** Names of the interfaces of its ports (its own internal one included). */
  readonly interfaces: readonly string[];
}

export interface OvsInterface {
  readonly name: string;
  /** '' for a system (kernel) interface. */
  readonly type: string;
  /** null before ovs-vswitchd assigned one; -1 when it could not open the interface. */
  readonly ofport: number | null;
  readonly ofportRequest: number | null;
  readonly mtuRequest: number | null;
  readonly externalIds: Readonly<Record<string, string>>;
  readonly options: Readonly<Record<string, string>>;
  readonly error: string | null;
  /** The bridge holding it. */
  readonly bridge: string | null;
}

export interface OvsState {
  readonly bridges: ReadonlyMap<string, OvsBridge>;
  readonly interfaces: ReadonlyMap<string, OvsInterface>;
}

export const READ_COMMANDS: readonly string[] = [
  '--format=json',
  '--',
  '--columns=_uuid,name,datapath_type,fail_mode,external_ids,other_config,ports',
  'list',
  'Bridge',
  '--',
  '--columns=_uuid,name,interfaces',
  'list',
  'Port',
  '--',
  '--columns=_uuid,name,type,ofport,ofport_request,mtu_request,external_ids,options,error',
  'list',
  'Interface',
];

interface Table {
  readonly headings: string[];
  readonly data: unknown[][];
}

/** Parses the three JSON tables READ_COMMANDS prints (one per line). */
export function parseOvsState(stdout: string): OvsState {
  const tables = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Table;
      } catch (e) {
        throw new InternalError('read OVSDB', `ovs-vsctl printed invalid JSON: ${(e as Error).message}`, { cause: e });
      }
    });
  if (tables.length !== 3) throw new InternalError('read OVSDB', `expected 3 tables from ovs-vsctl, got ${tables.length}`);
  const [bridgeRows, portRows, ifaceRows] = tables.map(rowsOf) as [Row[], Row[], Row[]];
  return ovsStateOfRows(bridgeRows, portRows, ifaceRows);
}

/**
 * READ_COMMANDS as OVSDB operations (one transaction of three selects on the long-lived session, instead
 * of an ovs-vsctl process): the same columns, the rows in OVSDB's JSON form as ovs-vsctl prints them.
 */
export const READ_OPERATIONS: readonly Operation[] = [
  {
    op: 'select',
    table: 'Bridge',
    where: [],
    columns: ['_uuid', 'name', 'datapath_type', 'fail_mode', 'external_ids', 'other_config', 'ports'],
  },
  { op: 'select', table: 'Port', where: [], columns: ['_uuid', 'name', 'interfaces'] },
  {
    op: 'select',
    table: 'Interface',
    where: [],
    columns: ['_uuid', 'name', 'type', 'ofport', 'ofport_request', 'mtu_request', 'external_ids', 'options', 'error'],
  },
];

/** The state from the rows READ_OPERATIONS selected (Bridge, Port, Interface), or READ_COMMANDS printed. */
export function ovsStateOfRows(bridgeRows: readonly Row[], portRows: readonly Row[], ifaceRows: readonly Row[]): OvsState {
  const ifaceByUuid = new Map(ifaceRows.map((r) => [uuidOf(r['_uuid']), r]));
  const ifaceNamesOfPort = new Map(
    portRows.map((r) => [
      uuidOf(r['_uuid']),
      setOf(r['interfaces']).map((u) => optionalString(ifaceByUuid.get(uuidOf(u))?.['name']) ?? ''),
    ]),
  );
  const bridges = new Map<string, OvsBridge>();
  const bridgeOfIface = new Map<string, string>();
  for (const r of bridgeRows) {
    const name = String(r['name']);
    const interfaces = setOf(r['ports'])
      .flatMap((u) => ifaceNamesOfPort.get(uuidOf(u)) ?? [])
      .filter((n) => n !== '');
    for (const i of interfaces) bridgeOfIface.set(i, name);
    bridges.set(name, {
      name,
      datapathType: optionalString(r['datapath_type']) ?? '',
      failMode: optionalString(r['fail_mode']),
      externalIds: mapOf(r['external_ids']),
      otherConfig: mapOf(r['other_config']),
      interfaces: interfaces.sort(),
    });
  }
  const interfaces = new Map<string, OvsInterface>();
  for (const r of ifaceRows) {
    const name = String(r['name']);
    interfaces.set(name, {
      name,
      type: optionalString(r['type']) ?? '',
      ofport: optionalNumber(r['ofport']),
      ofportRequest: optionalNumber(r['ofport_request']),
      mtuRequest: optionalNumber(r['mtu_request']),
      externalIds: mapOf(r['external_ids']),
      options: mapOf(r['options']),
      error: optionalString(r['error']),
      bridge: bridgeOfIface.get(name) ?? null,
    });
  }
  return { bridges, interfaces };
}

export type Row = Record<string, unknown>;

function rowsOf(t: Table): Row[] {
  if (!Array.isArray(t.headings) || !Array.isArray(t.data))
    throw new InternalError('read OVSDB', 'unexpected ovs-vsctl JSON: no headings/data');
  return t.data.map((values) => Object.fromEntries(t.headings.map((h, i) => [h, values[i]])));
}

/** OVSDB JSON: `["uuid", U]`. */
function uuidOf(v: unknown): string {
  return Array.isArray(v) && v[0] === 'uuid' ? String(v[1]) : String(v);
}

/** OVSDB JSON: a set is `["set", [...]]`, or the single atom itself. */
function setOf(v: unknown): unknown[] {
  if (Array.isArray(v) && v[0] === 'set') return Array.isArray(v[1]) ? v[1] : [];
  return v === undefined || v === null ? [] : [v];
}

function mapOf(v: unknown): Record<string, string> {
  if (!(Array.isArray(v) && v[0] === 'map' && Array.isArray(v[1]))) return {};
  return Object.fromEntries((v[1] as unknown[]).filter(Array.isArray).map((kv) => [String(kv[0]), String(kv[1])]));
}

function optionalNumber(v: unknown): number | null {
  const s = setOf(v);
  return typeof s[0] === 'number' ? s[0] : null;
}

function optionalString(v: unknown): string | null {
  const s = setOf(v);
  return typeof s[0] === 'string' ? s[0] : null;
}

/** The interfaces of `bridge` nodenet made for instances (tagged with a handle), by name. */
export function instanceInterfacesOf(state: OvsState, bridge: string): OvsInterface[] {
  return [...state.interfaces.values()].filter(
    (i) => i.bridge === bridge && i.externalIds[EXT.handle] !== undefined && i.externalIds[EXT.owner]?.startsWith('nodenet:'),
  );
}

/** Whether the bridge nodenet uses as its uplink exists and is nodenet's. */
export function uplinkBridgeOf(state: OvsState): OvsBridge | undefined {
  const b = state.bridges.get(UPLINK_BRIDGE);
  return b?.externalIds[EXT.owner] === UPLINK_OWNER_TAG ? b : undefined;
}
