/**
 * The daemon (from dist) under setpriv with its unit's capabilities minus one, in a node namespace: what the
 * kernel refuses for want of that capability reaches a gRPC client as FAILED_PRECONDITION and the CNI socket
 * as code 103, both naming the capability and what to do; nothing of the refused request is left behind.
 */
import { connect } from 'node:net';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DAEMON_CAPABILITY_SET,
  Daemon,
  daemonNodeFlags,
  ipJson,
  link,
  rpcError,
  serverMainPath,
  startOtherUserProcess,
  TestScope,
  Topology,
  withCapabilities,
} from '@nodenet/testkit';

const GATEWAY = '198.19.1.1';
const SUBNET = '198.19.1.0/24';
const WHAT_TO_DO = 'run it as root with CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE (the packaged systemd unit grants them)';

/** One call of the CNI socket's protocol (a JSON line each way), as the plugin makes it. */
function cniCall(socket: string, request: object): Promise<{ result?: unknown; error?: { code: number; msg: string; details?: string } }> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString('utf8')));
    s.on('end', () => {
      try {
        resolve(JSON.parse(answer) as { error?: { code: number; msg: string } });
      } catch (e) {
        reject(new Error(`the CNI socket answered ${JSON.stringify(answer)}`, { cause: e }));
      }
    });
    s.on('error', reject);
    s.end(`${JSON.stringify(request)}\n`);
  });
}

const cniAdd = (daemon: Daemon, containerId: string, netns: string) =>
  cniCall(daemon.cniSocket, {
    command: 'ADD',
    containerId,
    netns,
    ifname: 'eth0',
    args: '',
    path: '',
    config: { cniVersion: '1.0.0', name: 'nodenet', type: 'nodenet', subnet: SUBNET, gateway: GATEWAY },
  });

describe('a daemon missing a capability', () => {
  let scope: TestScope;
  let topo: Topology;

  beforeAll(async () => {
    scope = await TestScope.create();
    topo = await Topology.create(scope, { nodes: 0 });
  });
  afterAll(() => scope?.cleanup());

  /** The repository's daemon with the unit's capabilities except `dropped`. */
  async function daemonWithout(dropped: string): Promise<Daemon> {
    const node = await topo.addNode();
    return Daemon.start({
      scope,
      node,
      command: withCapabilities(
        DAEMON_CAPABILITY_SET.filter((c) => c !== dropped),
        ['node', ...daemonNodeFlags, serverMainPath],
      ),
    });
  }

  it('without CAP_NET_ADMIN: CreateContainerNetworkInterface and a CNI ADD that would create the CNI say so; no bridge is left', async () => {
    const daemon = await daemonWithout('net_admin');
    const failure = await rpcError(daemon.network().createContainerNetworkInterface({ ipAddress: GATEWAY, subNetwork: SUBNET }));
    expect(failure.code).toBe(status.FAILED_PRECONDITION);
    expect(failure.details).toMatch(
      /^nodenetd lacks CAP_NET_ADMIN: create bridge nodenet0: .*Operation not permitted\. It needs CAP_NET_ADMIN for links/,
    );
    expect(failure.details).toContain(WHAT_TO_DO);
    expect(await link(daemon.node.ns, 'nodenet0')).toBeUndefined();

    const answer = await cniAdd(daemon, 'no-net-admin', `/run/netns/${await scope.createNamespace()}`);
    expect(answer.error).toMatchObject({ code: 103, msg: expect.stringMatching(/^nodenetd lacks CAP_NET_ADMIN: /) as unknown });
    expect(answer.error!.msg).toContain(WHAT_TO_DO);
    expect(await link(daemon.node.ns, 'nodenet0')).toBeUndefined();
  });

  it('without CAP_SYS_ADMIN: CreateInterface into a namespace and a CNI ADD say so; no host end is left', async () => {
    const daemon = await daemonWithout('sys_admin');
    await daemon.network().createContainerNetworkInterface({ ipAddress: GATEWAY, subNetwork: SUBNET });
    const failure = await rpcError(
      daemon.network().createInterface({ ipAddress: '198.19.1.2', ports: [], netns: await scope.createNamespace() }),
    );
    expect(failure.code).toBe(status.FAILED_PRECONDITION);
    expect(failure.details).toMatch(
      /^nodenetd lacks CAP_SYS_ADMIN: create veth pair .*Operation not permitted\. It needs CAP_SYS_ADMIN for entering/,
    );
    expect(failure.details).toContain(WHAT_TO_DO);

    const answer = await cniAdd(daemon, 'no-sys-admin', `/run/netns/${await scope.createNamespace()}`);
    expect(answer.error).toMatchObject({
      code: 103,
      msg: expect.stringMatching(/^nodenetd lacks CAP_SYS_ADMIN: /) as unknown,
      details: 'nodenet FAILED_PRECONDITION (CAP_SYS_ADMIN) while trying to attach the container',
    });
    const hostEnds = (await linkNames(daemon.node.ns)).filter((name) => name.startsWith('nnh-') || name.startsWith('nni-'));
    expect(hostEnds).toEqual([]);
  });

  it("without CAP_SYS_PTRACE: CreateInterface into /proc/PID/ns/net of another user's process says so", async () => {
    const daemon = await daemonWithout('sys_ptrace');
    await daemon.network().createContainerNetworkInterface({ ipAddress: GATEWAY, subNetwork: SUBNET });
    const pid = await startOtherUserProcess(scope, await scope.createNamespace());
    const failure = await rpcError(daemon.network().createInterface({ ipAddress: '198.19.1.2', ports: [], netns: `/proc/${pid}/ns/net` }));
    expect(failure.code).toBe(status.FAILED_PRECONDITION);
    expect(failure.details).toMatch(
      new RegExp(`^nodenetd lacks CAP_SYS_PTRACE: .*/proc/${pid}/ns/net.*It needs CAP_SYS_PTRACE for opening`),
    );
    expect(failure.details).toContain(WHAT_TO_DO);
  });
});

/** The names of the links in `ns`. */
async function linkNames(ns: string): Promise<string[]> {
  return (await ipJson<{ ifname: string }[]>(ns, ['link', 'show'])).map((l) => l.ifname);
}
