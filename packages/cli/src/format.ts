/**
 * nodenetctl's output. Human form: aligned `name  value` rows with the proto's field names. JSON form: the
 * proto3 JSON mapping of the response (lowerCamelCase names, absent optional fields left out), as generic
 * gRPC tools print it.
 */
import { status as grpcStatus } from '@grpc/grpc-js';
import { CreateContainerNetworkInterfaceResponse, CreateInterfaceResponse, Empty } from '@nodenet/api';
import type { ServingStatus } from './connection.js';

export const PROGRAM = 'nodenetctl';

/** Rows of `name value`, the values aligned in one column. */
export function formatRows(rows: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(0, ...rows.map(([name]) => name.length));
  return rows.map(([name, value]) => `${name.padEnd(width)}  ${value}\n`).join('');
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
