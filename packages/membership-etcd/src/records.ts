/**
 * The pure part of etcd membership: where records live under the prefix, how a node record is encoded,
 * and whether a node may claim its subnet given what the cluster holds. No I/O here.
 *
 * Layout under `prefix` (e.g. `/nodenet`):
 *   <prefix>/nodes/<name>                   the node's record (JSON, see encodeNodeRecord), on the node's lease
 *   <prefix>/subnets/<network>_<prefixLen>  the claim on a subnet; value = the holder's name, on the same lease
 *                                           (one per subnet: a dual-stack node claims its IPv4 and its IPv6 subnet,
 *                                           e.g. subnets/198.19.2.0_24 and subnets/fd19:0:0:2::_64)
 *
 * Older readers (nodenet before IPv6): an IPv4-only record is written exactly as before (version 1). A record
 * carrying IPv6 is version 2: a dual-stack node on an IPv4 underlay keeps the v1 fields, so an older reader
 * sees it as the IPv4 node it also is (and routes its IPv4 subnet); a record an older reader cannot route (no
 * IPv4 subnet, or an IPv6 underlay address) fails its checks and is ignored and logged there as malformed,
 * never misread. Older readers also skip (and log) IPv6 claim keys, so they do not hold IPv6 subnets against
 * anyone; newer nodes check IPv6 overlaps among themselves.
 */
import {
  InvalidArgumentError,
  Ipv6Subnet,
  Subnet,
  addressFamily,
  nodesOverlap,
  parseNodeName,
  parseNodeRecord,
  subnetsOfNode,
  subnetsOverlap,
  describeNodeSubnets,
  type IpSubnet,
  type NodeRecord,
} from '@nodenet/core';

/**
 * Format version of an IPv4-only record. Readers accept this version and newer ones: a newer version only
 * adds fields (it tells a reader which optional fields to expect); the v1 fields stay as they are.
 * A change that old readers must not misread needs a new key layout, not a version bump.
 */
export const RECORD_VERSION = 1;
/** Format version of a record that carries IPv6 (`ipv6Subnet`, an IPv6 underlay address, or no IPv4 `subnet`). */
export const RECORD_VERSION_IPV6 = 2;

/** Key names under a membership prefix. */
export class KeyLayout {
  /** The prefix without trailing slashes, e.g. `/nodenet`. */
  readonly prefix: string;
  /** `<prefix>/`: everything membership owns. */
  readonly root: string;
  /** `<prefix>/nodes/`: the node records (what peers watch). */
  readonly nodes: string;
  /** `<prefix>/subnets/`: the subnet claims. */
  readonly subnets: string;

  constructor(prefix: string) {
    if (typeof prefix !== 'string' || !/^\/[\x21-\x7e]*$/.test(prefix)) {
      throw new InvalidArgumentError(
        'membership.etcd.prefix',
        `'${String(prefix)}' must start with / and contain no spaces, e.g. /nodenet`,
      );
    }
    this.prefix = prefix.replace(/\/+$/, '');
    this.root = `${this.prefix}/`;
    this.nodes = `${this.prefix}/nodes/`;
    this.subnets = `${this.prefix}/subnets/`;
  }

  nodeKey(name: string): string {
    return this.nodes + name;
  }

  /** The claim key of a subnet: `/` cannot appear inside a key segment, so it becomes `_`. */
  claimKey(subnet: IpSubnet): string {
    return `${this.subnets}${subnet.network}_${subnet.prefixLength}`;
  }

  /** The node name a record key stands for, or null if the key is not under `nodes/`. */
  nameOfNodeKey(key: string): string | null {
    return key.startsWith(this.nodes) ? key.slice(this.nodes.length) : null;
  }

  /** The subnet a claim key stands for; null if the key is not under `subnets/` or not a subnet. */
  subnetOfClaimKey(key: string): IpSubnet | null {
    if (!key.startsWith(this.subnets)) return null;
    const segment = key.slice(this.subnets.length);
    const v4 = /^(\d{1,3}(?:\.\d{1,3}){3})_(\d{1,2})$/.exec(segment);
    const v6 = /^([0-9a-f:]{2,39})_(\d{1,3})$/.exec(segment);
    try {
      if (v4) return Subnet.parse(`${v4[1]}/${v4[2]}`, 'claim');
      if (v6) return Ipv6Subnet.parse(`${v6[1]}/${v6[2]}`, 'claim');
    } catch {
      return null;
    }
    return null;
  }
}

/** The end of the etcd key range holding every key that starts with `prefix` (the prefix with its last byte + 1). */
export function prefixRangeEnd(prefix: string | Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all 0xff: the range runs to the end of the key space
}

export function encodeNodeRecord(record: NodeRecord): string {
  const ipv6 = record.ipv6Subnet !== undefined || record.subnet === undefined || addressFamily(record.underlayAddress) === 6;
  return JSON.stringify({
    version: ipv6 ? RECORD_VERSION_IPV6 : RECORD_VERSION,
    name: record.name,
    underlayAddress: record.underlayAddress,
    ...(record.subnet ? { subnet: record.subnet.toString() } : {}),
    ...(record.ipv6Subnet ? { ipv6Subnet: record.ipv6Subnet.toString() } : {}),
  });
}

/**
 * Decodes the record stored under `key` (whose last segment is `name`). Throws InvalidArgumentError
 * naming the key for anything malformed: not JSON, no or bad version, bad fields, or a name that differs
 * from the key's.
 */
export function decodeNodeRecord(key: string, name: string, value: string): NodeRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError(key, `is not JSON: ${JSON.stringify(value.slice(0, 80))}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError(key, 'is not a JSON object');
  }
  const fields = parsed as Record<string, unknown>;
  const version = fields['version'];
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new InvalidArgumentError(`${key}.version`, `must be an integer >= 1 (got ${JSON.stringify(version)})`);
  }
  const record = parseNodeRecord(
    { name: fields['name'], underlayAddress: fields['underlayAddress'], subnet: fields['subnet'], ipv6Subnet: fields['ipv6Subnet'] },
    key,
  );
  if (record.name !== name) {
    throw new InvalidArgumentError(`${key}.name`, `names node '${record.name}' but the key is for '${name}'`);
  }
  return record;
}

/** A node record as read from etcd, with the lease it lives on. */
export interface LiveRecord {
  readonly record: NodeRecord;
  readonly lease: string;
}

/** A subnet claim as read from etcd. */
export interface LiveClaim {
  readonly subnet: IpSubnet;
  readonly holder: string;
  readonly lease: string;
}

export type ClaimVerdict =
  | {
      readonly ok: true;
      /** This node's claims on other subnets (from an earlier run): to delete. */ readonly staleOwnClaims: readonly IpSubnet[];
    }
  | { readonly ok: false; readonly conflictWith: string; readonly message: string };

/**
 * May `self` claim its subnet, given the live records and claims? Everything in etcd is live (expired
 * leases have taken their keys with them). A record or claim under this node's name is this node's own
 * (from this run, `ownLease`, or an earlier run of the daemon on the same underlay address) and is taken
 * over; under this name but from another underlay address it is another machine using the same name.
 */
export function checkClaim(
  self: NodeRecord,
  nodes: readonly LiveRecord[],
  claims: readonly LiveClaim[],
  ownLease: string | null,
): ClaimVerdict {
  const mine = nodes.find((n) => n.record.name === self.name);
  if (mine && mine.lease !== ownLease && mine.record.underlayAddress !== self.underlayAddress) {
    return {
      ok: false,
      conflictWith: self.name,
      message:
        `node name ${self.name} is already announced by a live node with underlay address ${mine.record.underlayAddress} ` +
        `(subnet ${describeNodeSubnets(mine.record)}): give this node another name, or wait until that node's record expires with its lease`,
    };
  }
  for (const { record: other } of nodes) {
    if (other.name === self.name) continue;
    if (nodesOverlap(other, self)) {
      const mineOverlapping = subnetsOfNode(self).find((s) => subnetsOfNode(other).some((o) => subnetsOverlap(s, o)));
      const theirs = subnetsOfNode(other).find((o) => mineOverlapping !== undefined && subnetsOverlap(mineOverlapping, o));
      return {
        ok: false,
        conflictWith: other.name,
        message: `subnet ${String(mineOverlapping)} overlaps ${String(theirs)} held by live node ${other.name}: choose a subnet no other node uses, or wait until ${other.name}'s record expires with its lease`,
      };
    }
    if (other.underlayAddress === self.underlayAddress) {
      return {
        ok: false,
        conflictWith: other.name,
        message: `underlay address ${self.underlayAddress} is already announced by live node ${other.name}: each node needs its own underlay address`,
      };
    }
  }
  // Claims without a record (a record written by hand, or a holder whose record is malformed) still count.
  for (const claim of claims) {
    if (claim.holder === self.name) continue;
    const mineOverlapping = subnetsOfNode(self).find((s) => subnetsOverlap(s, claim.subnet));
    if (mineOverlapping) {
      return {
        ok: false,
        conflictWith: claim.holder,
        message: `subnet ${mineOverlapping} overlaps ${claim.subnet} claimed by live node ${claim.holder}: choose a subnet no other node uses, or wait until ${claim.holder}'s claim expires with its lease`,
      };
    }
  }
  const own = new Set(subnetsOfNode(self).map(String));
  const staleOwnClaims = claims.filter((c) => c.holder === self.name && !own.has(c.subnet.toString())).map((c) => c.subnet);
  return { ok: true, staleOwnClaims };
}

/** Parses a claim's value (the holder's node name); null if it is not one. */
export function parseClaimHolder(value: string): string | null {
  try {
    return parseNodeName(value, 'claim');
  } catch {
    return null;
  }
}
