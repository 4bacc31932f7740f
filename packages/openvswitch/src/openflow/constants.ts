/**
 * OpenFlow 1.4 numbers (the ONF specification, openflow.h) for the messages, matches and actions this
 * client speaks. Version 1.4 because bundles are part of it (OVS also offers them to 1.3 as an ONF
 * extension) and its flow_mod and flow-stats formats are 1.3's.
 */
export const OFP_VERSION = 0x05;
export const OFP_HEADER_LEN = 8;

export const MSG = {
  HELLO: 0,
  ERROR: 1,
  ECHO_REQUEST: 2,
  ECHO_REPLY: 3,
  FEATURES_REQUEST: 5,
  FEATURES_REPLY: 6,
  PACKET_OUT: 13,
  FLOW_MOD: 14,
  MULTIPART_REQUEST: 18,
  MULTIPART_REPLY: 19,
  BARRIER_REQUEST: 20,
  BARRIER_REPLY: 21,
  BUNDLE_CONTROL: 33,
  BUNDLE_ADD_MESSAGE: 34,
} as const;

export const FLOW_MOD_COMMAND = { add: 0, modify: 1, modifyStrict: 2, delete: 3, deleteStrict: 4 } as const;
export type FlowModCommand = keyof typeof FLOW_MOD_COMMAND;

export const MULTIPART = { FLOW: 1, AGGREGATE: 2 } as const;
/** ofp_multipart_reply flags: more parts follow. */
export const MULTIPART_REPLY_MORE = 1;

export const BUNDLE_CTRL = {
  OPEN_REQUEST: 0,
  OPEN_REPLY: 1,
  CLOSE_REQUEST: 2,
  CLOSE_REPLY: 3,
  COMMIT_REQUEST: 4,
  COMMIT_REPLY: 5,
  DISCARD_REQUEST: 6,
  DISCARD_REPLY: 7,
} as const;
export const BUNDLE_FLAGS = { ATOMIC: 1, ORDERED: 2 } as const;

/** Reserved port numbers. */
export const PORT = {
  MAX: 0xffffff00,
  IN_PORT: 0xfffffff8,
  TABLE: 0xfffffff9,
  NORMAL: 0xfffffffa,
  FLOOD: 0xfffffffb,
  ALL: 0xfffffffc,
  CONTROLLER: 0xfffffffd,
  LOCAL: 0xfffffffe,
  ANY: 0xffffffff,
} as const;
export const GROUP_ANY = 0xffffffff;
export const TABLE_ALL = 0xff;
export const NO_BUFFER = 0xffffffff;
/** ovs-ofctl's priority when a flow names none (and what non-strict modify/delete carry). */
export const DEFAULT_PRIORITY = 0x8000;

export const INSTRUCTION = { GOTO_TABLE: 1, APPLY_ACTIONS: 4 } as const;
export const ACTION = { OUTPUT: 0, DEC_NW_TTL: 24, SET_FIELD: 25 } as const;

/** OXM classes: the standard one, and Nicira's NXM_1 (where OVS keeps tunnel metadata, also usable as OXM). */
export const OXM_CLASS = { OPENFLOW_BASIC: 0x8000, NXM_1: 0x0001 } as const;

/** ofp_error_msg types (OpenFlow 1.4), for messages. */
export const ERROR_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'HELLO_FAILED',
  1: 'BAD_REQUEST',
  2: 'BAD_ACTION',
  3: 'BAD_INSTRUCTION',
  4: 'BAD_MATCH',
  5: 'FLOW_MOD_FAILED',
  6: 'GROUP_MOD_FAILED',
  7: 'PORT_MOD_FAILED',
  8: 'TABLE_MOD_FAILED',
  9: 'QUEUE_OP_FAILED',
  10: 'SWITCH_CONFIG_FAILED',
  11: 'ROLE_REQUEST_FAILED',
  12: 'METER_MOD_FAILED',
  13: 'TABLE_FEATURES_FAILED',
  14: 'BAD_PROPERTY',
  15: 'ASYNC_CONFIG_FAILED',
  16: 'FLOW_MONITOR_FAILED',
  17: 'BUNDLE_FAILED',
};
