/** The command line of `nodenetd`: flags override the config file's keys; `--help` documents both. */
import { Command, CommanderError } from 'commander';
import { DEFAULT_CNI_LISTEN, DEFAULT_LISTEN, DEFAULT_STATE_DIR, LOG_LEVELS, type FlagOverrides } from './config.js';

export interface CommandLine {
  readonly configFile?: string;
  readonly flags: FlagOverrides;
}

/** What `parseCommandLine` decided: run with these settings, or exit now (after --help / --version). */
export type CommandLineResult =
  { readonly action: 'run'; readonly commandLine: CommandLine } | { readonly action: 'exit'; readonly exitCode: number };

export function configHelp(backends: readonly string[]): string {
  return `
Configuration file (YAML; JSON is valid YAML). Every key is optional; unknown keys are errors.
Relative paths in the file are relative to the file's directory.

  nodeName: node-1              this node's name. Default: the host name
  underlayAddress: 198.18.0.1   the node's address on the underlay. Default: the source
                                address of the default route
  listen: ${DEFAULT_LISTEN}
                                where the gRPC API listens: unix:///PATH (socket mode 0600)
                                or HOST:PORT (TCP: needs tls, or insecure: true)
  insecure: false               allow a TCP listen without TLS (trusted networks only)
  tls:                          TLS for a TCP listen
    cert: FILE                  the server certificate (PEM)
    key: FILE                   its private key (PEM)
    ca: FILE                    optional: clients must present a certificate signed by it (mTLS)
    allow:                      optional, with ca: the client identities each service admits
      Network: [CN=orchestrator]          CN=NAME, DNS:NAME or URI:URI; a service not listed
      NetworkAdmin: [DNS:ops.example.org] admits every client the CA signed
  backend: iproute2             the dataplane backend; this build has: ${backends.join(' | ')}
  stateDir: ${DEFAULT_STATE_DIR.padEnd(20)}where the daemon records what it created
  reservedPorts: []             ports instances may not publish (besides the overlay's UDP
                                port and the daemon's own TCP port)
  overlay:
    mode: vxlan                 vxlan | host-gw (plain routes; nodes share one L2 segment)
    vni: 4242                   VXLAN network identifier, 1..16777215
    port: 4789                  VXLAN UDP port, 1..65535
  membership:
    type: static                static | etcd
    peers:                      static: the other nodes
      - { name: node-2, underlayAddress: 198.18.0.2, subnet: 198.19.2.0/24 }
    etcd:
      endpoints: [http://127.0.0.1:2379]
      prefix: /nodenet
      leaseTtlSeconds: 15
      restartGraceSeconds: 60   a graceful stop leaves the record this long, so a restart keeps peers' routes (0: off)
      tls:                      optional, https:// endpoints only (paths relative to the config file)
        ca: FILE                verifies etcd's certificate (default: the system's roots)
        cert: FILE              with key: this node's client certificate (PEM)
        key: FILE               its private key (PEM, unencrypted)
  ovs:                          settings of the ovs backend
    db: unix:/var/run/openvswitch/db.sock
    runDir: /var/run/openvswitch
    datapathType: system        system | netdev
  logLevel: info                ${LOG_LEVELS.join(' | ')}
  reconcileIntervalSeconds: 30  how often to compare what nodenet owns with its records and repair drift
  metrics:                      the Prometheus endpoint (GET /metrics)
    listen: 127.0.0.1:9842      HOST:PORT; "" turns it off
    tls:                        optional, like the API's tls (with ca: scrapers need a client certificate)
      cert: FILE
      key: FILE
      ca: FILE
  socketMode: "0600"            the unix socket's mode, quoted octal (0660 with socketGroup); never
                                world-accessible
  socketGroup: nodenet          optional: the unix socket's group (name or gid); its members may call
  limits:
    maxInFlight: 256            calls served at once; one more gets RESOURCE_EXHAUSTED at once
    maxMessageBytes: 65536      the largest request accepted; a larger one gets RESOURCE_EXHAUSTED
  cni:
    listen: ${DEFAULT_CNI_LISTEN}
                                the socket the CNI plugin (type nodenet) calls, mode 0600; "" turns
                                it off. Default: cni.sock beside the API's unix socket
  repairOnChange: true          repair within a second of a change to what nodenet owns (kernel and OVS notifications)
  ipv6Masquerade: true          masquerade instances' IPv6 traffic leaving the cluster; false for routed global prefixes

Flags override the file. Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when the start
fails at run time, 2 for a bad flag or config (nothing is changed then).
`;
}

export interface ParseCommandLineOptions {
  /** Where help and errors go (default: process.stdout / process.stderr). */
  readonly writeOut?: (s: string) => void;
  readonly writeErr?: (s: string) => void;
  /** The backend names to document (the wiring's registry). */
  readonly backends?: readonly string[];
}

/** Parses argv (as process.argv: node, script, args...). Never exits the process itself. */
export function parseCommandLine(argv: readonly string[], options: ParseCommandLineOptions = {}): CommandLineResult {
  const writeOut = options.writeOut ?? ((s: string) => void process.stdout.write(s));
  const writeErr = options.writeErr ?? ((s: string) => void process.stderr.write(s));
  const program = new Command('nodenetd')
    .description('nodenet: the per-node network daemon (gRPC API for the node bridge, instance interfaces and published ports)')
    .option('-c, --config <file>', 'the YAML config file (without it the daemon runs on defaults)')
    .option('--listen <address>', `listen address: unix:///PATH or HOST:PORT (config: listen; default ${DEFAULT_LISTEN})`)
    .option('--backend <name>', 'dataplane backend (config: backend; default iproute2)')
    .option('--state-dir <dir>', `state directory (config: stateDir; default ${DEFAULT_STATE_DIR})`)
    .option('--node-name <name>', "this node's name (config: nodeName; default the host name)")
    .option(
      '--underlay-address <address>',
      "the node's underlay IPv4 address (config: underlayAddress; default the default route's source)",
    )
    .option(
      '--cni-listen <address>',
      `the CNI plugin's socket: unix:///PATH, or "" for none (config: cni.listen; default ${DEFAULT_CNI_LISTEN})`,
    )
    .option('--log-level <level>', `log level: ${LOG_LEVELS.join(', ')} (config: logLevel; default info)`)
    .option('--metrics-listen <address>', 'Prometheus endpoint: HOST:PORT, or "" for none (config: metrics.listen; default 127.0.0.1:9842)')
    .helpOption('-h, --help', 'show this help')
    .addHelpText('after', configHelp(options.backends ?? ['iproute2']))
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({
      writeOut,
      writeErr,
      outputError: (s, write) => write(`nodenetd: ${s.replace(/^error: /, '')}`),
    });
  try {
    program.parse([...argv]);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version') {
        return { action: 'exit', exitCode: 0 };
      }
      // Usage errors are configuration errors: exit code 2, like a bad config key.
      return { action: 'exit', exitCode: 2 };
    }
    throw e;
  }
  const o = program.opts<Record<string, string | undefined>>();
  const flags: FlagOverrides = {};
  for (const k of ['listen', 'backend', 'stateDir', 'nodeName', 'underlayAddress', 'logLevel', 'metricsListen', 'cniListen'] as const) {
    if (o[k] !== undefined) flags[k] = o[k];
  }
  return { action: 'run', commandLine: { ...(o.config !== undefined ? { configFile: o.config } : {}), flags } };
}
