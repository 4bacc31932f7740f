// @nodenet/cli: nodenetctl, the command-line client of nodenetd (bin: bin/nodenetctl.js -> dist/main.js).
export {
  runCli,
  createInterfaceRequest,
  EXIT_OK,
  EXIT_FAILED,
  EXIT_USAGE,
  HEALTH_SERVICES,
  type CliIo,
  type CreateOptions,
} from './program.js';
export { DEFAULT_TARGET, DEFAULT_TIMEOUT_MS, MAPPING_SYNTAX, normalizeTarget, parsePort, parsePortMapping, parseTimeout } from './parse.js';
export { clientOptions, connect, UsageError, type ConnectionFlags, type DaemonConnection, type ServingStatus } from './connection.js';
export {
  formatCni,
  formatCreateInterface,
  formatDelete,
  formatHealth,
  formatInspect,
  formatPeerChange,
  formatPeers,
  formatPorts,
  formatRows,
  formatRpcError,
  formatTable,
  statusName,
  type HealthReport,
} from './format.js';
