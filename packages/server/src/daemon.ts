/**
 * The daemon's life: validate what is left to validate (TLS material, the socket), create the adapters,
 * probe the host, load the state and bring a recorded CNI back, then serve gRPC and report SERVING.
 * Stopping: NOT_SERVING, stop accepting, let calls in flight finish, close the adapters. The network
 * itself stays in place.
 */
import { lstat, readFile, unlink } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { createSecureContext } from 'node:tls';
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { NetworkAdminService, NetworkService, networkProtoPath } from '@nodenet/api';
import {
  NodeNetwork,
  PeerSync,
  VXLAN_OVERHEAD,
  isNodenetError,
  type HostInfo,
  type HostProbe,
  type Overlay,
  type PeerSubnet,
  type ReconcileReport,
} from '@nodenet/core';
import { createAdminServer } from './admin-server.js';
import { OwnChanges } from './own-changes.js';
import { ChangeWatcher, monitorSpecs } from './change-watcher.js';
import { changeSources } from './ovs-change-sources.js';
import { ClusterLink, ReconcileLoop } from './cluster-link.js';
import { ConfigError, configSummary, type DaemonConfig } from './config.js';
import { createContainer, loadEtcdModule, resolveAdapters, TOKENS, type Adapters } from './container.js';
import { createLogger, type DaemonLogger } from './logger.js';
import { createNetworkServer } from './network-server.js';
import { reloadConfig, type ReloadOutcome } from './config-reload.js';
import { MetricsService } from './metrics-server.js';
import { Door, serverOptions } from './door.js';
import { applySocketAccess, prepareSocketDirectory, resolveSocketGroup, worldWritableProblem } from './local-access.js';
import { loadCniAttachments, startCniServer, type CniServer } from './cni-server.js';
import type { CniAttachments } from '@nodenet/cni';

/** A failure at start that is not a configuration problem: exit code 1. */
export class StartError extends Error {
  readonly exitCode = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartError';
  }
}

export const SERVICE_NAME = 'network.Network';
/** The service names health reports on: the server as a whole ("") and the API. */
export const HEALTH_SERVICES = ['', SERVICE_NAME] as const;

/** Bytes VXLAN adds to every packet (core's, re-exported for the daemon's users). */
export { VXLAN_OVERHEAD };

export interface StartOptions {
  readonly logger?: DaemonLogger;
}

export interface StopResult {
  /** True when calls in flight were cut off (timeout or forceStop) instead of finishing. */
  readonly forced: boolean;
}

export interface DaemonHandle {
  readonly config: DaemonConfig;
  readonly network: NodeNetwork;
  readonly host: HostInfo;
  readonly logger: DaemonLogger;
  /** The number of RPCs being served now. */
  readonly inFlight: number;
  /** NOT_SERVING, stop accepting, let calls in flight finish (up to timeoutMs, default 10 s), close adapters. */
  stop(options?: { timeoutMs?: number }): Promise<StopResult>;
  /** Cuts calls in flight off now (e.g. a second signal during stop()). */
  forceStop(): void;
  /** SIGHUP: loads the config with `load` and applies what can change live (config-reload.ts); `config` then shows it. */
  reload(load: () => Promise<DaemonConfig>): Promise<ReloadOutcome>;
}

interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer;
}

export async function startDaemon(config: DaemonConfig, options: StartOptions = {}): Promise<DaemonHandle> {
  const logger = options.logger ?? createLogger({ level: config.logLevel, nodeName: config.nodeName });
  logger.info(
    { event: 'start', config: configSummary(config), backend: config.backend },
    `starting nodenetd with backend ${config.backend}`,
  );

  // Everything that can still be refused is checked before the first change to the node.
  const tls = config.listen.kind === 'tcp' && config.tls ? await readTlsMaterial(config.tls) : undefined;
  if (config.listen.kind === 'unix') await checkSocketIsFree(config.listen.path);
  const socketGid = await socketGroupId(config);
  const unsafeStateDir = await worldWritableProblem(config.stateDir, 'the state directory');
  if (unsafeStateDir) throw new ConfigError([`config: stateDir: ${unsafeStateDir}`]);
  if (config.cni.listen) await checkCniSocketIsFree(config.cni.listen.path);
  const reflectionPackage = loadReflectionPackage();
  const metricsTls = config.metrics.listen && config.metrics.tls ? await readTlsMaterial(config.metrics.tls, 'metrics.tls') : undefined;
  const metrics = config.metrics.listen
    ? new MetricsService({
        listen: config.metrics.listen,
        ...(metricsTls ? { tls: metricsTls } : {}),
        backend: config.backend,
        logger: logger.child({ component: 'metrics' }),
      })
    : undefined;

  const container = createContainer(config, logger, await loadEtcdModule(config));
  const adapters = resolveAdapters(container);
  let network: NodeNetwork;
  // nodenet's own deletions, so the change watcher's monitors do not take them for drift (see own-changes.ts).
  const ownChanges = new OwnChanges();
  let host: HostInfo;
  let cluster: ClusterLink;
  // What the start-up failure path stops: set once `cluster` is (TypeScript cannot tell in the catch).
  let clusterToStop: ClusterLink | undefined;
  let overlay: Overlay;
  let cniAttachments: CniAttachments | undefined;
  try {
    // Listening is the last thing that can be refused (the port is taken) before the first change to the node.
    if (metrics) await step(`metrics.listen: listen on ${config.metrics.listen!.uri}`, () => metrics.listen());
    host = await probeHost(adapters.hostServices, config);
    overlay = adapters.backend.createOverlay(host);
    checkStaticPeers(config, overlay);
    const sync = new PeerSync(
      overlay,
      // PeerSync reports subnets only once this node has joined, which CreateContainerNetworkInterface does
      // after installing the filter's tables: the set always exists by then.
      (subnets) => adapters.packetFilter.setClusterSubnets(subnets),
      logger.child({ component: 'cluster' }),
    );
    cluster = new ClusterLink(config, host, adapters.membership, sync, logger.child({ component: 'cluster' }));
    clusterToStop = cluster;
    network = new NodeNetwork({
      dataplane: adapters.dataplane,
      namespaces: adapters.hostServices,
      packetFilter: adapters.packetFilter,
      store: adapters.store,
      host,
      reservedPorts: reservedPortsOf(config),
      overlayOverhead: overlay.overhead,
      peers: () =>
        sync.validPeers().map((p): PeerSubnet => ({
          name: p.name,
          ...(p.subnet ? { subnet: p.subnet } : {}),
          ...(p.ipv6Subnet ? { ipv6Subnet: p.ipv6Subnet } : {}),
        })),
      joinCluster: (subnets) => cluster.join(subnets),
      infrastructureLinks: adapters.backend.infrastructureLinks,
      logger: logger.child({ component: 'core' }),
      ...(metrics ? { onReconciled: (report: ReconcileReport) => metrics.metrics.reconciled(report) } : {}),
      onOwnChange: (notice) => ownChanges.note(notice),
    });
    await step('load the state', () => network.load());
    cniAttachments = await step('load the CNI attachments', () => loadCniAttachments(config, network, adapters.packetFilter, logger));
    await cluster.start();
    const started = performance.now();
    const report = await step('restore the node', () => network.restore());
    logger.info(
      {
        event: 'restored',
        cni: network.cniRecord?.name ?? null,
        subnet: network.cniRecord?.subnet ?? null,
        instances: network.listInstances().length,
        repairs: report.repairs,
        errors: report.errors,
        durationMs: Math.round(performance.now() - started),
        phases: report.phases,
      },
      report.repairs.length > 0 ? `restored: ${report.repairs.length} repairs` : 'restored: nothing to repair',
    );
  } catch (e) {
    await clusterToStop?.stop().catch(() => undefined);
    await metrics?.close();
    await closeAdapters(adapters, logger);
    throw e;
  }

  const inFlight = container.resolve(TOKENS.inFlight);
  const health = new HealthImplementation(Object.fromEntries(HEALTH_SERVICES.map((s) => [s, 'NOT_SERVING' as const])));
  const server = new Server(serverOptions(config.limits));
  const door = new Door({ ...(config.tls?.allow ? { allow: config.tls.allow } : {}), limits: config.limits, inFlight, logger });
  server.addService(...door.guard('Network', NetworkService, createNetworkServer(network, logger, inFlight, metrics?.metrics)));
  server.addService(
    ...door.guard(
      'NetworkAdmin',
      NetworkAdminService,
      createAdminServer({ network, cluster, config, host, dataplane: adapters.dataplane, overlay }, logger, inFlight, metrics?.metrics),
    ),
  );
  const healthWatches = addHealthService(server, health);
  new ReflectionService(reflectionPackage).addToServer(server);
  let cniServer: CniServer | undefined;
  try {
    await bind(server, config, tls, socketGid, logger);
    metrics?.metrics.attach({
      network,
      membership: cluster.membership,
      sync: cluster.sync,
      lastPeerChangeAt: () => cluster.lastPeerChangeAt,
    });
    cniServer = await step('serve the CNI plugin', async () => {
      if (config.cni.listen) {
        await checkCniSocketIsFree(config.cni.listen.path);
        await removeSocket(config.cni.listen.path); // stale, from a daemon that did not stop cleanly
      }
      return cniAttachments ? startCniServer(config.cni.listen!.path, cniAttachments, logger.child({ component: 'cni' })) : undefined;
    });
  } catch (e) {
    server.forceShutdown();
    await cluster.stop().catch(() => undefined);
    await metrics?.close();
    await closeAdapters(adapters, logger);
    throw e;
  }
  for (const s of HEALTH_SERVICES) health.setStatus(s, 'SERVING');
  logger.info(
    {
      event: 'ready',
      listen: config.listen.uri,
      backend: config.backend,
      underlay: host.underlayAddress,
      cni: network.cniRecord?.name ?? null,
      instances: network.listInstances().length,
    },
    `serving on ${config.listen.uri}`,
  );

  const reconciler = new ReconcileLoop(
    network,
    cluster,
    config.reconcileIntervalSeconds * 1000,
    logger.child({ component: 'reconcile' }),
    (n, trigger) => metrics?.metrics.overlayRepaired(n, trigger),
  );
  reconciler.start();
  // Event-driven repair: passes within a second of a change; the periodic pass above stays as the safety net.
  const watcher = config.repairOnChange
    ? new ChangeWatcher({
        specs: monitorSpecs(config),
        sources: changeSources(config, () => network.cniRecord !== null),
        runPass: (cause, scope) => reconciler.pass(cause, scope),
        logger: logger.child({ component: 'reconcile' }),
        onRepaired: (seconds, kinds) => metrics?.metrics.repairedOnEvent(seconds, kinds),
        ownChanges,
      })
    : null;
  watcher?.start();

  let stopping: Promise<StopResult> | undefined;
  let forceNow: (() => void) | undefined;
  let liveConfig = config;
  let reloading: Promise<ReloadOutcome> = Promise.resolve({ config, result: 'applied', applied: [], restartNeeded: [], problems: [] });
  const handle: DaemonHandle = {
    get config() {
      return liveConfig;
    },
    network,
    host,
    logger,
    get inFlight() {
      return inFlight.size;
    },
    stop({ timeoutMs = 10_000 } = {}) {
      stopping ??= (async () => {
        const deadline = Date.now() + timeoutMs;
        for (const s of HEALTH_SERVICES) health.setStatus(s, 'NOT_SERVING');
        // Health watchers have now seen NOT_SERVING; their streams never end by themselves and would hold
        // the graceful shutdown until the timeout.
        healthWatches.endAll();
        const cniClosed = cniServer?.close(); // no new CNI calls; those in flight finish
        logger.info({ event: 'shutdown', inFlight: inFlight.size, timeoutMs }, 'shutting down: no new calls, waiting for calls in flight');
        const forced = await new Promise<boolean>((done) => {
          const force = () => {
            clearTimeout(timer);
            server.forceShutdown();
            done(true);
          };
          const timer = setTimeout(force, timeoutMs);
          forceNow = force;
          server.tryShutdown(() => {
            clearTimeout(timer);
            done(false);
          });
        });
        await cniClosed;
        // One deadline for the whole stop: a repair pass (event or periodic) holds nothing a restart needs and
        // can take seconds on a loaded host; waiting for it past the deadline got the daemon SIGKILLed by its
        // supervisor, and then the graceful steps below (the membership record kept for a restart) never ran.
        const left = () => (forced ? 0 : Math.max(0, deadline - Date.now()));
        await watcher?.stop(left());
        await reconciler.stop(left());
        await cluster.stop();
        await metrics?.close();
        await closeAdapters(adapters, logger);
        if (config.listen.kind === 'unix') {
          await removeSocket(config.listen.path).catch((e: unknown) => logger.warn({ err: String(e) }, 'removing the socket failed'));
        }
        logger.info({ event: 'stopped', forced }, forced ? 'stopped; calls in flight were cut off' : 'stopped');
        return { forced };
      })();
      return stopping;
    },
    forceStop() {
      forceNow?.();
    },
    reload(load) {
      // One reload at a time, each over the config the previous one left.
      reloading = reloading.then(async () => {
        const outcome = await reloadConfig(liveConfig, load, { network, cluster, host, dataplane: adapters.dataplane, overlay, logger });
        liveConfig = outcome.config;
        metrics?.metrics.configReloaded(outcome.result);
        return outcome;
      });
      return reloading;
    },
  };
  return handle;
}

/**
 * Adds the health service, keeping track of its Watch streams so that a stop can end them after they
 * have reported NOT_SERVING.
 */
function addHealthService(server: Server, health: HealthImplementation): { endAll(): void } {
  const watches = new Set<ServerWritableStream<unknown, unknown>>();
  health.addToServer({
    addService(definition, implementation) {
      const watch = implementation.watch as (call: ServerWritableStream<unknown, unknown>) => void;
      server.addService(definition, {
        ...implementation,
        watch: (call: ServerWritableStream<unknown, unknown>) => {
          watches.add(call);
          call.on('cancelled', () => watches.delete(call));
          watch(call);
        },
      });
    },
  });
  return {
    endAll() {
      for (const call of watches) {
        try {
          call.end();
        } catch {
          // already closed by the client
        }
      }
      watches.clear();
    },
  };
}

/** Runs a start step; an unexpected failure becomes a StartError naming the step. */
async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ConfigError || e instanceof StartError) throw e;
    throw new StartError(`${name}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

async function probeHost(probe: HostProbe, config: DaemonConfig): Promise<HostInfo> {
  try {
    return await probe.probeHost(config.underlayAddress);
  } catch (e) {
    // A configured underlay address the node does not have is a configuration error.
    if (
      config.underlayAddress !== undefined &&
      isNodenetError(e) &&
      ['INVALID_ARGUMENT', 'FAILED_PRECONDITION', 'NOT_FOUND'].includes(e.code)
    ) {
      throw new ConfigError([`config: underlayAddress: ${e.message}`]);
    }
    const hint = config.underlayAddress === undefined ? ' (set underlayAddress when the node has no default route)' : '';
    throw new StartError(`probe the host's underlay${hint}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** Every static peer must be one the overlay can reach (host-gw: on this node's L2 segment): refuse the start otherwise, naming the peer. */
function checkStaticPeers(config: DaemonConfig, overlay: Overlay): void {
  const problems: string[] = [];
  config.membership.peers.forEach((peer, i) => {
    try {
      overlay.validatePeer(peer);
    } catch (e) {
      problems.push(`config: membership.peers[${i}].underlayAddress: ${(e as Error).message}`);
    }
  });
  if (problems.length > 0) throw new ConfigError(problems);
}

/** The ports no instance may publish, each with the reason given to the client. */
export function reservedPortsOf(config: DaemonConfig): Map<number, string> {
  const reserved = new Map<number, string>();
  for (const p of config.reservedPorts) reserved.set(p, 'listed in reservedPorts');
  if (config.overlay.mode === 'vxlan') reserved.set(config.overlay.port, "the overlay's UDP port");
  if (config.listen.kind === 'tcp') reserved.set(config.listen.port, "the daemon's gRPC port");
  // Published ports are DNAT'ed for the node's own addresses, 127.0.0.1 included: one would capture the scrapes.
  if (config.metrics.listen) reserved.set(config.metrics.listen.port, "the daemon's metrics port (metrics.listen)");
  return reserved;
}

async function closeAdapters(adapters: Adapters, logger: DaemonLogger): Promise<void> {
  for (const [name, adapter] of Object.entries(adapters) as [string, { close?: () => Promise<void> }][]) {
    try {
      await adapter.close?.();
    } catch (e) {
      logger.warn({ adapter: name, err: String(e) }, 'closing an adapter failed');
    }
  }
}

async function readTlsMaterial(tls: NonNullable<DaemonConfig['tls']>, prefix = 'tls'): Promise<TlsMaterial> {
  const read = async (key: string, file: string) => {
    try {
      return await readFile(file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ConfigError([`config: ${key}: cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`]);
    }
  };
  const material: TlsMaterial = {
    cert: await read(`${prefix}.cert`, tls.cert),
    key: await read(`${prefix}.key`, tls.key),
    ...(tls.ca ? { ca: await read(`${prefix}.ca`, tls.ca) } : {}),
  };
  // Parse now, so a bad PEM or a key that does not match the certificate fails the start, naming the key.
  try {
    createSecureContext({ cert: material.cert, key: material.key });
  } catch (e) {
    throw new ConfigError([
      `config: ${prefix}.cert/${prefix}.key: ${tls.cert} and ${tls.key} are not a usable certificate and key pair: ${(e as Error).message}`,
    ]);
  }
  if (material.ca) {
    try {
      createSecureContext({ ca: material.ca });
    } catch (e) {
      throw new ConfigError([`config: ${prefix}.ca: ${tls.ca} is not a usable PEM CA certificate: ${(e as Error).message}`]);
    }
  }
  return material;
}

/** Refuses a socket path where something else lives; a stale socket (no one answers) is removed at bind. */
async function checkSocketIsFree(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new StartError(`listen: cannot inspect ${path}: ${(e as Error).message}`);
  }
  if (!isSocket) throw new StartError(`listen: ${path} exists and is not a socket: remove it or listen elsewhere`);
  if (await socketAnswers(path)) {
    throw new StartError(`listen: another process (another nodenetd?) is serving on ${path}: stop it first, or listen elsewhere`);
  }
}

/** checkSocketIsFree for the CNI plugin's socket, its messages naming cni.listen. */
async function checkCniSocketIsFree(path: string): Promise<void> {
  try {
    await checkSocketIsFree(path);
  } catch (e) {
    throw new StartError(`cni.listen: ${(e as Error).message.replace(/^listen: /, '')}`);
  }
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ path });
    const finish = (answered: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answered);
    };
    // A listener that accepts but is slow still counts as alive.
    const timer = setTimeout(() => finish(true), 2000);
    socket.once('connect', () => finish(true));
    socket.once('error', (e: NodeJS.ErrnoException) => finish(e.code !== 'ECONNREFUSED' && e.code !== 'ENOENT'));
  });
}

/** The gid of `socketGroup` (undefined without one); a group that does not exist is a config error. */
async function socketGroupId(config: DaemonConfig): Promise<number | undefined> {
  if (config.listen.kind !== 'unix' || config.socketGroup === undefined) return undefined;
  const found = await resolveSocketGroup(config.socketGroup);
  if ('problem' in found) throw new ConfigError([`config: socketGroup: ${found.problem}`]);
  return found.gid;
}

async function bind(
  server: Server,
  config: DaemonConfig,
  tls: TlsMaterial | undefined,
  socketGid: number | undefined,
  logger: DaemonLogger,
): Promise<void> {
  const listen = config.listen;
  const credentials = tls
    ? ServerCredentials.createSsl(tls.ca ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.ca !== undefined)
    : ServerCredentials.createInsecure();
  if (listen.kind === 'unix') {
    const warning = await step('create the socket directory', () => prepareSocketDirectory(dirname(listen.path), socketGid));
    if (warning) logger.warn({ event: 'socket-directory', err: warning }, warning);
    await checkSocketIsFree(listen.path);
    await removeSocket(listen.path);
    // The socket is created with mode 0600 from the start (umask), then given its group and mode.
    const previous = process.umask(0o177);
    try {
      await bindAsync(server, listen.uri, credentials);
    } finally {
      process.umask(previous);
    }
    await step('set the socket group and mode', () => applySocketAccess(listen.path, config.socketMode, socketGid));
    return;
  }
  await bindAsync(server, listen.uri, credentials);
}

function bindAsync(server: Server, uri: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(uri, credentials, (err, port) => {
      if (err) reject(new StartError(`listen on ${uri}: ${err.message}`, { cause: err }));
      else resolve(port);
    });
  });
}

async function removeSocket(path: string): Promise<void> {
  try {
    if ((await lstat(path)).isSocket()) await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new StartError(`remove the stale socket ${path}: ${(e as Error).message}`);
  }
}

/** Reflection serves the API's and the health service's descriptors, so generic tools can call both. */
function loadReflectionPackage() {
  try {
    return loadSync([networkProtoPath, healthProtoPath], { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  } catch (e) {
    throw new StartError(`load the API description ${networkProtoPath} for reflection: ${(e as Error).message}`, { cause: e });
  }
}
