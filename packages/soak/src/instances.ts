/**
 * The soak's live instances: each in its own namespace with a TCP and a UDP echo server (socat) on its
 * published port. Addresses are reused from a fixed pool so that a long churn never runs out; the port of
 * an instance follows from its address (20000 + last octet), so host ports are reused too.
 */
import { destroyNamespace, exec, nextName, startSocatEcho, type SocatEchoServer, type TestScope } from '@nodenet/testkit';
import type { ClusterNode } from '@nodenet/conformance';

export interface SoakInstance {
  readonly address: string;
  readonly port: number;
  readonly ns: string;
  readonly handle: string;
  /** The host end of its veth pair in the node namespace. */
  readonly hostInterface: string;
  readonly servers: readonly SocatEchoServer[];
}

/** First host number of the pool in the node's /24 (.1 is the gateway). */
const FIRST_HOST = 10;
const PORT_BASE = 20000;

export class InstancePool {
  readonly live: SoakInstance[] = [];
  private readonly free: number[];
  /** Namespaces made and not yet removed (a crash leaves them to the testkit's stale sweep: nnt-<pid>-...). */
  private readonly namespaces = new Set<string>();

  constructor(
    private readonly scope: TestScope,
    private readonly node: ClusterNode,
    size: number,
  ) {
    if (FIRST_HOST + size > 254) throw new Error(`at most ${254 - FIRST_HOST} instances fit in a node's /24`);
    this.free = Array.from({ length: size }, (_, i) => FIRST_HOST + i);
    scope.defer('soak instance namespaces', async () => {
      for (const ns of this.namespaces) await destroyNamespace(ns);
      this.namespaces.clear();
    });
  }

  get size(): number {
    return this.live.length;
  }

  async create(): Promise<SoakInstance> {
    const host = this.free.shift();
    if (host === undefined) throw new Error('the address pool is exhausted (more live instances than the pool holds)');
    const address = `198.19.${this.node.index}.${host}`;
    const port = PORT_BASE + host;
    const ns = nextName();
    this.namespaces.add(ns);
    try {
      await exec('ip', ['netns', 'add', ns]);
      await exec('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      const response = await this.node.api.createInterface({ ipAddress: address, ports: [port], netns: ns });
      const servers = await Promise.all([startSocatEcho(this.scope, ns, 'tcp', port), startSocatEcho(this.scope, ns, 'udp', port)]);
      const instance: SoakInstance = {
        address,
        port,
        ns,
        handle: response.interfaceName,
        hostInterface: response.hostInterfaceName ?? '',
        servers,
      };
      this.live.push(instance);
      return instance;
    } catch (e) {
      this.free.push(host);
      await destroyNamespace(ns).catch(() => undefined);
      this.namespaces.delete(ns);
      throw e;
    }
  }

  /** DeleteInterface, then its servers and namespace go. */
  async delete(instance: SoakInstance): Promise<void> {
    await this.node.api.deleteInterface({ interfaceName: instance.handle });
    this.live.splice(this.live.indexOf(instance), 1);
    this.free.push(Number(instance.address.split('.')[3]));
    await Promise.all(instance.servers.map((s) => s.stop()));
    await destroyNamespace(instance.ns);
    this.namespaces.delete(instance.ns);
  }
}
