/**
 * Parsers of nodenetctl's option values. They check only what the command line itself must get right
 * (numbers, the shape of a port mapping); addresses, names and conflicts are the daemon's to judge, so
 * there is one source of truth for the rules. A bad value throws commander's InvalidArgumentError, which
 * becomes a usage error (exit 2) naming the option.
 */
import { InvalidArgumentError } from 'commander';
import { Protocol, type PortMapping } from '@nodenet/api';

export const DEFAULT_TARGET = 'unix:///run/nodenet/nodenet.sock';
export const DEFAULT_TIMEOUT_MS = 30_000;

const DECIMAL_PORT_RE = /^[1-9][0-9]{0,4}$/;

/** A port number: decimal 1..65535, nothing else (no sign, no leading zeros, no hex). */
export function parsePort(value: string, what = 'port'): number {
  const port = DECIMAL_PORT_RE.test(value) ? Number(value) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new InvalidArgumentError(`${what} '${value}' is not a port number: use 1..65535`);
  }
  return port;
}

const PROTOCOLS: Readonly<Record<string, Protocol>> = { tcp: Protocol.TCP, udp: Protocol.UDP };
const MAPPING_RE = /^([^:/@]*)(?::([^:/@]*))?(?:\/([^@]*))?(?:@([^@]*))?$/;
export const MAPPING_SYNTAX = 'HOST_PORT[:INSTANCE_PORT][/tcp|/udp][@HOST_ADDRESS]';

/**
 * A published-port mapping `HOST_PORT[:INSTANCE_PORT][/tcp|/udp][@HOST_ADDRESS]`: `8081:80/tcp` publishes
 * TCP 8081 on the node to port 80 of the instance; without a protocol both TCP and UDP; without an instance
 * port the same port as on the node; with `@HOST_ADDRESS` on that node address only (the daemon judges it).
 */
export function parsePortMapping(value: string): PortMapping {
  const match = MAPPING_RE.exec(value);
  if (!match) throw new InvalidArgumentError(`'${value}' is not a port mapping: use ${MAPPING_SYNTAX}, e.g. 8081:80/tcp`);
  const [, host = '', instance, protocolName, hostAddress] = match;
  const hostPort = parsePort(host, 'host port');
  const instancePort = instance === undefined ? hostPort : parsePort(instance, 'instance port');
  let protocol = Protocol.TCP_AND_UDP;
  if (protocolName !== undefined) {
    const named = PROTOCOLS[protocolName.toLowerCase()];
    if (named === undefined) {
      throw new InvalidArgumentError(`protocol '${protocolName}' is not tcp or udp (leave it out for both)`);
    }
    protocol = named;
  }
  if (hostAddress === '')
    throw new InvalidArgumentError(`'${value}': the host address after '@' is empty (leave '@' out for every address)`);
  return { hostPort, instancePort, protocol, ...(hostAddress !== undefined ? { hostAddress } : {}) };
}

/** A timeout in milliseconds: a positive decimal integer. */
export function parseTimeout(value: string): number {
  const ms = /^[1-9][0-9]{0,9}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(ms)) throw new InvalidArgumentError(`'${value}' is not a timeout: give milliseconds, a positive integer`);
  return ms;
}

/** Commander's collector for a repeatable option: each occurrence parsed and appended. */
export function collect<T>(parse: (value: string) => T): (value: string, previous: T[]) => T[] {
  return (value, previous) => [...previous, parse(value)];
}

/** `unix:///path`, `unix:/path` and `host:port` as given; a bare absolute path means its unix socket. */
export function normalizeTarget(value: string): string {
  const target = value.trim();
  if (target === '') throw new InvalidArgumentError('the target is empty: give unix:///PATH, /PATH or HOST:PORT');
  return target.startsWith('/') ? `unix://${target}` : target;
}

export function isUnixTarget(target: string): boolean {
  return target.startsWith('unix:');
}
