/**
 * @nodenet/membership-etcd: core's Membership on etcd. EtcdMembership announces this node's record under a
 * lease, claims its subnet, and reports the cluster's other nodes as they come and go. The TLS helpers
 * (also under `@nodenet/membership-etcd/tls`, which does not load the etcd client) check and read the
 * client's certificate files. The key layout and record encoding are `@nodenet/membership-etcd/records`
 * (pure; the benchmark writes simulated nodes with them).
 */
export { EtcdMembership, type EtcdMembershipOptions } from './etcd-membership.js';
export {
  checkEtcdEndpointSchemes,
  checkEtcdTlsMaterial,
  checkEtcdTlsShape,
  explainEtcdTlsFailure,
  readEtcdTlsFiles,
  type EtcdTlsFiles,
  type EtcdTlsMaterial,
  type EtcdTlsProblem,
} from './tls.js';
