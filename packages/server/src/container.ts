/**
 * The one place where adapters are chosen and wired together (tsyringe, factories registered under tokens;
 * no decorators). Core only knows the ports; the packages implementing them meet here.
 */
import 'reflect-metadata';
import { container as rootContainer, instanceCachingFactory, type DependencyContainer, type InjectionToken } from 'tsyringe';
import {
  InvalidArgumentError,
  StaticMembership,
  type Dataplane,
  type HostInfo,
  type HostServices,
  type InstancePorts,
  type Logger,
  type Membership,
  type Overlay,
  type PacketFilter,
  type StateStore,
} from '@nodenet/core';
import { Iproute2Dataplane, Iproute2Overlay, OVERLAY_DEVICE } from '@nodenet/backend-iproute2';
import { OVS_INFRASTRUCTURE_LINKS, OvsDataplane, OvsOverlay } from '@nodenet/backend-ovs';
import { LinuxHostServices } from '@nodenet/linux';
import { NftPacketFilter, type LoopbackGuard } from '@nodenet/nftables';
import { FileStateStore } from '@nodenet/state';
import { ConfigError, readEtcdTls, type DaemonConfig } from './config.js';
import { InFlight } from './network-server.js';

export interface BackendContext {
  readonly config: DaemonConfig;
  readonly logger: Logger;
}

/** A dataplane backend: its Dataplane, and its Overlay once the host's underlay is known. */
export interface Backend {
  readonly dataplane: Dataplane;
  createOverlay(host: HostInfo): Overlay;
  /** Links the backend owns that are not instances' (never treated as orphans). */
  readonly infrastructureLinks: readonly string[];
}

/**
 * Where the packet filter puts the loopback guard, from what the dataplane's instance ports are (the one
 * place core's capability meets nftables' option): on the ports when they are Linux bridge ports, which
 * instance frames pass anyway; otherwise in the ip table's prerouting, where the node receives them.
 */
export const LOOPBACK_GUARD_FOR: Readonly<Record<InstancePorts, LoopbackGuard>> = {
  'linux-bridge': 'bridge-ports',
  switch: 'ip-prerouting',
};

export type BackendFactory = (context: BackendContext) => Backend;

/** The dataplane backends by the name the config's `backend` selects. Adding a backend is one entry here. */
export const BACKENDS: Readonly<Record<string, BackendFactory>> = {
  iproute2: ({ config, logger }) => ({
    dataplane: new Iproute2Dataplane({ logger }),
    createOverlay: (host) =>
      new Iproute2Overlay({ mode: config.overlay.mode, vni: config.overlay.vni, port: config.overlay.port, host, logger }),
    infrastructureLinks: [OVERLAY_DEVICE],
  }),
  ovs: ({ config, logger }) => {
    const { db, runDir, datapathType } = config.ovs;
    return {
      dataplane: new OvsDataplane({ db, runDir, datapathType, logger }),
      createOverlay: (host) =>
        new OvsOverlay({
          mode: config.overlay.mode,
          vni: config.overlay.vni,
          port: config.overlay.port,
          host,
          db,
          runDir,
          datapathType,
          logger,
        }),
      infrastructureLinks: [...OVS_INFRASTRUCTURE_LINKS],
    };
  },
};

/** The etcd adapter's module. Loaded only for etcd membership: etcd3 and its gRPC stack add ~140 ms to a start. */
export type EtcdModule = typeof import('@nodenet/membership-etcd');

export async function loadEtcdModule(config: DaemonConfig): Promise<EtcdModule | undefined> {
  return config.membership.type === 'etcd' ? import('@nodenet/membership-etcd') : undefined;
}

/** Membership by the config's `membership.type` (`etcd`: the module loadEtcdModule gave). */
export function createMembership(config: DaemonConfig, logger: Logger, etcd?: EtcdModule): Membership {
  if (config.membership.type === 'etcd') {
    if (etcd === undefined) throw new Error('etcd membership needs the etcd adapter: pass what loadEtcdModule(config) returns');
    const { endpoints, prefix, leaseTtlSeconds, restartGraceSeconds } = config.membership.etcd;
    const tls = readEtcdTls(config); // the PEM files; a problem is a ConfigError naming the key and the path
    try {
      return new etcd.EtcdMembership({
        endpoints,
        prefix,
        leaseTtlSeconds,
        restartGraceSeconds,
        ...(tls ? { tls } : {}),
        nodeName: config.nodeName,
        logger,
      });
    } catch (e) {
      // Its field names are the config's keys (membership.etcd.endpoints[0], ...): a config error, exit code 2.
      if (e instanceof InvalidArgumentError) throw new ConfigError([`config: ${e.message}`]);
      throw e;
    }
  }
  return new StaticMembership(config.membership.peers);
}

export const BACKEND_NAMES: readonly string[] = Object.keys(BACKENDS);

export const TOKENS = {
  config: Symbol('DaemonConfig') as InjectionToken<DaemonConfig>,
  logger: Symbol('Logger') as InjectionToken<Logger>,
  backend: Symbol('Backend') as InjectionToken<Backend>,
  /** The host's underlay probe and namespace identity (@nodenet/linux, whichever the backend). */
  hostServices: Symbol('HostServices') as InjectionToken<HostServices>,
  membership: Symbol('Membership') as InjectionToken<Membership>,
  packetFilter: Symbol('PacketFilter') as InjectionToken<PacketFilter>,
  stateStore: Symbol('StateStore') as InjectionToken<StateStore>,
  /** The calls being served (the shutdown waits for them; the state store asks whether one is alone). */
  inFlight: Symbol('InFlight') as InjectionToken<InFlight>,
} as const;

export interface Adapters {
  readonly backend: Backend;
  readonly dataplane: Dataplane;
  readonly hostServices: HostServices;
  readonly membership: Membership;
  readonly packetFilter: PacketFilter;
  readonly store: StateStore;
}

/** A child container holding the daemon's adapters for `config`. Creating it does no I/O. */
export function createContainer(
  config: DaemonConfig,
  logger: Logger & { child(bindings: object): Logger },
  etcd?: EtcdModule,
): DependencyContainer {
  const backend = BACKENDS[config.backend];
  if (!backend) {
    // parseConfig already refuses unknown names; this guards callers that build a config by hand.
    throw new Error(`unknown backend '${config.backend}': valid backends are ${BACKEND_NAMES.join(', ')}`);
  }
  const c = rootContainer.createChildContainer();
  c.register(TOKENS.config, { useValue: config });
  c.register(TOKENS.logger, { useValue: logger });
  c.register(TOKENS.backend, {
    useFactory: instanceCachingFactory((d) =>
      backend({ config: d.resolve(TOKENS.config), logger: logger.child({ component: 'dataplane', backend: config.backend }) }),
    ),
  });
  c.register(TOKENS.membership, {
    useFactory: instanceCachingFactory((d) =>
      createMembership(d.resolve(TOKENS.config), logger.child({ component: 'membership', type: config.membership.type }), etcd),
    ),
  });
  c.register(TOKENS.packetFilter, {
    useFactory: instanceCachingFactory(
      (d) =>
        new NftPacketFilter({
          logger: logger.child({ component: 'nftables' }),
          loopbackGuard: LOOPBACK_GUARD_FOR[d.resolve<Backend>(TOKENS.backend).dataplane.instancePorts],
          ipv6Masquerade: d.resolve<DaemonConfig>(TOKENS.config).ipv6Masquerade,
        }),
    ),
  });
  c.register(TOKENS.hostServices, {
    useFactory: instanceCachingFactory(() => new LinuxHostServices({ logger: logger.child({ component: 'host' }) })),
  });
  c.register(TOKENS.inFlight, { useValue: new InFlight() });
  c.register(TOKENS.stateStore, {
    useFactory: instanceCachingFactory((d) => {
      const inFlight = d.resolve(TOKENS.inFlight);
      // Serving one call (or none: start-up, reconcile), nothing else needs the event loop while a record
      // waits for the disk: wait inline and spare the thread pool's two wake-ups.
      return new FileStateStore(d.resolve(TOKENS.config).stateDir, { waitInline: () => inFlight.size <= 1 });
    }),
  });
  return c;
}

export function resolveAdapters(c: DependencyContainer): Adapters {
  const backend = c.resolve(TOKENS.backend);
  return {
    backend,
    dataplane: backend.dataplane,
    hostServices: c.resolve(TOKENS.hostServices),
    membership: c.resolve(TOKENS.membership),
    packetFilter: c.resolve(TOKENS.packetFilter),
    store: c.resolve(TOKENS.stateStore),
  };
}
