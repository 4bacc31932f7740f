/**
 * @nodenet/nftables: core's PacketFilter on nftables (one `inet` table per node: published ports as DNAT
 * maps, cluster subnets, per-instance anti-spoofing), driven through one long-lived `nft -i` session.
 * NftPacketFilter is the adapter; ensureBaseScript and addInstanceScript give the nft script text it
 * loads, for callers that load a node's rules by other means (benchmarks, debugging); TABLE and the
 * listing parsers read back what a node holds (`nft -j list map|set ...`), for monitoring and soak runs.
 */
export { NftPacketFilter, type NftPacketFilterOptions } from './nft-packet-filter.js';
export {
  TABLE,
  addInstanceScript,
  ensureBaseScript,
  type ListedPort,
  type ListedSource,
  type LoopbackGuard,
  type NftBase,
} from './script.js';
export { parseAllowedSources, parsePublishedHostPorts, parsePublishedPorts } from './listing.js';
