/**
 * @nodenet/openvswitch: long-lived clients for Open vSwitch, instead of an ovs-vsctl / ovs-ofctl process
 * per step. OvsdbClient speaks OVSDB's JSON-RPC (RFC 7047) to ovsdb-server; OpenFlowConnection speaks
 * OpenFlow 1.4 to ovs-vswitchd through a bridge's management socket.
 */
export { connectOptionsOf, DEFAULT_BACKOFF, type Backoff } from './remote.js';
export { JsonObjectSplitter, JsonStreamError } from './ovsdb/json-stream.js';
export {
  EMPTY_SET,
  isUuid,
  map,
  mapOf,
  namedUuid,
  optionalOf,
  set,
  setOf,
  uuid,
  uuidOf,
  uuidsOf,
  type OvsdbAtom,
  type OvsdbMap,
  type OvsdbNamedUuid,
  type OvsdbRow,
  type OvsdbSet,
  type OvsdbUuid,
  type OvsdbValue,
} from './ovsdb/values.js';
export {
  OvsdbTransactionError,
  whereName,
  whereUuid,
  type Condition,
  type ConditionFunction,
  type Mutation,
  type Mutator,
  type Operation,
  type OperationResult,
} from './ovsdb/operations.js';
export { OvsdbClient, OvsdbRpcError, type OvsdbClientOptions } from './ovsdb/client.js';
export { MonitorReplica, type MonitorRequests, type TableUpdates2 } from './ovsdb/replica.js';
export { ColumnKinds, type ColumnKind } from './ovsdb/schema.js';
export { VswitchConfigWaiter, VswitchTimeoutError } from './ovsdb/vswitch.js';
export { DEFAULT_PRIORITY, PORT, TABLE_ALL, type FlowModCommand } from './openflow/constants.js';
export { OpenFlowCodecError } from './openflow/bytes.js';
export { ETH_TYPE, IP_PROTO, decodeMatch, encodeMatch, type Match, type SettableField } from './openflow/match.js';
export { decodeInstructions, encodeInstructions, type Action, type Instructions } from './openflow/instructions.js';
export {
  type AggregateStats,
  type FlowFingerprint,
  type FlowMod,
  type FlowStats,
  type FlowStatsRequest,
  type PacketOut,
} from './openflow/messages.js';
export {
  flowModOf,
  packetOutOf,
  formatActions,
  formatFlowStats,
  formatMatch,
  parseActions,
  parseFlow,
  type ParsedFlow,
} from './openflow/text.js';
export { OpenFlowConnection, OpenFlowConnectionLostError, OpenFlowError, type OpenFlowConnectionOptions } from './openflow/connection.js';
