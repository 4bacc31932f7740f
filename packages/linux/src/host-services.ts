/**
 * The host's services for the daemon, the same for every backend (the underlay and the namespaces are the
 * kernel's, whatever switches the instances): LinuxHostProbe (core's HostProbe) and LinuxHostServices (the
 * probe with namespace identity: core's HostServices).
 */
import {
  CNI_NAME,
  FailedPreconditionError,
  parseIpv4Address,
  parseNetnsRef,
  silentLogger,
  type HostInfo,
  type HostProbe,
  type HostServices,
  type Ipv4Address,
  type IpAddress,
  type Logger,
  type NamespaceIdentity,
  type NetnsRef,
} from '@nodenet/core';
import { hostInfoFor, pickDefaultRoute, primaryIpv4Of } from './host-probe.js';
import { IpRunner } from './ip-batch.js';
import { parseIpAddrs, parseIpRoutes, type IpLinkWithAddresses, type IpRoute } from './ip-json.js';
import { LinuxNamespaceIdentity } from './netns-identity.js';

export interface LinuxHostProbeOptions {
  /** The node namespace: a name under /run/netns or a path. Default: the process's own. */
  readonly netns?: string;
  readonly logger?: Logger;
}

/** Reads the node's addresses and routes with `ip -j` (two processes side by side, a third only without a `src` on the default route). */
export class LinuxHostProbe implements HostProbe {
  private readonly node: IpRunner;
  private readonly logger: Logger;

  constructor(options: LinuxHostProbeOptions = {}) {
    const netns: NetnsRef | undefined = options.netns === undefined ? undefined : parseNetnsRef(options.netns, 'netns');
    this.node = new IpRunner(netns);
    this.logger = options.logger ?? silentLogger;
  }

  async probeHost(underlayAddress?: IpAddress): Promise<HostInfo> {
    const [addrJson, routeJson] = await Promise.all([
      this.node.json(['addr', 'show'], 'list the node addresses'),
      underlayAddress === undefined ? this.node.json(['route', 'show', 'default'], 'read the default route') : Promise.resolve([]),
    ]);
    const links = parseIpAddrs(addrJson ?? []);
    const address = underlayAddress ?? (await this.defaultRouteSource(links, parseIpRoutes(routeJson ?? [])));
    const info = hostInfoFor(links, address, CNI_NAME);
    this.logger.debug({ underlay: info.underlayAddress, interface: info.underlayInterface, mtu: info.underlayMtu }, 'host probed');
    return info;
  }

  /** The source address the kernel uses on the default route: its `src`, else what `ip route get GATEWAY` picks. */
  private async defaultRouteSource(links: readonly IpLinkWithAddresses[], routes: readonly IpRoute[]): Promise<Ipv4Address> {
    const route = pickDefaultRoute(routes);
    let source = route.prefsrc;
    if (source === undefined && route.gateway !== undefined) {
      const gateway = parseIpv4Address(route.gateway, 'default route gateway');
      const got = parseIpRoutes((await this.node.json(['route', 'get', gateway], 'find the source address of the default route')) ?? []);
      source = got[0]?.prefsrc;
    }
    if (source === undefined) {
      const link = links.find((l) => l.ifname === route.dev);
      source = link ? primaryIpv4Of(link) : undefined;
    }
    if (source === undefined) {
      throw new FailedPreconditionError(
        `the default route's interface ${route.dev} has no IPv4 address to use as the underlay address: set \`underlayAddress\` in the config or pass --underlay-address`,
      );
    }
    return parseIpv4Address(source, 'default route source');
  }
}

/** The host's services for the daemon (core's HostServices): the underlay probe and namespace identity, the same for every backend. */
export class LinuxHostServices implements HostServices {
  private readonly probe: HostProbe;
  private readonly identity: NamespaceIdentity = new LinuxNamespaceIdentity();

  constructor(options: LinuxHostProbeOptions = {}) {
    this.probe = new LinuxHostProbe(options);
  }

  probeHost(underlayAddress?: IpAddress): Promise<HostInfo> {
    return this.probe.probeHost(underlayAddress);
  }

  identifyNamespace(netns: NetnsRef): Promise<string> {
    return this.identity.identifyNamespace(netns);
  }

  namespaceAlive(netns: NetnsRef, netnsId: string | undefined): Promise<boolean> {
    return this.identity.namespaceAlive(netns, netnsId);
  }
}
