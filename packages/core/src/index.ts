/**
 * @nodenet/core: nodenet's domain, without I/O. Its public names, by what they are for:
 * - the use-cases (NodeNetwork: create/delete the CNI and instance interfaces, restore, reconcile) and the
 *   cluster side (membership, overlay, peer sync);
 * - the ports adapters implement (Dataplane, PacketFilter, StateStore, Logger) and the shapes they exchange;
 * - validated value types and their parsers (interface names, namespaces, IPv4 addresses, subnets, ports);
 * - the errors every nodenet package throws, each with a gRPC-style code.
 * Planning internals (link-name allocation, the reconcile planner, the rollback transaction) stay inside.
 */
export {
  AlreadyExistsError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NodenetError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  TeardownError,
  UnavailableError,
  asNodenetError,
  isNodenetError,
  type ErrorCode,
} from './errors.js';
export { stateWriteError } from './state-errors.js';
export {
  clientError,
  DAEMON_CAPABILITIES,
  missingCapabilityOf,
  MissingCapabilityError,
  type DaemonCapability,
} from './capability-errors.js';
export { Subnet, macForAddress, parseIpv4Address, subnetOf, vtepMacForUnderlay, type Ipv4Address } from './net.js';
export {
  Ipv6Subnet,
  addressFamily,
  ipv6SubnetOf,
  linkLocalForMac,
  parseIpAddress,
  parseIpSubnet,
  parseIpv6Address,
  subnetContains,
  subnetFamily,
  subnetsOverlap,
  type AddressFamily,
  type IpAddress,
  type IpSubnet,
  type Ipv6Address,
} from './net6.js';
export {
  MAX_IPV6_PREFIX,
  MIN_IPV6_PREFIX,
  addressList,
  cniNetsOfRecord,
  cniRecordFields,
  cniSubnets,
  describeCniNets,
  instanceAddressesOfRecord,
  instanceRecordFields,
  parseCniNets,
  parseInstanceAddresses,
  instanceAddresses,
  parseIpv6InstanceSubnet,
  parseIpv4Net,
  parseIpv6Net,
  type CniFields,
  type CniNets,
  type InstanceAddresses,
  type Ipv4Net,
  type Ipv6Net,
} from './addressing.js';
export {
  CNI_NAME,
  HANDLE_PREFIX,
  HOST_PREFIX,
  OWNER_ALIAS_PREFIX,
  netnsPath,
  parseIfName,
  parseNetnsRef,
  type IfName,
  type NetnsRef,
} from './names.js';
export { parseHostAddress } from './host-address.js';
export {
  PROTOCOLS,
  PortClaims,
  describePort,
  normalizePorts,
  parsePort,
  portKey,
  samePortMappings,
  type Port,
  type PortMapping,
  type PortMappingInput,
  type Protocol,
} from './ports.js';
export type { CniRecord, InstanceKind, InstanceRecord, NodeState } from './model.js';
export {
  silentLogger,
  type AllowedSource,
  type CniSpec,
  type Dataplane,
  type FilterBase,
  type FilterElements,
  type HostInfo,
  type HostProbe,
  type HostServices,
  type InstancePlacement,
  type InstancePorts,
  type InstanceRules,
  type InstanceSpec,
  type InstanceInterfaceSpec,
  type LinkState,
  type Logger,
  type NamespaceIdentity,
  type PacketFilter,
  type PublishedPort,
  type Repairs,
  type StagedRecord,
  type StateStore,
} from './ports-of-core.js';
export { Mutex } from './sync.js';
export {
  NodeNetwork,
  type CreateCniInput,
  type CreateInterfaceInput,
  type CreateInterfaceResult,
  type DeleteInterfaceInput,
  type NodeNetworkOptions,
  type PeerSubnet,
} from './node-network.js';
export {
  MAX_VNI,
  MIN_IPV4_MTU,
  MIN_IPV6_MTU,
  MIN_VNI,
  OVERLAY_MODES,
  PeerSync,
  StaticMembership,
  VXLAN_OVERHEAD,
  VXLAN_IPV6_OVERHEAD,
  vxlanOverhead,
  vtepMacOf,
  nodeSubnetsOf,
  subnetsOfNode,
  describeNodeSubnets,
  nodesOverlap,
  firstNodeOverlap,
  type NodeSubnets,
  checkHostGwPeer,
  checkOverlaySettings,
  checkPeerForMode,
  checkPeerIsOther,
  checkVxlanUnderlay,
  describeOverlap,
  firstOverlap,
  subnetsHeld,
  parseNodeName,
  parseNodeRecord,
  sameNodeRecord,
  type Membership,
  type MembershipStatus,
  type NodeRecord,
  type HeldSubnet,
  type Overlay,
  type OverlayMode,
  type PeerControl,
} from './cluster.js';
export {
  REPAIR_KINDS,
  REPAIR_TRIGGERS,
  type ReconcileCause,
  type ReconcileReport,
  type RepairKind,
  type RepairTrigger,
} from './reconcile.js';
export {
  ContestTracker,
  DEFAULT_REPAIR_POLICY,
  RepairScheduler,
  repairKind,
  systemClock,
  type Clock,
  type Contest,
  type PassOutcome,
  type RepairPolicyOptions,
  type RepairSchedulerHooks,
} from './repair-policy.js';
export { parseUnderlayAddress, vtepMacForIpv6Underlay } from './underlay.js';
export { NO_FAILURES, allFailed, mergeBatchResults, throwIfFailed, type PeerBatchResult } from './peer-batch.js';
