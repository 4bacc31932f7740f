// @nodenet/backend-ovs: the Open vSwitch dataplane (CNI bridge, instance ports, anti-spoofing flows) and
// overlay (a flow-based VXLAN port with per-peer flows, or host-gw routes), for the kernel (system) and the
// userspace (netdev) datapath, built on @nodenet/linux.
export {
  OVSDB_REMOTE_RE,
  OvsDataplane,
  bridgeDrift,
  checkOvsOptions,
  kernelFixes,
  ownerTagOfLink,
  tapScript,
  vethScript,
  type OvsDataplaneOptions,
  type OvsOptions,
} from './ovs-dataplane.js';
export { OvsOverlay, peerRouteLines, removeRouteLines, type OvsOverlayOptions } from './ovs-overlay.js';
export { OvsRunner, OPENFLOW, explainOfctlFailure, explainVsctlFailure, type OvsRunnerOptions } from './ovs-runner.js';
export * from './flows.js';
export * from './names.js';
export * from './ovsdb.js';
export * from './uplink.js';
export { TX_CHECKSUM_OFF_PERL, disableTxChecksum, txChecksumOffArgs } from './tx-checksum.js';
export { SharedLock } from './shared-lock.js';
