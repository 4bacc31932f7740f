// @nodenet/linux: the Linux layer under both dataplane backends. `ip` sessions and batches and `ip -j`
// parsing, network-namespace identity and the namespace configurator (helpers/netns-netlink.pl), sysctls,
// the host probe, peer routes and the host-gw overlay, and what failed kernel commands mean to a client.
// Written once; backend-iproute2 and backend-ovs both build on it and never on each other. These are the
// names the backends and the server use; everything else stays inside the package.

// Running `ip`: one-shot batches (IpRunner) and a long-lived `ip -batch -` (IpSession), and their failures.
export {
  IpBatchError,
  IpRunner,
  causedBy,
  commandInNamespace,
  deviceMissingRe,
  failedAt,
  formatIpBatch,
  type IpBatchFailure,
  type IpBatchOptions,
  type IpLine,
} from './ip-batch.js';
export { IpSession, type IpSessionOptions } from './ip-session.js';
// `ip -j` output.
export {
  parseIpAddrs,
  parseIpLinks,
  parseIpRoutes,
  type IpAddress,
  type IpLink,
  type IpLinkInfo,
  type IpLinkWithAddresses,
  type IpRoute,
} from './ip-json.js';
// The lines both backends run on Linux links.
export {
  LINE,
  cniAddressLines,
  deleteInstanceScript,
  deleteLinkScript,
  deleteLinksScript,
  instanceNamespaceScript,
  ownerAliasOf,
  pickUnusedGroup,
  repairCniScript,
  tapLines,
  type CniRepair,
} from './link-scripts.js';
// What failed kernel commands mean to a client.
export { explainNamespaceFailure, namespaceMissing } from './namespace-failures.js';
export { deleteTolerant, explainLinkFailure, unexpectedFailure, type IpBatchRunner } from './link-failures.js';
// The host: core's HostServices on Linux, network-namespace identity, the namespace configurator, sysctls.
export { LinuxHostProbe, LinuxHostServices, type LinuxHostProbeOptions } from './host-services.js';
export { LinuxNamespaceIdentity, identifyNamespace } from './netns-identity.js';
export { HelperUnusableError, NetnsConfigurator, configureInstanceEnd } from './netns-configurator.js';
export { helperLineFraming } from '@nodenet/sys';
export {
  cniSysctls,
  describeSysctlRepair,
  readSysctls,
  sysctlDrift,
  writeSysctls,
  type SysctlDrift,
  type SysctlSetting,
  type SysctlValues,
} from './sysctl.js';
// Peer routes (`proto 78`) and the host-gw overlay.
export {
  HostGwOverlay,
  ROUTE_LINE,
  ROUTE_PROTOCOL,
  ROUTE_PROTO_ARGS,
  deleteRouteLine,
  hostGwPeerLines,
  programmedPeersOf,
  readProgrammedPeers,
  staleRouteLines,
  supersededSubnets,
  viaArgs,
  type HostGwOverlayOptions,
  type ProgrammedPeer,
} from './peer-routes.js';
// Peers programmed as one batch, each failed line traced back to its peer.
export { runPeerBatch, withNeighbourDeletes, type ExplainLineFailure, type PeerLines } from './peer-batch.js';
