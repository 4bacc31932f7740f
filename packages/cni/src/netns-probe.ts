/**
 * What CHECK compares with the record: the container's interface as the kernel shows it inside its
 * namespace (link, MAC, addresses) and the default route there. Read with `ip -j` in the namespace.
 */
import { parseNetnsRef, type NetnsRef } from '@nodenet/core';
import { commandInNamespace, parseIpAddrs, parseIpRoutes } from '@nodenet/linux';
import { CommandError, run } from '@nodenet/sys';

export interface ContainerInterfaceState {
  /** Absent when the namespace holds no interface of that name. */
  readonly link?: { readonly mac?: string; readonly up: boolean; readonly addresses: readonly string[] };
  /** The gateway of the IPv4 default route, when there is one. */
  readonly defaultGateway?: string;
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
    const [links, routes] = await Promise.all([
      run(addr.file, addr.args, { step: `list the addresses in ${netns}` }),
      run(route.file, route.args, { step: `list the routes in ${netns}` }),
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
    const gateway = parseIpRoutes(JSON.parse(routes.stdout || '[]')).find((r) => r.dst === 'default')?.gateway;
    return {
      ...(link
        ? {
            link: {
              ...(mac ? { mac } : {}),
              up: link.flags.includes('UP'),
              addresses: link.addresses.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
            },
          }
        : {}),
      ...(gateway ? { defaultGateway: gateway } : {}),
    };
  }
}
