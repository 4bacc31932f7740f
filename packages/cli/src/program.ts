/**
 * The nodenetctl command line: commander parses, each command makes one connection, calls the daemon and
 * prints. `runCli` never exits the process; it returns the exit code: 0 success, 1 the daemon refused or
 * could not be reached (or is not serving), 2 a usage error.
 */
import { status } from '@grpc/grpc-js';
import { Command, CommanderError, Option } from 'commander';
import type { CreateInterfaceRequest, DeepPartial, PortMapping } from '@nodenet/api';
import { InterfaceKind } from '@nodenet/api';
import { clientOptions, connect, UsageError, type DaemonConnection, type ReadFile } from './connection.js';
import {
  formatCni,
  formatCreateInterface,
  formatDelete,
  formatHealth,
  formatInspect,
  formatPeerChange,
  formatPeers,
  formatRpcError,
  PROGRAM,
  type HealthReport,
} from './format.js';
import {
  collect,
  DEFAULT_TARGET,
  DEFAULT_TIMEOUT_MS,
  MAPPING_SYNTAX,
  normalizeTarget,
  parsePort,
  parsePortMapping,
  parseTimeout,
} from './parse.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** The health services the daemon reports on, in the order shown. */
export const HEALTH_SERVICES: readonly string[] = ['', 'network.Network'];
const HEALTH_POLL_MS = 200;

export interface CliIo {
  readonly writeOut: (s: string) => void;
  readonly writeErr: (s: string) => void;
  /** NODENET_TARGET is read from here. */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly readFile?: ReadFile;
  /** How commands reach the daemon (tests pass a fake). */
  readonly connect?: typeof connect;
}

interface GlobalOptions {
  target: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  insecure?: boolean;
  json?: boolean;
  timeout: number;
}

export interface CreateOptions {
  ip: string;
  port: number[];
  map: PortMapping[];
  netns?: string;
  ifname?: string;
  tap?: boolean;
}

/** The CreateInterface request of `nodenetctl create`'s options (absent extensions stay absent). */
export function createInterfaceRequest(options: CreateOptions): DeepPartial<CreateInterfaceRequest> {
  return {
    ipAddress: options.ip,
    ports: options.port,
    ...(options.map.length > 0 ? { portMappings: options.map } : {}),
    ...(options.netns !== undefined ? { netns: options.netns } : {}),
    ...(options.ifname !== undefined ? { ifname: options.ifname } : {}),
    ...(options.tap ? { kind: InterfaceKind.TAP } : {}),
  };
}

const HELP_AFTER = `
Examples:
  nodenetctl cni create --gateway 198.19.1.1 --subnet 198.19.1.0/24
  nodenetctl create --ip 198.19.1.2 --port 8080 --map 8081:80/tcp --netns web1
  nodenetctl delete nni-c6130102
  nodenetctl health --wait --timeout 10000
  nodenetctl inspect
  nodenetctl peers add --name node-2 --underlay 198.18.0.2 --subnet 198.19.2.0/24
  nodenetctl peers
  nodenetctl peers remove node-2
  nodenetctl --target 10.0.0.5:7443 --tls-ca ca.pem --tls-cert me.pem --tls-key me.key health

Exit codes: 0 success; 1 the daemon refused the request or could not be reached (stderr:
"nodenetctl: <gRPC status>: <message>"), or health is not SERVING; 2 a usage error.
`;

function isServiceError(e: unknown): e is { code: status; details?: string; message: string } {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'number';
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs nodenetctl with `args` (the arguments after the program name) and returns the exit code. */
export async function runCli(args: readonly string[], io: CliIo): Promise<number> {
  let exitCode = EXIT_OK;
  const out = io.writeOut;
  const err = io.writeErr;
  const program = new Command(PROGRAM)
    .description('Command-line client of nodenetd, the nodenet per-node network daemon (its gRPC API).')
    .addOption(
      new Option('--target <target>', 'the daemon: unix:///PATH, /PATH (a unix socket) or HOST:PORT; env NODENET_TARGET')
        .default(io.env.NODENET_TARGET || DEFAULT_TARGET)
        .argParser(normalizeTarget),
    )
    .option('--tls-ca <file>', "CA certificate (PEM) that signed the daemon's certificate: connect with TLS")
    .option('--tls-cert <file>', 'client certificate (PEM), for a daemon that requires one; needs --tls-key')
    .option('--tls-key <file>', 'private key (PEM) of --tls-cert')
    .option('--tls-server-name <name>', "check the daemon's certificate for this name instead of the target's host")
    .option('--insecure', 'plaintext to a HOST:PORT target (a daemon configured with insecure: true)')
    .option('--json', 'print results as JSON (the proto3 JSON form of the response)')
    .option('--timeout <ms>', `deadline of each call in milliseconds (health --wait: of the whole wait)`, parseTimeout, DEFAULT_TIMEOUT_MS)
    .helpOption('-h, --help', 'show help')
    .addHelpText('after', HELP_AFTER)
    .exitOverride()
    .configureOutput({
      writeOut: out,
      writeErr: err,
      outputError: (s, write) => write(`${PROGRAM}: ${s.replace(/^error: /, '')}`),
    });

  /** Opens a connection for one command, runs it, closes the connection. */
  async function withDaemon(command: Command, work: (daemon: DaemonConnection, global: GlobalOptions) => Promise<void>): Promise<void> {
    const global = command.optsWithGlobals<GlobalOptions>();
    const options = await clientOptions(global, io.readFile);
    const daemon = (io.connect ?? connect)(global.target, options);
    try {
      await work(daemon, global);
    } finally {
      daemon.close();
    }
  }

  const cni = program.command('cni').description("the node's bridge (the CNI)");
  cni
    .command('create')
    .description("create the node's bridge with the gateway address in the node's instance subnet; prints its name")
    .requiredOption('--gateway <address>', "the node's gateway address for its instances, e.g. 198.19.1.1")
    .requiredOption('--subnet <cidr>', "the node's instance subnet, e.g. 198.19.1.0/24")
    .action(async (options: { gateway: string; subnet: string }, command: Command) => {
      await withDaemon(command, async (daemon, global) => {
        const response = await daemon.network.createContainerNetworkInterface(
          { ipAddress: options.gateway, subNetwork: options.subnet },
          { timeoutMs: global.timeout },
        );
        out(formatCni(response, global.json ?? false));
      });
    });

  program
    .command('create')
    .description('create an instance interface joined to the bridge; prints its handle and details')
    .requiredOption('--ip <address>', "the instance's address in the node's subnet")
    .option(
      '--port <port>',
      "publish this port (TCP and UDP) on the node's addresses; repeatable",
      collect((v) => parsePort(v)),
      [],
    )
    .option(
      `--map <${MAPPING_SYNTAX}>`,
      'publish HOST_PORT on the node (on HOST_ADDRESS only, if given) to INSTANCE_PORT (default the same) for tcp, udp or (default) both; repeatable',
      collect(parsePortMapping),
      [],
    )
    .option('--netns <namespace>', 'move the interface into this namespace (a name under /run/netns or a path) and configure it')
    .option('--ifname <name>', "the interface's name inside --netns (default eth0)")
    .option('--tap', 'a TAP device for a VM instead of a veth pair')
    .action(async (options: CreateOptions, command: Command) => {
      await withDaemon(command, async (daemon, global) => {
        const response = await daemon.network.createInterface(createInterfaceRequest(options), { timeoutMs: global.timeout });
        out(formatCreateInterface(response, global.json ?? false));
      });
    });

  program
    .command('delete')
    .description('delete an instance interface, its published ports and filtering rules')
    .argument('<handle>', "the interface's handle (nni-XXXXXXXX), as create printed it")
    .action(async (handle: string, _options: unknown, command: Command) => {
      await withDaemon(command, async (daemon, global) => {
        await daemon.network.deleteInterface({ interfaceName: handle }, { timeoutMs: global.timeout });
        out(formatDelete(handle, global.json ?? false));
      });
    });

  program
    .command('inspect')
    .description('the node: its CNI, instance interfaces (present or missing in the kernel), peers and last reconcile')
    .action(async (_options: unknown, command: Command) => {
      await withDaemon(command, async (daemon, global) => {
        const response = await daemon.admin.inspect({ timeoutMs: global.timeout });
        out(formatInspect(response, global.json ?? false));
      });
    });

  const peers = program.command('peers').description('the cluster peers: list them (the default), or add and remove static ones');
  peers
    .command('list', { isDefault: true })
    .description('the peers membership knows and whether their routes are programmed')
    // As the default command it receives whatever followed `peers`: name a mistyped subcommand as such
    // instead of commander's "too many arguments for 'list'".
    .allowExcessArguments(true)
    .action(async (_options: unknown, command: Command) => {
      if (command.args.length > 0) {
        command.error(`unknown command 'peers ${command.args[0]}': use peers [list], peers add or peers remove`, { exitCode: EXIT_USAGE });
      }
      await withDaemon(command, async (daemon, global) => {
        out(formatPeers(await daemon.admin.listPeers({ timeoutMs: global.timeout }), global.json ?? false));
      });
    });
  peers
    .command('add')
    .description('add (or update) a peer of a static-membership daemon; its subnet gets routes through the overlay')
    .requiredOption('--name <name>', "the peer's node name")
    .requiredOption('--underlay <address>', "the peer's underlay address, e.g. 198.18.0.2")
    .requiredOption('--subnet <cidr>', "the peer's instance subnet, e.g. 198.19.2.0/24")
    .action(async (options: { name: string; underlay: string; subnet: string }, command: Command) => {
      await withDaemon(command, async (daemon, global) => {
        await daemon.admin.addPeer(
          { name: options.name, underlayAddress: options.underlay, subnet: options.subnet },
          { timeoutMs: global.timeout },
        );
        out(formatPeerChange('added', options.name, global.json ?? false));
      });
    });
  peers
    .command('remove')
    .description('remove a peer of a static-membership daemon (its routes go); removing an absent peer succeeds')
    .argument('<name>', "the peer's node name")
    .action(async (name: string, _options: unknown, command: Command) => {
      await withDaemon(command, async (daemon, global) => {
        await daemon.admin.removePeer({ name }, { timeoutMs: global.timeout });
        out(formatPeerChange('removed', name, global.json ?? false));
      });
    });

  program
    .command('health')
    .description(`grpc.health.v1 Check of "" and "network.Network"; exit 0 only when both are SERVING`)
    .option('--wait', 'wait (up to --timeout) until the daemon is reachable and SERVING')
    .action(async (options: { wait?: boolean }, command: Command) => {
      await withDaemon(command, async (daemon, global) => {
        const deadline = Date.now() + global.timeout;
        const checkAll = async (): Promise<HealthReport[]> =>
          Promise.all(
            HEALTH_SERVICES.map(async (service) => ({
              service,
              status: await daemon.checkHealth(service, { deadline, waitForReady: options.wait ?? false }),
            })),
          );
        let reports: HealthReport[];
        for (;;) {
          try {
            reports = await checkAll();
          } catch (e) {
            if (options.wait && isServiceError(e) && e.code === status.DEADLINE_EXCEEDED) {
              // Waited for the connection until the deadline: say so instead of grpc-js's channel internals.
              throw Object.assign(new Error(e.message), {
                code: e.code,
                details: `no answer from ${global.target} within ${global.timeout} ms`,
              });
            }
            // While waiting, a daemon that is still starting may refuse or drop the connection: try again.
            if (!options.wait || Date.now() + HEALTH_POLL_MS >= deadline) throw e;
            await sleep(HEALTH_POLL_MS);
            continue;
          }
          const serving = reports.every((r) => r.status === 'SERVING');
          if (serving || !options.wait || Date.now() + HEALTH_POLL_MS >= deadline) break;
          await sleep(HEALTH_POLL_MS);
        }
        out(formatHealth(reports, global.json ?? false));
        const notServing = reports.filter((r) => r.status !== 'SERVING');
        if (notServing.length > 0) {
          err(`${PROGRAM}: not serving: ${notServing.map((r) => `${r.service === '' ? '""' : r.service} is ${r.status}`).join(', ')}\n`);
          exitCode = EXIT_FAILED;
        }
      });
    });

  try {
    await program.parseAsync([...args], { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help / help: 0. Everything else commander stops on (unknown option, missing value or command) is usage.
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (e instanceof UsageError) {
      err(`${PROGRAM}: ${e.message}\n`);
      return EXIT_USAGE;
    }
    if (isServiceError(e)) {
      err(formatRpcError(e));
      return EXIT_FAILED;
    }
    err(`${PROGRAM}: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT_FAILED;
  }
}
