// @nodenet/backend-iproute2: the Linux-bridge dataplane (the CNI a bridge, instances veth pairs or TAPs on
// it, overflow bridges past 1,000 ports) and its overlay (a kernel VXLAN device, or host-gw routes), built
// on @nodenet/linux. Scripts and parsers are internal: tests import them from their modules.
export { Iproute2Dataplane, type Iproute2DataplaneOptions } from './iproute2-dataplane.js';
export { Iproute2Overlay, type Iproute2OverlayOptions } from './iproute2-overlay.js';
export { OVERLAY_DEVICE, OVERLAY_OWNER_ALIAS } from './overlay-scripts.js';
export { CNI_OWNER_ALIAS } from './scripts.js';
export { OVERFLOW_BRIDGE_ALIAS, OVERFLOW_LINK_ALIAS, overflowBridgeName } from './cni-bridges.js';
