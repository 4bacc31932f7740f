export { NftPacketFilter, type NftPacketFilterOptions } from './nft-packet-filter.js';
export * from './script.js';
export * from './listing.js';
export * from './drift.js';
export * from './conntrack.js';
export * from './session.js';
