export { Iproute2Dataplane, type Iproute2DataplaneOptions } from './iproute2-dataplane.js';
export {
  IpBatchError,
  IpRunner,
  commandInNamespace,
  formatIpBatch,
  netnsPath,
  parseIpBatchFailures,
  type IpBatchFailure,
  type IpBatchOptions,
  type IpLine,
} from './ip-batch.js';
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
export { hostInfoFor, pickDefaultRoute, primaryIpv4Of } from './host-probe.js';
export {
  CNI_OWNER_ALIAS,
  DEFAULT_INSTANCE_IFNAME,
  LINE,
  createCniScript,
  deleteInstanceScript,
  deleteLinkScript,
  instanceNamespaceScript,
  ownerAliasOf,
  repairCniScript,
  tapScript,
  vethScript,
} from './scripts.js';
export { cniSysctls, sysctlArgs, writeSysctls, type SysctlSetting } from './sysctl.js';
