/**
 * From the global options to a connection: the target, TLS material read from files, and a client of the
 * Network service plus grpc.health.v1 over the same channel (so both use the same credentials), and a
 * client of the NetworkAdmin extension service with the same target and options.
 */
import { readFile } from 'node:fs/promises';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import {
  createNetworkAdminClient,
  createNetworkClient,
  type CreateNetworkClientOptions,
  type NetworkAdminApiClient,
  type NetworkApiClient,
  type NetworkClientTlsOptions,
} from '@nodenet/api';
import { isUnixTarget } from './parse.js';

/** A mistake on the command line (exit 2), found after parsing (e.g. options that do not go together). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface ConnectionFlags {
  readonly target: string;
  readonly tlsCa?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsServerName?: string;
  readonly insecure?: boolean;
}

export type ReadFile = (path: string) => Promise<Buffer>;

async function readPem(option: string, path: string, read: ReadFile): Promise<Buffer> {
  try {
    return await read(path);
  } catch (e) {
    throw new UsageError(`cannot read the ${option} file '${path}': ${(e as Error).message}`);
  }
}

/** Checks that the options go together and reads the TLS files. */
export async function clientOptions(flags: ConnectionFlags, read: ReadFile = readFile): Promise<CreateNetworkClientOptions> {
  const wantsTls = [flags.tlsCa, flags.tlsCert, flags.tlsKey, flags.tlsServerName].some((v) => v !== undefined);
  if (wantsTls && flags.insecure) {
    throw new UsageError('--insecure means plaintext: leave it out when you give --tls-ca, --tls-cert, --tls-key or --tls-server-name');
  }
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together: give both for a client certificate, or neither');
  }
  if (!wantsTls) {
    if (!isUnixTarget(flags.target) && !flags.insecure) {
      throw new UsageError(
        `target ${flags.target} is TCP: give --tls-ca FILE (and --tls-cert/--tls-key if the daemon requires a client certificate), ` +
          'or --insecure for a daemon configured with insecure: true',
      );
    }
    return flags.insecure ? { insecure: true } : {};
  }
  const tls: NetworkClientTlsOptions = {
    ...(flags.tlsCa !== undefined ? { ca: await readPem('--tls-ca', flags.tlsCa, read) } : {}),
    ...(flags.tlsCert !== undefined ? { cert: await readPem('--tls-cert', flags.tlsCert, read) } : {}),
    ...(flags.tlsKey !== undefined ? { key: await readPem('--tls-key', flags.tlsKey, read) } : {}),
    ...(flags.tlsServerName !== undefined ? { serverName: flags.tlsServerName } : {}),
  };
  return { tls };
}

/** grpc.health.v1 serving status, plus SERVICE_UNKNOWN for a service the daemon does not know (Check's NOT_FOUND). */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

export interface HealthCallOptions {
  readonly deadline: number;
  /** Wait for the channel to connect (until the deadline) instead of failing at once when it cannot. */
  readonly waitForReady?: boolean;
}

/** What the commands use: the Network API, the NetworkAdmin API and the health check of one daemon. */
export interface DaemonConnection {
  readonly network: Pick<NetworkApiClient, 'createContainerNetworkInterface' | 'createInterface' | 'deleteInterface'>;
  readonly admin: Pick<NetworkAdminApiClient, 'inspect' | 'addPeer' | 'removePeer' | 'listPeers'>;
  checkHealth(service: string, options: HealthCallOptions): Promise<ServingStatus>;
  close(): void;
}

export function connect(target: string, options: CreateNetworkClientOptions): DaemonConnection {
  const network = createNetworkClient(target, options);
  // Made on first use: only inspect and peers need it, the other commands pay nothing for it.
  let admin: NetworkAdminApiClient | undefined;
  return {
    network,
    get admin() {
      admin ??= createNetworkAdminClient(target, options);
      return admin;
    },
    checkHealth: async (service, callOptions) => {
      // Loaded on use: grpc-health-check parses its .proto at import (~50 ms the other commands need not pay).
      const check = (await import('grpc-health-check')).service.Check!;
      return new Promise<ServingStatus>((resolve, reject) => {
        // The health request goes over the Network client's channel: same target, same credentials.
        network.raw.makeUnaryRequest<object, { status?: string }>(
          check.path,
          check.requestSerialize,
          check.responseDeserialize as (bytes: Buffer) => { status?: string },
          { service },
          // grpc-js takes wait-for-ready as a metadata option.
          new Metadata({ waitForReady: callOptions.waitForReady ?? false }),
          { deadline: callOptions.deadline },
          (error: ServiceError | null, response?: { status?: string }) => {
            if (error?.code === status.NOT_FOUND) resolve('SERVICE_UNKNOWN');
            else if (error) reject(error);
            else resolve((response?.status ?? 'UNKNOWN') as ServingStatus);
          },
        );
      });
    },
    close: () => {
      network.close();
      admin?.close();
    },
  };
}
