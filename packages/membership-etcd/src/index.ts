export { EtcdMembership, type EtcdMembershipOptions } from './etcd-membership.js';
export {
  KeyLayout,
  RECORD_VERSION,
  checkClaim,
  decodeNodeRecord,
  encodeNodeRecord,
  parseClaimHolder,
  prefixRangeEnd,
  type ClaimVerdict,
  type LiveClaim,
  type LiveRecord,
} from './records.js';
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
