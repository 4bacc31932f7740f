/** Interface names, namespace references and the names nodenet gives the links it creates. */
import { InvalidArgumentError } from './errors.js';

declare const ifNameBrand: unique symbol;
/** A Linux interface name: 1..15 of [A-Za-z0-9_.-], not `.` or `..`. */
export type IfName = string & { readonly [ifNameBrand]: true };

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

export function parseIfName(input: unknown, field: string): IfName {
  if (typeof input !== 'string' || input === '') {
    throw new InvalidArgumentError(field, 'an interface name is required');
  }
  if (!IFNAME_RE.test(input) || input === '.' || input === '..') {
    throw new InvalidArgumentError(
      field,
      `'${truncate(input)}' is not a valid interface name: use 1..15 letters, digits, '-', '_' or '.' (not '.' or '..')`,
    );
  }
  return input as IfName;
}

/** The CNI bridge every node gets. */
export const CNI_NAME = 'nodenet0' as IfName;
/** Instance-side links (the handles) and host-side links are named from one random id. */
export const HANDLE_PREFIX = 'nni-';
export const HOST_PREFIX = 'nnh-';
/** Written as the link alias of everything nodenet creates in the node namespace, so ownership is visible in the kernel. */
export const OWNER_ALIAS_PREFIX = 'nodenet:';

export interface LinkNames {
  /** The handle: the name the instance-side device is created with. */
  handle: IfName;
  /** The host-side veth end (for a TAP, the TAP itself). */
  hostIfname: IfName;
}

/**
 * Allocates link names from 32 random bits (8 hex digits): `nni-1a2b3c4d` / `nnh-1a2b3c4d`, 12 characters.
 * `isTaken` sees every handle in use or remembered as released, so a handle is never issued twice.
 */
export function allocateLinkNames(isTaken: (handle: IfName) => boolean, randomUint32: () => number): LinkNames {
  for (let attempt = 0; attempt < 64; attempt++) {
    const id = (randomUint32() >>> 0).toString(16).padStart(8, '0');
    const handle = `${HANDLE_PREFIX}${id}` as IfName;
    if (!isTaken(handle)) return { handle, hostIfname: `${HOST_PREFIX}${id}` as IfName };
  }
  throw new Error('could not allocate a free interface name in 64 attempts');
}

export function hostIfnameForHandle(handle: IfName): IfName {
  return `${HOST_PREFIX}${handle.slice(HANDLE_PREFIX.length)}` as IfName;
}

/**
 * A network namespace the daemon moves an instance interface into: a name under /run/netns or an absolute
 * path to a namespace file (e.g. /proc/1234/ns/net). iproute2 opens values containing '/' as paths.
 */
export type NetnsRef = string & { readonly __netns: true };

const NETNS_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$/; // no leading '-': never mistaken for an option
const NETNS_PATH_RE = /^(\/[A-Za-z0-9_.-]+)+$/;

export function parseNetnsRef(input: unknown, field: string): NetnsRef {
  if (typeof input !== 'string' || input === '') throw new InvalidArgumentError(field, 'a namespace name or path is required');
  if (input.startsWith('/')) {
    if (input.length > 4096 || !NETNS_PATH_RE.test(input) || input.split('/').some((s) => s === '.' || s === '..')) {
      throw new InvalidArgumentError(
        field,
        `'${truncate(input)}' is not a usable namespace path: give a normalised absolute path such as /proc/1234/ns/net`,
      );
    }
    return input as NetnsRef;
  }
  if (!NETNS_NAME_RE.test(input) || input === '.' || input === '..') {
    throw new InvalidArgumentError(
      field,
      `'${truncate(input)}' is not a valid namespace name: use a name under /run/netns (letters, digits, '-', '_', '.', not starting with '-' or '.') or an absolute path`,
    );
  }
  return input as NetnsRef;
}

/** The file of a namespace: a path as given, a name under /run/netns (where `ip netns add` puts it). */
export function netnsPath(ns: NetnsRef): NetnsRef {
  return ns.startsWith('/') ? ns : (`/run/netns/${ns}` as NetnsRef);
}

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}
