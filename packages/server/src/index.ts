// @nodenet/server: the nodenetd daemon as a library (tests and tools start it in-process); main.ts is the bin.
export { parseCommandLine, configHelp, type CommandLine, type CommandLineResult } from './cli.js';
export {
  ConfigError,
  loadConfig,
  parseConfig,
  parseListen,
  configSummary,
  DEFAULT_LISTEN,
  DEFAULT_STATE_DIR,
  LOG_LEVELS,
  type DaemonConfig,
  type FlagOverrides,
  type ListenAddress,
  type LogLevel,
  type PeerConfig,
} from './config.js';
export { BACKENDS, BACKEND_NAMES, TOKENS, createContainer, resolveAdapters, type Adapters, type BackendFactory } from './container.js';
export {
  startDaemon,
  reservedPortsOf,
  StartError,
  HEALTH_SERVICES,
  SERVICE_NAME,
  VXLAN_OVERHEAD,
  type DaemonHandle,
  type StartOptions,
  type StopResult,
} from './daemon.js';
export { GRPC_STATUS_OF, toGrpcFailure, toServiceError, type GrpcFailure } from './grpc-errors.js';
export { createLogger, requestContext, type DaemonLogger } from './logger.js';
export { createNetworkServer, requestIdOf, kindOf, protocolOf, toCreateInterfaceInput, REQUEST_ID_HEADER } from './network-server.js';
export { DaemonMetrics, type DaemonMetricsOptions, type MetricsSources } from './metrics.js';
export { DEFAULT_METRICS_LISTEN, type MetricsConfig } from './metrics-config.js';
export { MetricsService, startMetricsEndpoint, METRICS_PATH, type MetricsEndpoint } from './metrics-server.js';
export { reloadConfig, LIVE_KEYS, type ReloadOutcome } from './config-reload.js';
