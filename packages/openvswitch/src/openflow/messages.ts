/**
 * OpenFlow 1.4 messages this client sends and the replies it reads, as pure encode/decode functions:
 * HELLO (with a version bitmap), ECHO, FEATURES, FLOW_MOD, PACKET_OUT, BARRIER, BUNDLE_CONTROL / BUNDLE_ADD_MESSAGE,
 * MULTIPART flow stats, ERROR. Layouts follow the ONF specification's structures (ofp_flow_mod,
 * ofp_packet_out, ofp_bundle_ctrl_msg, ofp_flow_stats_request, ofp_flow_stats, ofp_error_msg).
 */
import {
  BUNDLE_FLAGS,
  DEFAULT_PRIORITY,
  ERROR_TYPE_NAMES,
  FLOW_MOD_COMMAND,
  GROUP_ANY,
  MSG,
  MULTIPART,
  NO_BUFFER,
  OFP_HEADER_LEN,
  OFP_VERSION,
  PORT,
  TABLE_ALL,
  type FlowModCommand,
} from './constants.js';
import { OpenFlowCodecError } from './bytes.js';
import { decodeInstructions, encodeAction, encodeInstructions, type Action, type Instructions } from './instructions.js';
import { decodeMatch, encodeMatch, type Match } from './match.js';

export interface Header {
  readonly version: number;
  readonly type: number;
  readonly length: number;
  readonly xid: number;
}

export function decodeHeader(b: Buffer): Header {
  if (b.length < OFP_HEADER_LEN) throw new OpenFlowCodecError(`an OpenFlow message is at least 8 bytes, got ${b.length}`);
  return { version: b.readUInt8(0), type: b.readUInt8(1), length: b.readUInt16BE(2), xid: b.readUInt32BE(4) };
}

/** A whole message: header then body. */
export function message(type: number, xid: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OFP_HEADER_LEN + body.length);
  b.writeUInt8(OFP_VERSION, 0);
  b.writeUInt8(type, 1);
  b.writeUInt16BE(b.length, 2);
  b.writeUInt32BE(xid >>> 0, 4);
  body.copy(b, OFP_HEADER_LEN);
  if (b.length > 0xffff) throw new OpenFlowCodecError(`message of ${b.length} bytes exceeds OpenFlow's 64 KiB`);
  return b;
}

/** HELLO offering exactly OpenFlow 1.4 (a version-bitmap element, as ovs-ofctl -O OpenFlow14 sends). */
export function hello(xid: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(1, 0); // OFPHET_VERSIONBITMAP
  body.writeUInt16BE(8, 2);
  body.writeUInt32BE(1 << OFP_VERSION, 4);
  return message(MSG.HELLO, xid, body);
}

/** The versions a peer's HELLO offers: its bitmap if it sent one, else every version up to its own. */
export function helloVersions(msg: Buffer): number[] {
  const h = decodeHeader(msg);
  for (let off = OFP_HEADER_LEN; off + 4 <= h.length;) {
    const type = msg.readUInt16BE(off);
    const len = msg.readUInt16BE(off + 2);
    if (len < 4) break;
    if (type === 1) {
      const versions: number[] = [];
      for (let w = 0; (w + 1) * 4 <= len - 4; w++) {
        const bits = msg.readUInt32BE(off + 4 + w * 4);
        for (let bit = 0; bit < 32; bit++) if (bits & (1 << bit)) versions.push(w * 32 + bit);
      }
      return versions;
    }
    off += (len + 7) & ~7;
  }
  return Array.from({ length: h.version }, (_, i) => i + 1);
}

export interface FeaturesReply {
  readonly datapathId: bigint;
  readonly nBuffers: number;
  readonly nTables: number;
  readonly capabilities: number;
}

export function decodeFeaturesReply(b: Buffer): FeaturesReply {
  return { datapathId: b.readBigUInt64BE(8), nBuffers: b.readUInt32BE(16), nTables: b.readUInt8(20), capabilities: b.readUInt32BE(24) };
}

export interface FlowMod {
  readonly command: FlowModCommand;
  readonly cookie?: bigint;
  /** For modify and delete: which cookie bits must match (0: any). */
  readonly cookieMask?: bigint;
  /** Default 0; delete (non-strict) may use TABLE_ALL. */
  readonly table?: number;
  /** Default 0x8000 (ovs-ofctl's when a flow names none). */
  readonly priority?: number;
  readonly match?: Match;
  readonly instructions?: Instructions;
  readonly idleTimeout?: number;
  readonly hardTimeout?: number;
  /** OFPFF_* flags (e.g. 1: send flow removed). */
  readonly flags?: number;
  /** For delete: only flows that output to this port (default ANY). */
  readonly outPort?: number;
}

export function encodeFlowMod(f: FlowMod, xid: number): Buffer {
  const match = encodeMatch(f.match ?? {});
  const deleting = f.command === 'delete' || f.command === 'deleteStrict';
  const instructions = deleting ? Buffer.alloc(0) : encodeInstructions(f.instructions ?? {});
  const body = Buffer.alloc(40 + match.length + instructions.length);
  body.writeBigUInt64BE(BigInt.asUintN(64, f.cookie ?? 0n), 0);
  body.writeBigUInt64BE(BigInt.asUintN(64, f.cookieMask ?? 0n), 8);
  body.writeUInt8(f.table ?? 0, 16);
  body.writeUInt8(FLOW_MOD_COMMAND[f.command], 17);
  body.writeUInt16BE(f.idleTimeout ?? 0, 18);
  body.writeUInt16BE(f.hardTimeout ?? 0, 20);
  body.writeUInt16BE(f.priority ?? DEFAULT_PRIORITY, 22);
  body.writeUInt32BE(NO_BUFFER, 24);
  body.writeUInt32BE(f.outPort ?? PORT.ANY, 28);
  body.writeUInt32BE(GROUP_ANY, 32);
  body.writeUInt16BE(f.flags ?? 0, 36);
  // importance (OpenFlow 1.4) stays 0
  match.copy(body, 40);
  instructions.copy(body, 40 + match.length);
  return message(MSG.FLOW_MOD, xid, body);
}

/** A packet the switch sends through `actions` as if it had arrived on `inPort` (no buffered packet: the data is carried). */
export interface PacketOut {
  /** The port the packet is taken to have arrived on (PORT.LOCAL, a port number, or PORT.CONTROLLER). */
  readonly inPort: number;
  readonly actions: readonly Action[];
  /** The whole Ethernet frame. */
  readonly data: Buffer;
}

/** ofp_packet_out (OpenFlow 1.4): buffer_id, in_port, actions_len, 6 bytes of padding, the actions, the frame. */
export function encodePacketOut(p: PacketOut, xid: number): Buffer {
  const actions = Buffer.concat(p.actions.map(encodeAction));
  const body = Buffer.alloc(16 + actions.length + p.data.length);
  body.writeUInt32BE(NO_BUFFER, 0);
  body.writeUInt32BE(p.inPort >>> 0, 4);
  body.writeUInt16BE(actions.length, 8);
  actions.copy(body, 16);
  p.data.copy(body, 16 + actions.length);
  return message(MSG.PACKET_OUT, xid, body);
}

export function barrierRequest(xid: number): Buffer {
  return message(MSG.BARRIER_REQUEST, xid);
}

export function bundleControl(xid: number, bundleId: number, type: number, flags = BUNDLE_FLAGS.ATOMIC | BUNDLE_FLAGS.ORDERED): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(bundleId >>> 0, 0);
  body.writeUInt16BE(type, 4);
  body.writeUInt16BE(flags, 6);
  return message(MSG.BUNDLE_CONTROL, xid, body);
}

export function decodeBundleControl(b: Buffer): { bundleId: number; type: number; flags: number } {
  return { bundleId: b.readUInt32BE(8), type: b.readUInt16BE(12), flags: b.readUInt16BE(14) };
}

/** BUNDLE_ADD_MESSAGE carrying `inner` (a whole message; its xid should equal the outer one). */
export function bundleAdd(xid: number, bundleId: number, inner: Buffer, flags = BUNDLE_FLAGS.ATOMIC | BUNDLE_FLAGS.ORDERED): Buffer {
  const body = Buffer.alloc(8 + inner.length);
  body.writeUInt32BE(bundleId >>> 0, 0);
  body.writeUInt16BE(flags, 6);
  inner.copy(body, 8);
  return message(MSG.BUNDLE_ADD_MESSAGE, xid, body);
}

export interface FlowStatsRequest {
  readonly table?: number;
  readonly cookie?: bigint;
  readonly cookieMask?: bigint;
  readonly match?: Match;
  readonly outPort?: number;
}

export function flowStatsRequest(xid: number, r: FlowStatsRequest = {}, type: number = MULTIPART.FLOW): Buffer {
  const match = encodeMatch(r.match ?? {});
  const body = Buffer.alloc(8 + 32 + match.length);
  body.writeUInt16BE(type, 0);
  body.writeUInt8(r.table ?? TABLE_ALL, 8);
  body.writeUInt32BE(r.outPort ?? PORT.ANY, 12);
  body.writeUInt32BE(GROUP_ANY, 16);
  body.writeBigUInt64BE(BigInt.asUintN(64, r.cookie ?? 0n), 24);
  body.writeBigUInt64BE(BigInt.asUintN(64, r.cookieMask ?? 0n), 32);
  match.copy(body, 40);
  return message(MSG.MULTIPART_REQUEST, xid, body);
}

/** An aggregate stats request: ofp_aggregate_stats_request has the flow stats request's layout. */
export function aggregateStatsRequest(xid: number, r: FlowStatsRequest = {}): Buffer {
  return flowStatsRequest(xid, r, MULTIPART.AGGREGATE);
}

/** The totals over the flows an aggregate request selected (ofp_aggregate_stats_reply). */
export interface AggregateStats {
  readonly packetCount: bigint;
  readonly byteCount: bigint;
  readonly flowCount: number;
}

export function decodeAggregateStats(body: Buffer): AggregateStats {
  if (body.length < 24) throw new OpenFlowCodecError(`aggregate stats reply body has length ${body.length}`);
  return { packetCount: body.readBigUInt64BE(0), byteCount: body.readBigUInt64BE(8), flowCount: body.readUInt32BE(16) };
}

export interface FlowStats {
  readonly table: number;
  readonly priority: number;
  readonly cookie: bigint;
  readonly match: Match;
  readonly instructions: Instructions;
  readonly durationSec: number;
  readonly idleTimeout: number;
  readonly hardTimeout: number;
  readonly flags: number;
  readonly packetCount: bigint;
  readonly byteCount: bigint;
}

/** One MULTIPART_REPLY: its type, whether more parts follow, and its body. */
export function decodeMultipartReply(b: Buffer): { type: number; more: boolean; body: Buffer } {
  const h = decodeHeader(b);
  return { type: b.readUInt16BE(8), more: (b.readUInt16BE(10) & 1) !== 0, body: b.subarray(16, h.length) };
}

export function decodeFlowStats(body: Buffer): FlowStats[] {
  const out: FlowStats[] = [];
  for (let off = 0; off + 48 <= body.length;) {
    const length = body.readUInt16BE(off);
    if (length < 56 || off + length > body.length) throw new OpenFlowCodecError(`flow stats entry at ${off} has length ${length}`);
    const e = body.subarray(off, off + length);
    const { match, size } = decodeMatch(e, 48);
    out.push({
      table: e.readUInt8(2),
      durationSec: e.readUInt32BE(4),
      priority: e.readUInt16BE(12),
      idleTimeout: e.readUInt16BE(14),
      hardTimeout: e.readUInt16BE(16),
      flags: e.readUInt16BE(18),
      cookie: e.readBigUInt64BE(24),
      packetCount: e.readBigUInt64BE(32),
      byteCount: e.readBigUInt64BE(40),
      match,
      instructions: decodeInstructions(e.subarray(48 + size)),
    });
    off += length;
  }
  return out;
}

/**
 * One flow of a flow stats reply as two strings of its bytes, undecoded: which rule it is (table, priority,
 * match) and what it does (timeouts, flags, importance, cookie, instructions). Its age and counters are
 * left out, so a flow re-added as it was has the same fingerprint. Comparing two dumps by these finds a
 * flow modified in place (same rule, other content) at a fraction of decodeFlowStats's cost.
 */
export interface FlowFingerprint {
  readonly rule: string;
  readonly content: string;
}

export function decodeFlowFingerprints(body: Buffer): FlowFingerprint[] {
  const out: FlowFingerprint[] = [];
  for (let off = 0; off + 48 <= body.length;) {
    const length = body.readUInt16BE(off);
    if (length < 56 || off + length > body.length) throw new OpenFlowCodecError(`flow stats entry at ${off} has length ${length}`);
    // ofp_match: type, length (without its padding to 8 bytes), fields.
    const matchEnd = off + 48 + ((body.readUInt16BE(off + 50) + 7) & ~7);
    if (matchEnd > off + length) throw new OpenFlowCodecError(`flow stats entry at ${off}: its match overruns the entry`);
    out.push({
      // table_id, then priority and the match
      rule:
        body.toString('latin1', off + 2, off + 3) +
        body.toString('latin1', off + 12, off + 14) +
        body.toString('latin1', off + 48, matchEnd),
      // idle and hard timeouts, flags, importance, cookie, instructions
      content:
        body.toString('latin1', off + 14, off + 22) +
        body.toString('latin1', off + 24, off + 32) +
        body.toString('latin1', matchEnd, off + length),
    });
    off += length;
  }
  return out;
}

export interface ErrorMessage {
  readonly type: number;
  readonly code: number;
  /** The start of the message that failed. */
  readonly data: Buffer;
}

export function decodeError(b: Buffer): ErrorMessage {
  const h = decodeHeader(b);
  return { type: b.readUInt16BE(8), code: b.readUInt16BE(10), data: b.subarray(12, h.length) };
}

export function errorName(e: Pick<ErrorMessage, 'type' | 'code'>): string {
  return `${ERROR_TYPE_NAMES[e.type] ?? `type ${e.type}`} code ${e.code}`;
}
