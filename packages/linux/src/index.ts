// @nodenet/linux: the Linux layer under both dataplane backends. `ip` sessions and batches and `ip -j`
// parsing, network-namespace identity and the namespace configurator (helpers/netns-netlink.pl), sysctls,
// the host probe, peer routes and the host-gw overlay, and what failed kernel commands mean to a client.
// Written once; backend-iproute2 and backend-ovs both build on it and never on each other.
export * from './ip-batch.js';
export * from './ip-session.js';
export * from './ip-json.js';
export * from './link-scripts.js';
export * from './namespace-failures.js';
export * from './link-failures.js';
export * from './host-probe.js';
export * from './host-services.js';
export * from './netns-identity.js';
export * from './netns-configurator.js';
export * from './sysctl.js';
export * from './peer-routes.js';
export * from './peer-batch.js';
