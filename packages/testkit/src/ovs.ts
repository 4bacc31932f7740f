/**
 * A private Open vSwitch for one node namespace: its own database and run directory (a temp dir of the
 * scope), ovsdb-server and ovs-vswitchd started inside the namespace (this kernel has no openvswitch module:
 * bridges use the userspace datapath, `netdev`). The scope's cleanup stops both. The database file stays
 * in the directory, so start() after stop() (or after the namespace was rebuilt, as a reboot does) brings
 * back the same configuration, as a host's OVS does at boot.
 */
import { readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { exec, assertNamespaceName, type ExecResult } from './exec.js';
import type { TestScope } from './scope.js';

const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';

export interface OvsConfig {
  readonly db: string;
  readonly runDir: string;
  readonly datapathType: 'netdev';
}

export class PrivateOvs {
  private constructor(
    readonly scope: TestScope,
    /** The node namespace both daemons run in. */
    readonly ns: string,
    /** Database, sockets, pid files and logs. */
    readonly dir: string,
  ) {}

  /** Creates the database and starts ovsdb-server and ovs-vswitchd inside `ns`. */
  static async start(scope: TestScope, ns: string): Promise<PrivateOvs> {
    assertNamespaceName(ns);
    const dir = await scope.createTempDir();
    await exec('ovsdb-tool', ['create', join(dir, 'conf.db'), SCHEMA]);
    const ovs = new PrivateOvs(scope, ns, dir);
    scope.defer(`stop the private Open vSwitch in ${ns}`, () => ovs.stop('kill'));
    await ovs.start();
    return ovs;
  }

  /** `unix:DIR/db.sock`: the daemon's `ovs.db`. */
  get db(): string {
    return `unix:${join(this.dir, 'db.sock')}`;
  }

  /** The daemon's `ovs` config section. */
  get config(): OvsConfig {
    return { db: this.db, runDir: this.dir, datapathType: 'netdev' };
  }

  /** ovs-vswitchd's control socket (fixed path: started with --unixctl). */
  get vswitchdControl(): string {
    return join(this.dir, 'ovs-vswitchd.ctl');
  }

  /** Starts ovsdb-server (unless running) and ovs-vswitchd (unless running) in the namespace. */
  async start(): Promise<void> {
    if (!(await this.running('ovsdb-server'))) {
      await this.inNamespace('ovsdb-server', [
        join(this.dir, 'conf.db'),
        `--remote=punix:${join(this.dir, 'db.sock')}`,
        `--pidfile=${join(this.dir, 'ovsdb-server.pid')}`,
        `--unixctl=${join(this.dir, 'ovsdb-server.ctl')}`,
        `--log-file=${join(this.dir, 'ovsdb-server.log')}`,
        '--detach',
        '--no-chdir',
      ]);
      await this.vsctl(['--no-wait', 'init']);
      await this.track('ovsdb-server');
    }
    await this.startSwitch();
  }

  /** Starts ovs-vswitchd alone (e.g. after stopSwitch, to test a restart under a running daemon). */
  async startSwitch(): Promise<void> {
    if (await this.running('ovs-vswitchd')) return;
    await this.inNamespace('ovs-vswitchd', [
      this.db,
      `--pidfile=${join(this.dir, 'ovs-vswitchd.pid')}`,
      `--unixctl=${this.vswitchdControl}`,
      `--log-file=${join(this.dir, 'ovs-vswitchd.log')}`,
      '--detach',
      '--no-chdir',
    ]);
    await this.track('ovs-vswitchd');
  }

  /**
   * Stops ovs-vswitchd: `exit` as a service stop does (flows are gone, ports stay in the database and the
   * kernel), or `kill` (SIGKILL, as a crash).
   */
  async stopSwitch(how: 'exit' | 'kill' = 'exit'): Promise<void> {
    await this.stopDaemon('ovs-vswitchd', how);
  }

  /** Stops both daemons. */
  async stop(how: 'exit' | 'kill' = 'exit'): Promise<void> {
    await this.stopDaemon('ovs-vswitchd', how);
    await this.stopDaemon('ovsdb-server', how);
  }

  /**
   * Replaces the database with an empty one, as a reinstall that lost conf.db would (stop both daemons
   * first; start() brings them up on it).
   */
  async resetDatabase(): Promise<void> {
    if ((await this.running('ovsdb-server')) || (await this.running('ovs-vswitchd')))
      throw new Error('stop Open vSwitch before resetting its database');
    await rm(join(this.dir, 'conf.db'), { force: true });
    await exec('ovsdb-tool', ['create', join(this.dir, 'conf.db'), SCHEMA]);
  }

  /** `ovs-vsctl --db=... ARGS`. */
  vsctl(args: readonly string[]): Promise<ExecResult> {
    return exec('ovs-vsctl', [`--db=${this.db}`, '--timeout=10', ...args]);
  }

  /** `ovs-ofctl -O OpenFlow15 COMMAND unix:DIR/BRIDGE.mgmt ARGS` (e.g. dump-flows). */
  ofctl(command: string, bridge: string, args: readonly string[] = []): Promise<ExecResult> {
    return exec('ovs-ofctl', ['-O', 'OpenFlow15', command, `unix:${join(this.dir, `${bridge}.mgmt`)}`, ...args]);
  }

  /** The flows of a bridge, one per line, without statistics. */
  async flows(bridge: string): Promise<string[]> {
    const out = (await this.ofctl('dump-flows', bridge, ['--no-stats'])).stdout;
    return out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('cookie=') || l.startsWith('table=') || l.startsWith('priority='));
  }

  /** A daemon's log (for failure messages). */
  async log(daemon: 'ovsdb-server' | 'ovs-vswitchd'): Promise<string> {
    return readFile(join(this.dir, `${daemon}.log`), 'utf8').catch(() => '');
  }

  private inNamespace(program: string, args: readonly string[]): Promise<ExecResult> {
    const env = ['OVS_RUNDIR', 'OVS_LOGDIR', 'OVS_DBDIR', 'OVS_SYSCONFDIR'].map((k) => `${k}=${this.dir}`);
    return exec('ip', ['netns', 'exec', this.ns, 'env', ...env, program, ...args], { timeoutMs: 30_000 });
  }

  private async pidOf(daemon: string): Promise<number | undefined> {
    const text = await readFile(join(this.dir, `${daemon}.pid`), 'utf8').catch(() => '');
    const pid = Number(text.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }

  private async running(daemon: string): Promise<boolean> {
    const pid = await this.pidOf(daemon);
    return pid !== undefined && alive(pid);
  }

  private async track(daemon: string): Promise<void> {
    this.scope.trackPid(await this.pidOf(daemon));
  }

  private async stopDaemon(daemon: 'ovsdb-server' | 'ovs-vswitchd', how: 'exit' | 'kill'): Promise<void> {
    const pid = await this.pidOf(daemon);
    if (pid === undefined || !alive(pid)) return;
    if (how === 'exit') {
      await exec('ovs-appctl', ['-t', join(this.dir, `${daemon}.ctl`), 'exit'], { allowFailure: true, timeoutMs: 10_000 });
    } else {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    const deadline = Date.now() + 10_000;
    while (alive(pid)) {
      if (Date.now() > deadline) {
        process.kill(pid, 'SIGKILL');
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    this.scope.untrackPid(pid);
  }
}

/** Whether `pid` runs (a zombie left for a parent to reap does not count). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIOCETHTOOL / ETHTOOL_STXCSUM off, for the interfaces named as arguments (perl: Node has no ioctl). */
const TX_CHECKSUM_OFF_PERL =
  'use Socket; socket(my $s, AF_INET, SOCK_DGRAM, 0) or die "socket: $!\\n"; ' +
  'for my $if (@ARGV) { my $v = pack("LL", 0x17, 0); ioctl($s, 0x8946, pack("Z16 P x16", $if, $v)) or die "$if: $!\\n"; }';

/**
 * Makes the test underlay deliver complete checksums into a node, as a physical NIC does. The topology's
 * underlay is veth pairs: a packet another namespace sends keeps a partial checksum ("offloaded") across
 * them, which the kernel completes only where it leaves for real hardware. The userspace datapath reads the
 * node's underlay interface through a packet socket and would get such packets unfinished (TCP and UDP to
 * the node then fail its checksum check once ovs-vswitchd moved the interface into its uplink bridge). With
 * transmit checksum offload off on the far end of the node's underlay veth, the kernel completes every
 * packet before it enters the node. Run after the node namespace is made (and again after it is rebuilt).
 */
export async function completeUnderlayChecksums(nodeNs: string, ifname = 'eth0'): Promise<void> {
  assertNamespaceName(nodeNs);
  const [linkOut, idsOut] = await Promise.all([
    exec('ip', ['-n', nodeNs, '-j', 'link', 'show', 'dev', ifname]),
    exec('ip', ['-n', nodeNs, '-j', 'netns', 'list-id']),
  ]);
  const link = (JSON.parse(linkOut.stdout) as Array<{ link_index?: number; link_netnsid?: number }>)[0];
  const peerNs = (JSON.parse(idsOut.stdout || '[]') as Array<{ nsid: number; name?: string }>).find(
    (n) => n.nsid === link?.link_netnsid,
  )?.name;
  if (link?.link_index === undefined || peerNs === undefined)
    throw new Error(`${ifname} in ${nodeNs} is not a veth whose peer is in a named namespace`);
  const peers = JSON.parse((await exec('ip', ['-n', peerNs, '-j', 'link', 'show'])).stdout) as Array<{ ifindex: number; ifname: string }>;
  const peer = peers.find((l) => l.ifindex === link.link_index);
  if (!peer) throw new Error(`the peer of ${ifname} in ${nodeNs} (ifindex ${link.link_index} in ${peerNs}) was not found`);
  await exec('ip', ['netns', 'exec', peerNs, 'perl', '-e', TX_CHECKSUM_OFF_PERL, '--', peer.ifname]);
}

/** Starts a private Open vSwitch in `ns` (see PrivateOvs). */
export function startPrivateOvs(scope: TestScope, ns: string): Promise<PrivateOvs> {
  return PrivateOvs.start(scope, ns);
}
