import { Iproute2Dataplane } from '@nodenet/backend-iproute2';
import { NftPacketFilter } from '@nodenet/nftables';
import { FileStateStore } from '@nodenet/state';
import { silentLogger } from '@nodenet/core';
import { describe, expect, it } from 'vitest';
import { parseConfig, type DaemonConfig } from '../src/config.js';
import { BACKEND_NAMES, createContainer, resolveAdapters } from '../src/container.js';
import { reservedPortsOf } from '../src/daemon.js';

const logger = { ...silentLogger, child: () => silentLogger };

describe('wiring', () => {
  it('registers the iproute2 and ovs backends and validates config names against the registry', () => {
    expect(BACKEND_NAMES).toEqual(['iproute2', 'ovs']);
    expect(parseConfig({ backend: 'ovs' }, { backends: BACKEND_NAMES }).backend).toBe('ovs');
    expect(() => parseConfig({ backend: 'vpp' }, { backends: BACKEND_NAMES })).toThrow(
      "config: backend: unknown backend 'vpp': valid backends are iproute2, ovs",
    );
  });

  it('resolves the adapters for a config, once each, without I/O', () => {
    const config = parseConfig({ stateDir: '/nonexistent/nodenet-state' }, { backends: BACKEND_NAMES });
    const c = createContainer(config, logger);
    const a = resolveAdapters(c);
    expect(a.dataplane).toBeInstanceOf(Iproute2Dataplane);
    expect(a.dataplane.name).toBe('iproute2');
    expect(a.packetFilter).toBeInstanceOf(NftPacketFilter);
    expect(a.store).toBeInstanceOf(FileStateStore);
    expect(resolveAdapters(c).dataplane).toBe(a.dataplane);
  });

  it('refuses a hand-built config with an unknown backend, listing the valid ones', () => {
    const config = { ...parseConfig({}, { backends: BACKEND_NAMES }), backend: 'nope' } as DaemonConfig;
    expect(() => createContainer(config, logger)).toThrow("unknown backend 'nope': valid backends are iproute2, ovs");
  });
});

describe('reserved ports', () => {
  it('reserves the overlay port (vxlan), the daemon TCP port, the metrics port and the listed ports, each with its reason', () => {
    const tcp = parseConfig({ listen: '0.0.0.0:7443', insecure: true, reservedPorts: [22, 4789] }, { backends: BACKEND_NAMES });
    expect([...reservedPortsOf(tcp)].sort((a, b) => a[0] - b[0])).toEqual([
      [22, 'listed in reservedPorts'],
      [4789, "the overlay's UDP port"],
      [7443, "the daemon's gRPC port"],
      [9842, "the daemon's metrics port (metrics.listen)"],
    ]);
    const hostGw = parseConfig({ overlay: { mode: 'host-gw' }, metrics: { listen: '' } }, { backends: BACKEND_NAMES });
    expect([...reservedPortsOf(hostGw)]).toEqual([]);
  });
});
