/**
 * nodenetctl's output. Human form: aligned `name  value` rows with the proto's field names. JSON form: the
 * proto3 JSON mapping of the response (lowerCamelCase names, absent optional fields left out), as generic
 * gRPC tools print it.
 */
import { status as grpcStatus } from '@grpc/grpc-js';
import {
  CreateContainerNetworkInterfaceResponse,
  CreateInterfaceResponse,
  Empty,
  InspectResponse,
  InterfaceKind,
  ListPeersResponse,
  Protocol,
  type CniInfo,
  type InterfaceInfo,
  type PeerStatus,
  type PortMapping,
  type ReconcileResult,
} from '@nodenet/api';
import type { ServingStatus } from './connection.js';

export const PROGRAM = 'nodenetctl';

/** Rows of `name value`, the values aligned in one column. */
export function formatRows(rows: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(0, ...rows.map(([name]) => name.length));
  return rows.map(([name, value]) => `${name.padEnd(width)}  ${value}\n`).join('');
}

/**
 * A table: a header row and data rows, columns aligned with two spaces between them, no trailing blanks.
 * Cells are single words (the formatters below put no spaces in them), so `awk '{print $1}'` works.
 */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [header, ...rows]
    .map(
      (row) =>
        `${header
          .map((_, i) => (row[i] ?? '').padEnd(i === header.length - 1 ? 0 : widths[i]!))
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('');
}

/** Indents every non-empty line of `text`. */
function indent(text: string, by = '  '): string {
  return text.replace(/^(?=.)/gm, by);
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

export function formatCni(response: CreateContainerNetworkInterfaceResponse, asJson: boolean): string {
  return asJson ? json(CreateContainerNetworkInterfaceResponse.toJSON(response)) : `${response.interfaceName}\n`;
}

export function formatCreateInterface(response: CreateInterfaceResponse, asJson: boolean): string {
  if (asJson) return json(CreateInterfaceResponse.toJSON(response));
  const rows: Array<[string, string]> = [['interface_name', response.interfaceName]];
  const optional: Array<[string, string | number | undefined]> = [
    ['host_interface_name', response.hostInterfaceName],
    ['mac_address', response.macAddress],
    ['gateway', response.gateway],
    ['prefix_length', response.prefixLength],
    ['mtu', response.mtu],
  ];
  for (const [name, value] of optional) if (value !== undefined) rows.push([name, String(value)]);
  return formatRows(rows);
}

export function formatDelete(handle: string, asJson: boolean): string {
  return asJson ? json(Empty.toJSON({})) : `deleted ${handle}\n`;
}

export interface HealthReport {
  readonly service: string;
  readonly status: ServingStatus;
}

/** Service "" (the daemon as a whole) is shown as `""` in the human form. */
export function formatHealth(reports: readonly HealthReport[], asJson: boolean): string {
  if (asJson) {
    return json({
      serving: reports.every((r) => r.status === 'SERVING'),
      services: Object.fromEntries(reports.map((r) => [r.service, r.status])),
    });
  }
  return formatRows(reports.map((r) => [r.service === '' ? '""' : r.service, r.status]));
}

/** The status's name (`NOT_FOUND`), or `UNKNOWN_STATUS_<n>` for a number grpc-js does not name. */
export function statusName(code: number): string {
  const name = (grpcStatus as unknown as Record<number, string | undefined>)[code];
  return name ?? `UNKNOWN_STATUS_${code}`;
}

/** A gRPC call's failure as stderr shows it: `nodenetctl: NOT_FOUND: <the daemon's message>`. */
export function formatRpcError(error: { code: number; details?: string; message?: string }): string {
  const details =
    (error.details ?? '')
      // grpc-js's connection errors end in an empty "Resolution note:" and repeat "Error: " inside.
      .replace(/\.?\s*Resolution note:\s*$/, '')
      .replace(/\. Last error: (Error: )?/, '; last error: ')
      .trim() ||
    error.message?.trim() ||
    'no details';
  return `${PROGRAM}: ${statusName(error.code)}: ${details}\n`;
}

// ---------------------------------------------------------------------------------------------------
// NetworkAdmin: inspect and peers

/** A mapping's protocols by name; TCP_AND_UDP is both. */
function protocolNames(protocol: Protocol): string[] {
  if (protocol === Protocol.TCP) return ['tcp'];
  if (protocol === Protocol.UDP) return ['udp'];
  if (protocol === Protocol.TCP_AND_UDP) return ['tcp', 'udp'];
  return [`protocol-${protocol}`];
}

/**
 * Published ports as `HOST/PROTO->INSTANCE`, comma-separated (`8080/tcp->80,53/udp->53`), prefixed by the
 * host address for a port published on one address only (`127.0.0.1:8080/tcp->80`). The daemon
 * keeps one mapping per protocol, so a TCP and a UDP mapping of the same ports (what a seed `ports` entry
 * becomes) are shown once, as `8080/tcp+udp->8080`. `-` for none.
 */
export function formatPorts(mappings: readonly PortMapping[]): string {
  const protocolsByPorts = new Map<string, Set<string>>();
  for (const m of mappings) {
    // instance_port 0 means the same as host_port (the proto's rule).
    // An IPv6 host address in brackets, as in a URL: its colons would run into the port's.
    const at = !m.hostAddress ? '' : m.hostAddress.includes(':') ? `[${m.hostAddress}]:` : `${m.hostAddress}:`;
    const ports = `${at}${m.hostPort}->${m.instancePort === 0 ? m.hostPort : m.instancePort}`;
    const protocols = protocolsByPorts.get(ports) ?? new Set<string>();
    for (const name of protocolNames(m.protocol)) protocols.add(name);
    protocolsByPorts.set(ports, protocols);
  }
  if (protocolsByPorts.size === 0) return '-';
  return [...protocolsByPorts]
    .map(([ports, protocols]) => {
      const [host, instance] = ports.split('->');
      // tcp before udp whatever order the mappings came in.
      return `${host}/${[...protocols].sort().join('+')}->${instance}`;
    })
    .join(',');
}

/** Where the instance side lives: `NETNS/IFNAME`, or `-` while it is still in the node's namespace. */
function placement(i: InterfaceInfo): string {
  if (i.netns === undefined) return i.ifname ?? '-';
  return i.ifname === undefined ? i.netns : `${i.netns}/${i.ifname}`;
}

function kindName(kind: InterfaceKind): string {
  return kind === InterfaceKind.TAP ? 'tap' : kind === InterfaceKind.VETH ? 'veth' : `kind-${kind}`;
}

function orDash(value: string): string {
  return value === '' ? '-' : value;
}

function cniLine(cni: CniInfo | undefined): string {
  if (cni === undefined) return 'none (nodenetctl cni create makes it)';
  return `${cni.name} gateway ${cni.gateway} subnet ${cni.subNetwork} mtu ${cni.mtu} mac ${cni.macAddress}`;
}

function interfacesTable(interfaces: readonly InterfaceInfo[]): string {
  if (interfaces.length === 0) return 'none\n';
  return formatTable(
    ['HANDLE', 'HOST', 'KIND', 'ADDRESS', 'PORTS', 'NETNS/IFNAME', 'STATE'],
    interfaces.map((i) => [
      i.interfaceName,
      orDash(i.hostInterfaceName),
      kindName(i.kind),
      orDash(i.ipAddress),
      formatPorts(i.portMappings),
      placement(i),
      orDash(i.state),
    ]),
  );
}

function peersTable(peers: readonly PeerStatus[]): string {
  return formatTable(
    ['NAME', 'UNDERLAY', 'SUBNET', 'PROGRAMMED'],
    peers.map((p) => [
      orDash(p.peer?.name ?? ''),
      orDash(p.peer?.underlayAddress ?? ''),
      orDash(p.peer?.subnet ?? ''),
      p.programmed ? 'yes' : 'no',
    ]),
  );
}

function reconcileSection(result: ReconcileResult | undefined): string {
  if (result === undefined) return 'none yet\n';
  const list = (items: readonly string[]): string => items.map((item) => `  - ${item}\n`).join('');
  // One aligned block of rows, each repair and error listed under its count.
  const [startedAt, duration, repairs, errors] = formatRows([
    ['started_at', result.startedAt],
    ['duration_ms', String(result.durationMs)],
    ['repairs', String(result.repairs.length)],
    ['errors', String(result.errors.length)],
  ]).split(/(?<=\n)/);
  return `${startedAt}${duration}${repairs}${list(result.repairs)}${errors}${list(result.errors)}`;
}

/**
 * `nodenetctl inspect`: the node (rows), then its interfaces, peers and last reconcile, each a titled
 * section with its content indented.
 */
export function formatInspect(response: InspectResponse, asJson: boolean): string {
  if (asJson) return json(InspectResponse.toJSON(response));
  const section = (title: string, body: string): string => `\n${title}\n${indent(body)}`;
  return (
    formatRows([
      ['node_name', response.nodeName],
      ['underlay_address', response.underlayAddress],
      ['backend', response.backend],
      ['overlay_mode', response.overlayMode],
      ['cni', cniLine(response.cni)],
    ]) +
    section(`interfaces (${response.interfaces.length})`, interfacesTable(response.interfaces)) +
    section(`peers (${response.peers.length})`, response.peers.length === 0 ? 'none\n' : peersTable(response.peers)) +
    section('last_reconcile', reconcileSection(response.lastReconcile))
  );
}

/** `nodenetctl peers`: a table of the peers, or a line saying there are none (and which membership). */
export function formatPeers(response: ListPeersResponse, asJson: boolean): string {
  if (asJson) return json(ListPeersResponse.toJSON(response));
  if (response.peers.length === 0) return `no peers (membership ${orDash(response.membership)})\n`;
  return peersTable(response.peers);
}

export function formatPeerChange(verb: 'added' | 'removed', name: string, asJson: boolean): string {
  return asJson ? json(Empty.toJSON({})) : `${verb} peer ${name}\n`;
}
