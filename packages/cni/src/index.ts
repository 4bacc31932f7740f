// @nodenet/cni: the daemon side of nodenet's CNI plugin (packages/cni-plugin): attachments keyed by container
// id and interface name on NodeNetwork's use-cases, address allocation, CNI results and error objects.
export * from './errors.js';
export * from './conf.js';
export * from './allocator.js';
export * from './result.js';
export * from './attachment-store.js';
export * from './netns-probe.js';
export * from './attachments.js';
