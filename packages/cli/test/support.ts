/** A fake daemon connection and an in-memory stdout/stderr for running nodenetctl without a daemon. */
import type { CreateNetworkClientOptions } from '@nodenet/api';
import type { DaemonConnection, ServingStatus } from '../src/connection.js';
import { runCli } from '../src/program.js';

export interface Call {
  readonly method: string;
  readonly request: unknown;
  readonly options: unknown;
}

export interface FakeDaemon {
  /** Answers by method name; a function may throw (reject) to simulate a gRPC failure. */
  readonly answers: Record<string, (request: unknown) => unknown>;
  /** Health status per service name, or a function of the attempt number (0, 1, ...). */
  health: (service: string, attempt: number) => ServingStatus;
  readonly calls: Call[];
  readonly connections: Array<{ target: string; options: CreateNetworkClientOptions; closed: boolean }>;
}

export function fakeDaemon(answers: FakeDaemon['answers'] = {}): FakeDaemon {
  return { answers, health: () => 'SERVING', calls: [], connections: [] };
}

/** A rejection shaped as grpc-js shapes a failed call. */
export function grpcError(code: number, details: string): Error {
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata: {} });
}

export interface CliRun {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export async function run(
  args: string[],
  daemon: FakeDaemon = fakeDaemon(),
  options: { env?: Record<string, string>; files?: Record<string, string> } = {},
): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const healthAttempts = new Map<string, number>();
  const exitCode = await runCli(args, {
    writeOut: (s) => (stdout += s),
    writeErr: (s) => (stderr += s),
    env: options.env ?? {},
    readFile: async (path) => {
      const content = options.files?.[path];
      if (content === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`);
      return Buffer.from(content);
    },
    connect: (target, clientOptions): DaemonConnection => {
      const connection = { target, options: clientOptions, closed: false };
      daemon.connections.push(connection);
      const answer = (method: string, request: unknown, callOptions: unknown): unknown => {
        daemon.calls.push({ method, request, options: callOptions });
        const answerOf = daemon.answers[method];
        if (!answerOf) throw new Error(`the fake daemon has no answer for ${method}`);
        return answerOf(request);
      };
      const call = (method: string) => async (request: unknown, callOptions: unknown) => answer(method, request, callOptions);
      // Inspect and ListPeers take no request: recorded as undefined.
      const callWithoutRequest = (method: string) => async (callOptions: unknown) => answer(method, undefined, callOptions);
      return {
        network: {
          createContainerNetworkInterface: call('createContainerNetworkInterface') as never,
          createInterface: call('createInterface') as never,
          deleteInterface: call('deleteInterface') as never,
        },
        admin: {
          inspect: callWithoutRequest('inspect') as never,
          listPeers: callWithoutRequest('listPeers') as never,
          addPeer: call('addPeer') as never,
          removePeer: call('removePeer') as never,
        },
        checkHealth: async (service, callOptions) => {
          daemon.calls.push({ method: 'checkHealth', request: service, options: callOptions });
          const attempt = healthAttempts.get(service) ?? 0;
          healthAttempts.set(service, attempt + 1);
          return daemon.health(service, attempt);
        },
        close: () => {
          connection.closed = true;
        },
      };
    },
  });
  return { exitCode, stdout, stderr };
}
