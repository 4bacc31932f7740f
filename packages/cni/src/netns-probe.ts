/**
 * What CHECK compares with the record: the container's interface as the kernel shows it inside its
 * namespace (link, MAC, global addresses of both families) and the default routes there. Read with `ip -j` in
 * the namespace.
 */
import { parseNetnsRef, type NetnsRef } from '@nodenet/core';
import { commandInNamespace, parseIpAddrs, parseIpRoutes } from '@nodenet/linux';
import { CommandError, run } from '@nodenet/sys';

export interface ContainerInterfaceState {
  /** Absent when the namespace holds no interface of that name. */
  /** `addresses`: ADDRESS/PREFIX of each IPv4 and global IPv6 address (link-local ones left out). */
  readonly link?: { readonly mac?: string; readonly up: boolean; readonly addresses: readonly string[] };
  /** The gateway of the IPv4 default route, when there is one. */
  readonly defaultGateway?: string;
  /** The gateway of the IPv6 default route, when there is one. */
  readonly defaultIpv6Gateway?: string;
}

export interface NetnsProbe {
  /** The state of `ifname` in `netns`; NOT_FOUND (a nodenet error) when the namespace does not exist. */
  inspect(netns: string, ifname: string): Promise<ContainerInterfaceState>;
}

export class IpNetnsProbe implements NetnsProbe {
  async inspect(netns: string, ifname: string): Promise<ContainerInterfaceState> {
    const ns: NetnsRef = parseNetnsRef(netns, 'CNI_NETNS');
    const inNs = (args: string[]) => commandInNamespace(ns.startsWith('/') ? ns : (`/run/netns/${ns}` as NetnsRef), 'ip', args);
    const addr = inNs(['-j', 'addr', 'show']); // not -4: that leaves the MAC out
    const route = inNs(['-j', '-4', 'route', 'show', 'default']);
    const route6 = inNs(['-j', '-6', 'route', 'show', 'default']);
    const [links, routes, routes6] = await Promise.all([
      run(addr.file, addr.args, { step: `list the addresses in ${netns}` }),
      run(route.file, route.args, { step: `list the routes in ${netns}` }),
      run(route6.file, route6.args, { step: `list the IPv6 routes in ${netns}` }),
    ]).catch((e: unknown) => {
      if (e instanceof CommandError && /cannot open|No such file/i.test(e.stderr)) {
        throw new CommandError(e.step, e.command, e.exitCode, `the namespace ${netns} does not exist`);
      }
      throw e;
    });
    const listing: unknown = JSON.parse(links.stdout || '[]');
    const link = parseIpAddrs(listing).find((l) => l.ifname === ifname);
    // The MAC as `ip -j` prints it (the typed view leaves it out of address listings).
    const mac = (listing as { ifname?: string; address?: string }[]).find((l) => l.ifname === ifname)?.address;
    const defaultVia = (stdout: string) => parseIpRoutes(JSON.parse(stdout || '[]')).find((r) => r.dst === 'default')?.gateway;
    const gateway = defaultVia(routes.stdout);
    const gateway6 = defaultVia(routes6.stdout);
    return {
      ...(link
        ? {
            link: {
              ...(mac ? { mac } : {}),
              up: link.flags.includes('UP'),
              addresses: link.addresses
                .filter((a) => a.family === 'inet' || (a.family === 'inet6' && !a.local.startsWith('fe80:')))
                .map((a) => `${a.local}/${a.prefixlen}`),
            },
          }
        : {}),
      ...(gateway ? { defaultGateway: gateway } : {}),
      ...(gateway6 ? { defaultIpv6Gateway: gateway6 } : {}),
    };
  }
}
