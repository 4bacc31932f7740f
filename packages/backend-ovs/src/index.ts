// @nodenet/backend-ovs: the Open vSwitch dataplane (CNI bridge, instance ports, anti-spoofing flows) and
// overlay (a flow-based VXLAN port with per-peer flows, or host-gw routes), for the kernel (system) and the
// userspace (netdev) datapath, built on @nodenet/linux. What the daemon wires is exported here; flows, OVSDB
// commands and parsers are internal (tests import them from their modules).
export { OVSDB_REMOTE_RE, OvsDataplane, checkOvsOptions, type OvsDataplaneOptions, type OvsOptions } from './ovs-dataplane.js';
export { OvsOverlay, type OvsOverlayOptions } from './ovs-overlay.js';
export { DATAPATH_TYPES, OVS_INFRASTRUCTURE_LINKS, TUNNEL_PORT, UPLINK_BRIDGE, type DatapathType } from './names.js';
// The cookie classes of nodenet's flows: the daemon's change watch counts each class's flows.
export { COOKIE_CLASS, classCookieMatch, type CookieClass } from './flows.js';
