/**
 * The one place where adapters are chosen and wired together (tsyringe, factories registered under tokens;
 * no decorators). Core only knows the ports; the packages implementing them meet here.
 */
import 'reflect-metadata';
import { container as rootContainer, instanceCachingFactory, type DependencyContainer, type InjectionToken } from 'tsyringe';
import type { Dataplane, Logger, PacketFilter, StateStore } from '@nodenet/core';
import { Iproute2Dataplane } from '@nodenet/backend-iproute2';
import { NftPacketFilter } from '@nodenet/nftables';
import { FileStateStore } from '@nodenet/state';
import type { DaemonConfig } from './config.js';

export interface BackendContext {
  readonly config: DaemonConfig;
  readonly logger: Logger;
}

export type BackendFactory = (context: BackendContext) => Dataplane;

/** The dataplane backends by the name the config's `backend` selects. Adding a backend is one entry here. */
export const BACKENDS: Readonly<Record<string, BackendFactory>> = {
  iproute2: ({ logger }) => new Iproute2Dataplane({ logger }),
};

export const BACKEND_NAMES: readonly string[] = Object.keys(BACKENDS);

export const TOKENS = {
  config: Symbol('DaemonConfig') as InjectionToken<DaemonConfig>,
  logger: Symbol('Logger') as InjectionToken<Logger>,
  dataplane: Symbol('Dataplane') as InjectionToken<Dataplane>,
  packetFilter: Symbol('PacketFilter') as InjectionToken<PacketFilter>,
  stateStore: Symbol('StateStore') as InjectionToken<StateStore>,
} as const;

export interface Adapters {
  readonly dataplane: Dataplane;
  readonly packetFilter: PacketFilter;
  readonly store: StateStore;
}

/** A child container holding the daemon's adapters for `config`. Creating it does no I/O. */
export function createContainer(config: DaemonConfig, logger: Logger & { child(bindings: object): Logger }): DependencyContainer {
  const backend = BACKENDS[config.backend];
  if (!backend) {
    // parseConfig already refuses unknown names; this guards callers that build a config by hand.
    throw new Error(`unknown backend '${config.backend}': valid backends are ${BACKEND_NAMES.join(', ')}`);
  }
  const c = rootContainer.createChildContainer();
  c.register(TOKENS.config, { useValue: config });
  c.register(TOKENS.logger, { useValue: logger });
  c.register(TOKENS.dataplane, {
    useFactory: instanceCachingFactory((d) => backend({ config: d.resolve(TOKENS.config), logger: logger.child({ component: 'dataplane', backend: config.backend }) })),
  });
  c.register(TOKENS.packetFilter, {
    useFactory: instanceCachingFactory(() => new NftPacketFilter({ logger: logger.child({ component: 'nftables' }) })),
  });
  c.register(TOKENS.stateStore, {
    useFactory: instanceCachingFactory((d) => new FileStateStore(d.resolve(TOKENS.config).stateDir)),
  });
  return c;
}

export function resolveAdapters(c: DependencyContainer): Adapters {
  return {
    dataplane: c.resolve(TOKENS.dataplane),
    packetFilter: c.resolve(TOKENS.packetFilter),
    store: c.resolve(TOKENS.stateStore),
  };
}
