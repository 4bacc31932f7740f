/**
 * The whole API once through a daemon, as an operator's node uses it: the CNI, a veth into a namespace with a
 * published port reached from another host (the world namespace), a TAP, and both deleted. Used to check a
 * packaged daemon and the capability set of its unit. Each step is named, so a failure says which one.
 */
import { InterfaceKind, Protocol } from '@nodenet/api';
import { echo, link, ping, startEchoServers, startOtherUserProcess, type Daemon, type TestScope, type Topology } from '@nodenet/testkit';

export const GATEWAY = '198.19.1.1';
export const SUBNET = '198.19.1.0/24';
export const PUBLISHED_PORT = 8081;

export class WalkStepFailed extends Error {
  constructor(
    readonly step: string,
    cause: unknown,
  ) {
    super(`${step}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'WalkStepFailed';
  }
}

async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw new WalkStepFailed(name, e);
  }
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/** Runs the walk; throws WalkStepFailed naming the first step that failed. `hostOctet` picks the addresses. */
export async function walkTheApi(scope: TestScope, topology: Topology, daemon: Daemon, hostOctet = 2): Promise<void> {
  const api = daemon.network();
  const node = daemon.node;
  await step('CreateContainerNetworkInterface', async () => {
    const r = await api.createContainerNetworkInterface({ ipAddress: GATEWAY, subNetwork: SUBNET });
    check(r.interfaceName === 'nodenet0', `answered ${r.interfaceName}`);
  });

  const instanceNs = await scope.createNamespace();
  await startEchoServers(scope, instanceNs, 80);
  const address = `198.19.1.${hostOctet}`;
  const veth = await step('CreateInterface (veth into a namespace, a published port)', async () => {
    const r = await api.createInterface({
      ipAddress: address,
      ports: [],
      netns: instanceNs,
      portMappings: [{ hostPort: PUBLISHED_PORT, instancePort: 80, protocol: Protocol.TCP }],
    });
    check(/^nni-[0-9a-f]{8}$/.test(r.interfaceName), `answered the handle ${r.interfaceName}`);
    return r.interfaceName;
  });
  await step('the instance reaches its gateway', async () => {
    const r = await ping(instanceNs, GATEWAY, { count: 1, timeoutSec: 3 });
    check(r.ok, r.output);
  });
  await step('the published port answers from another host', async () => {
    const r = await echo(topology.world.ns, { protocol: 'tcp', host: node.address, port: PUBLISHED_PORT, timeoutMs: 5000 });
    check(r.ok, r.error ?? `reply ${String(r.reply)}`);
  });

  // A namespace named by /proc/PID/ns/net of a process of another user (a container running as non-root).
  const otherUserNs = await scope.createNamespace();
  const holder = await startOtherUserProcess(scope, otherUserNs);
  const byPid = await step("CreateInterface (veth into /proc/PID/ns/net of another user's process)", async () => {
    const r = await api.createInterface({ ipAddress: `198.19.1.${hostOctet + 2}`, ports: [], netns: `/proc/${holder}/ns/net` });
    return r.interfaceName;
  });

  const tap = await step('CreateInterface (TAP)', async () => {
    const r = await api.createInterface({ ipAddress: `198.19.1.${hostOctet + 1}`, ports: [], kind: InterfaceKind.TAP });
    check((await link(node.ns, r.interfaceName))?.linkinfo?.info_kind === 'tun', `${r.interfaceName} is not a TAP in ${node.ns}`);
    return r.interfaceName;
  });

  for (const handle of [veth, byPid, tap]) {
    await step(`DeleteInterface ${handle}`, async () => {
      await api.deleteInterface({ interfaceName: handle });
      check((await link(node.ns, handle)) === undefined, `${handle} is still in ${node.ns}`);
    });
  }
  await step('the published port is gone', async () => {
    const r = await echo(topology.world.ns, { protocol: 'tcp', host: node.address, port: PUBLISHED_PORT, timeoutMs: 1000 });
    check(!r.ok, 'it still answers');
  });
}
