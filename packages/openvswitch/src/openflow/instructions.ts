/**
 * A flow's instructions as nodenet writes them: apply-actions (output, set_field, dec_ttl) then, or
 * instead, goto_table. No instruction at all is a drop. Encoded as OpenFlow 1.4 ofp_instruction and
 * ofp_action structures, byte for byte what ovs-ofctl sends (recorded in the fixtures).
 */
import { ACTION, INSTRUCTION } from './constants.js';
import { OpenFlowCodecError, padTo8 } from './bytes.js';
import { decodeSetFieldOxm, encodeSetFieldOxm, type SettableField } from './match.js';

export type Action =
  | { readonly type: 'output'; readonly port: number }
  | { readonly type: 'set_field'; readonly field: SettableField; readonly value: string }
  | { readonly type: 'dec_ttl' }
  /** An action of someone else's flow this codec does not name (decoding only). */
  | { readonly type: 'other'; readonly code: number; readonly hex: string };

export interface Instructions {
  /** Applied in order (empty or absent: none). */
  readonly apply?: readonly Action[];
  readonly gotoTable?: number;
  /** Instructions of someone else's flow this codec does not name (decoding only). */
  readonly other?: readonly string[];
}

export function encodeAction(a: Action): Buffer {
  switch (a.type) {
    case 'output': {
      const b = Buffer.alloc(16);
      b.writeUInt16BE(ACTION.OUTPUT, 0);
      b.writeUInt16BE(16, 2);
      b.writeUInt32BE(a.port >>> 0, 4);
      // max_len 0: only CONTROLLER output sends packets anywhere they could be cut.
      return b;
    }
    case 'dec_ttl': {
      const b = Buffer.alloc(8);
      b.writeUInt16BE(ACTION.DEC_NW_TTL, 0);
      b.writeUInt16BE(8, 2);
      return b;
    }
    case 'set_field': {
      const oxm = encodeSetFieldOxm(a.field, a.value);
      const b = Buffer.alloc(padTo8(4 + oxm.length));
      b.writeUInt16BE(ACTION.SET_FIELD, 0);
      b.writeUInt16BE(b.length, 2);
      oxm.copy(b, 4);
      return b;
    }
    case 'other':
      throw new OpenFlowCodecError(`cannot encode action ${a.code}: only decoded`);
  }
}

export function encodeInstructions(i: Instructions): Buffer {
  const parts: Buffer[] = [];
  if (i.apply && i.apply.length > 0) {
    const actions = Buffer.concat(i.apply.map(encodeAction));
    const h = Buffer.alloc(8);
    h.writeUInt16BE(INSTRUCTION.APPLY_ACTIONS, 0);
    h.writeUInt16BE(8 + actions.length, 2);
    parts.push(h, actions);
  }
  if (i.gotoTable !== undefined) {
    if (!Number.isInteger(i.gotoTable) || i.gotoTable < 0 || i.gotoTable > 254)
      throw new OpenFlowCodecError(`goto_table ${i.gotoTable} is not a table (0-254)`);
    const b = Buffer.alloc(8);
    b.writeUInt16BE(INSTRUCTION.GOTO_TABLE, 0);
    b.writeUInt16BE(8, 2);
    b.writeUInt8(i.gotoTable, 4);
    parts.push(b);
  }
  if (i.other && i.other.length > 0) throw new OpenFlowCodecError('cannot encode instructions that were only decoded');
  return Buffer.concat(parts);
}

export function decodeActions(b: Buffer): Action[] {
  const out: Action[] = [];
  for (let off = 0; off + 4 <= b.length;) {
    const type = b.readUInt16BE(off);
    const len = b.readUInt16BE(off + 2);
    if (len < 8 || off + len > b.length) throw new OpenFlowCodecError(`action at ${off} has length ${len}`);
    const body = b.subarray(off, off + len);
    off += len;
    if (type === ACTION.OUTPUT) out.push({ type: 'output', port: body.readUInt32BE(4) });
    else if (type === ACTION.DEC_NW_TTL) out.push({ type: 'dec_ttl' });
    else if (type === ACTION.SET_FIELD) {
      const f = decodeSetFieldOxm(body.subarray(4));
      out.push(f ? { type: 'set_field', ...f } : { type: 'other', code: type, hex: body.toString('hex') });
    } else out.push({ type: 'other', code: type, hex: body.toString('hex') });
  }
  return out;
}

export function decodeInstructions(b: Buffer): Instructions {
  let apply: Action[] | undefined;
  let gotoTable: number | undefined;
  const other: string[] = [];
  for (let off = 0; off + 4 <= b.length;) {
    const type = b.readUInt16BE(off);
    const len = b.readUInt16BE(off + 2);
    if (len < 8 || off + len > b.length) throw new OpenFlowCodecError(`instruction at ${off} has length ${len}`);
    const body = b.subarray(off, off + len);
    off += len;
    if (type === INSTRUCTION.APPLY_ACTIONS) apply = [...(apply ?? []), ...decodeActions(body.subarray(8))];
    else if (type === INSTRUCTION.GOTO_TABLE) gotoTable = body.readUInt8(4);
    else other.push(body.toString('hex'));
  }
  return { ...(apply ? { apply } : {}), ...(gotoTable === undefined ? {} : { gotoTable }), ...(other.length ? { other } : {}) };
}
