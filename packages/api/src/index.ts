// @nodenet/api: the generated ts-proto code for network.proto (messages, NetworkService, NetworkServer,
// NetworkClient), the .proto paths, and a promise-based client.
export * from './gen/network.js';
export { networkProtoPath, seedProtoPath } from './paths.js';
export {
  createNetworkClient,
  createNetworkAdminClient,
  type NetworkAdminApiClient,
  isServiceError,
  type CreateNetworkClientOptions,
  type NetworkApiClient,
  type NetworkCallOptions,
  type NetworkClientTlsOptions,
} from './client.js';
