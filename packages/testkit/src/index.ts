// @nodenet/testkit: namespaces, topologies, the daemon launcher, clients and traffic helpers for tests
// that drive nodenet on the real kernel. Everything a test makes belongs to a TestScope; `cleanup()` undoes it.
export * from './exec.js';
export * from './scope.js';
export * from './topology.js';
export * from './clients.js';
export * from './daemon.js';
export * from './proxy.js';
export * from './traffic.js';
export * from './inspect.js';
export * from './instance.js';
export * from './instance-specs.js';
export * from './etcd.js';
export * from './ovs.js';
export * from './fake-openflow-switch.js';
export * from './prometheus.js';
export * from './pki.js';
export * from './raw-client.js';
export * from './capabilities.js';
