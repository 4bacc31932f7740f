import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig, parseListen, type FlagOverrides } from '../src/config.js';

const backends = ['iproute2'];

function problemsOf(raw: unknown, flags: FlagOverrides = {}): string[] {
  try {
    parseConfig(raw, { backends, flags });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).problems];
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be refused`);
}

describe('parseConfig defaults', () => {
  it('fills every key with the documented default', () => {
    const c = parseConfig({}, { backends });
    expect(c.nodeName).toBe(hostname());
    expect(c.underlayAddress).toBeUndefined();
    expect(c.listen).toEqual({ kind: 'unix', path: '/run/nodenet/nodenet.sock', uri: 'unix:///run/nodenet/nodenet.sock' });
    expect(c.insecure).toBe(false);
    expect(c.tls).toBeUndefined();
    expect(c.backend).toBe('iproute2');
    expect(c.stateDir).toBe('/var/lib/nodenet');
    expect(c.reservedPorts).toEqual([]);
    expect(c.overlay).toEqual({ mode: 'vxlan', vni: 4242, port: 4789 });
    expect(c.membership.type).toBe('static');
    expect(c.membership.peers).toEqual([]);
    expect(c.membership.etcd).toEqual({
      endpoints: ['http://127.0.0.1:2379'],
      prefix: '/nodenet',
      leaseTtlSeconds: 15,
      restartGraceSeconds: 60,
    });
    expect(c.ovs).toEqual({ db: 'unix:/var/run/openvswitch/db.sock', runDir: '/var/run/openvswitch', datapathType: 'system' });
    expect(c.logLevel).toBe('info');
  });

  it('treats an empty document and YAML nulls as "not set"', () => {
    expect(parseConfig(null, { backends }).overlay.vni).toBe(4242);
    expect(parseConfig({ overlay: null, underlayAddress: null }, { backends }).overlay.port).toBe(4789);
  });

  it('accepts a full config and parses addresses and subnets with core', () => {
    const c = parseConfig(
      {
        nodeName: 'node-1',
        underlayAddress: '198.18.0.1',
        listen: '0.0.0.0:50051',
        tls: { cert: '/etc/nodenet/cert.pem', key: '/etc/nodenet/key.pem', ca: '/etc/nodenet/ca.pem' },
        stateDir: '/srv/nodenet',
        reservedPorts: [22, 9100],
        overlay: { mode: 'host-gw', vni: 1, port: 8472 },
        membership: { type: 'static', peers: [{ name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' }] },
        ovs: { db: 'tcp:127.0.0.1:6640', runDir: '/run/ovs', datapathType: 'netdev' },
        logLevel: 'debug',
      },
      { backends },
    );
    expect(c.listen).toEqual({ kind: 'tcp', host: '0.0.0.0', port: 50051, uri: '0.0.0.0:50051' });
    expect(c.membership.peers[0]!.subnet?.toString()).toBe('198.19.2.0/24');
    expect(c.membership.peers[0]!.subnet?.broadcast).toBe('198.19.2.255');
    expect(c.overlay).toEqual({ mode: 'host-gw', vni: 1, port: 8472 });
    expect(c.ovs.datapathType).toBe('netdev');
  });
});

describe('parseConfig errors name the key', () => {
  const cases: [string, unknown, string][] = [
    ['nodeName', { nodeName: 'bad name!' }, 'config: nodeName: '],
    ['nodeName type', { nodeName: 5 }, 'config: nodeName: must be a node name'],
    ['underlayAddress', { underlayAddress: '198.18.0.01' }, 'config: underlayAddress: '],
    ['underlayAddress IPv6 link-local', { underlayAddress: 'fe80::1' }, 'config: underlayAddress: '],
    ['underlayAddress IPv6 not canonical', { underlayAddress: '2001:DB8:18::1' }, 'config: underlayAddress: '],
    ['listen', { listen: 'nowhere' }, 'config: listen: '],
    ['listen relative unix', { listen: 'unix://run/x.sock' }, 'config: listen: '],
    ['listen port', { listen: '0.0.0.0:70000' }, 'config: listen: '],
    ['listen long unix path', { listen: `unix:///${'x'.repeat(120)}` }, 'config: listen: '],
    ['insecure', { insecure: 'yes' }, 'config: insecure: must be true or false'],
    ['tls', { tls: 'on' }, 'config: tls: must be a mapping'],
    ['tls.cert', { listen: '127.0.0.1:5000', tls: { key: '/k' } }, 'config: tls.cert: '],
    ['tls.key', { listen: '127.0.0.1:5000', tls: { cert: '/c', key: '' } }, 'config: tls.key: '],
    ['tls.ca', { listen: '127.0.0.1:5000', tls: { cert: '/c', key: '/k', ca: 3 } }, 'config: tls.ca: '],
    ['backend', { backend: '' }, 'config: backend: '],
    ['stateDir', { stateDir: '' }, 'config: stateDir: '],
    ['reservedPorts', { reservedPorts: 22 }, 'config: reservedPorts: must be a list of ports'],
    ['reservedPorts[1]', { reservedPorts: [22, 0] }, 'config: reservedPorts[1]: must be an integer 1..65535'],
    ['overlay', { overlay: 'vxlan' }, 'config: overlay: must be a mapping'],
    ['overlay.mode', { overlay: { mode: 'geneve' } }, 'config: overlay.mode: must be one of vxlan, host-gw'],
    ['overlay.vni', { overlay: { vni: 0 } }, 'config: overlay.vni: must be an integer 1..16777215'],
    ['overlay.vni big', { overlay: { vni: 16777216 } }, 'config: overlay.vni: must be an integer 1..16777215'],
    ['overlay.vni fraction', { overlay: { vni: 1.5 } }, 'config: overlay.vni: must be an integer 1..16777215'],
    ['overlay.port', { overlay: { port: '4789' } }, 'config: overlay.port: must be an integer 1..65535'],
    ['membership.type', { membership: { type: 'consul' } }, 'config: membership.type: must be one of static, etcd'],
    ['membership.peers', { membership: { peers: {} } }, 'config: membership.peers: must be a list of peers'],
    [
      'membership.peers[0].name',
      { membership: { peers: [{ name: '', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' }] } },
      'config: membership.peers[0].name: ',
    ],
    [
      'membership.peers[0].underlayAddress',
      { membership: { peers: [{ name: 'n2', underlayAddress: '198.18.0', subnet: '198.19.2.0/24' }] } },
      'config: membership.peers[0].underlayAddress: ',
    ],
    [
      'membership.peers[0].subnet host bits',
      { membership: { peers: [{ name: 'n2', underlayAddress: '198.18.0.2', subnet: '198.19.2.1/24' }] } },
      'config: membership.peers[0].subnet: ',
    ],
    [
      'membership.peers[0].subnet missing',
      { membership: { peers: [{ name: 'n2', underlayAddress: '198.18.0.2' }] } },
      'config: membership.peers[0].subnet: ',
    ],
    ['membership.etcd.endpoints', { membership: { etcd: { endpoints: ['ftp://x'] } } }, 'config: membership.etcd.endpoints[0]: '],
    ['membership.etcd.endpoints empty', { membership: { etcd: { endpoints: [] } } }, 'config: membership.etcd.endpoints: '],
    ['membership.etcd.prefix', { membership: { etcd: { prefix: 'nodenet' } } }, 'config: membership.etcd.prefix: '],
    [
      'membership.etcd.leaseTtlSeconds',
      { membership: { etcd: { leaseTtlSeconds: 0 } } },
      'config: membership.etcd.leaseTtlSeconds: must be an integer',
    ],
    ['ovs.db', { ovs: { db: '/var/run/db.sock' } }, 'config: ovs.db: '],
    ['ovs.runDir', { ovs: { runDir: '' } }, 'config: ovs.runDir: '],
    ['ovs.datapathType', { ovs: { datapathType: 'kernel' } }, 'config: ovs.datapathType: must be one of system, netdev'],
    ['logLevel', { logLevel: 'verbose' }, 'config: logLevel: must be one of fatal, error, warn, info, debug, trace, silent'],
  ];
  it.each(cases)('%s', (_name, raw, expected) => {
    const problems = problemsOf(raw);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(expected);
  });

  it('names an unknown top-level key and lists the valid ones', () => {
    const [p] = problemsOf({ listne: 'unix:///x.sock' });
    expect(p).toContain("unknown key 'listne'");
    expect(p).toContain(
      'valid keys are nodeName, underlayAddress, listen, insecure, tls, backend, stateDir, reservedPorts, overlay, membership, ovs, logLevel',
    );
  });

  it('names an unknown nested key with its parent', () => {
    expect(problemsOf({ overlay: { vin: 1 } })[0]).toBe("config: overlay: unknown key 'vin': valid keys are mode, vni, port");
    expect(problemsOf({ membership: { peers: [{ name: 'n2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24', mtu: 1 }] } })[0]).toBe(
      "config: membership.peers[0]: unknown key 'mtu': valid keys are name, underlayAddress, subnet, ipv6Subnet",
    );
  });

  it('reports every bad key, not only the first', () => {
    const problems = problemsOf({ overlay: { vni: -1, port: 0 }, logLevel: 'loud' });
    expect(problems).toHaveLength(3);
    expect(problems.map((p) => p.split(':')[1]!.trim())).toEqual(['overlay.vni', 'overlay.port', 'logLevel']);
  });

  it('refuses a file that is not a mapping', () => {
    expect(() => parseConfig(['a'], { backends })).toThrow(/must hold a mapping/);
    expect(() => parseConfig('listen: x', { backends })).toThrow(/must hold a mapping/);
  });
});

describe('cross-key rules', () => {
  it('refuses TCP without TLS unless insecure: true', () => {
    const [p] = problemsOf({ listen: '0.0.0.0:50051' });
    expect(p).toMatch(/^config: listen: 0\.0\.0\.0:50051 is TCP without TLS/);
    expect(p).toContain('insecure: true');
    expect(parseConfig({ listen: '0.0.0.0:50051', insecure: true }, { backends }).insecure).toBe(true);
    expect(parseConfig({ listen: '0.0.0.0:50051', tls: { cert: '/c', key: '/k' } }, { backends }).tls).toEqual({ cert: '/c', key: '/k' });
  });

  it('refuses insecure together with tls, and tls on a unix socket', () => {
    expect(problemsOf({ listen: 'localhost:5000', insecure: true, tls: { cert: '/c', key: '/k' } })[0]).toMatch(/^config: insecure: /);
    expect(problemsOf({ tls: { cert: '/c', key: '/k' } })[0]).toMatch(/^config: tls: tls applies to a TCP listen address/);
  });

  it('refuses an unknown backend, listing the valid ones', () => {
    const [p] = problemsOf({ backend: 'ovs2' });
    expect(p).toBe("config: backend: unknown backend 'ovs2': valid backends are iproute2");
  });

  it('accepts etcd membership, and refuses static peers with it', () => {
    expect(parseConfig({ membership: { type: 'etcd' } }, { backends }).membership.type).toBe('etcd');
    const peers = [{ name: 'n2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' }];
    expect(problemsOf({ membership: { type: 'etcd', peers } })[0]).toMatch(/^config: membership\.peers: peers are for static membership/);
  });

  it('takes reconcileIntervalSeconds, default 30', () => {
    expect(problemsOf({ reconcileIntervalSeconds: 0 })[0]).toMatch(/^config: reconcileIntervalSeconds: must be an integer/);
    expect(parseConfig({ reconcileIntervalSeconds: 5 }, { backends }).reconcileIntervalSeconds).toBe(5);
    expect(parseConfig({}, { backends }).reconcileIntervalSeconds).toBe(30);
  });

  it('checks peers against each other and this node', () => {
    const peer = (name: string, underlayAddress: string, subnet: string) => ({ name, underlayAddress, subnet });
    expect(problemsOf({ nodeName: 'n1', membership: { peers: [peer('n1', '198.18.0.2', '198.19.2.0/24')] } })[0]).toMatch(
      /^config: membership\.peers\[0\]\.name: 'n1' is this node's own name/,
    );
    expect(
      problemsOf({ membership: { peers: [peer('n2', '198.18.0.2', '198.19.2.0/24'), peer('n2', '198.18.0.3', '198.19.3.0/24')] } })[0],
    ).toMatch(/^config: membership\.peers\[1\]\.name: 'n2' is listed twice/);
    expect(
      problemsOf({ membership: { peers: [peer('n2', '198.18.0.2', '198.19.0.0/16'), peer('n3', '198.18.0.3', '198.19.3.0/24')] } })[0],
    ).toMatch(/^config: membership\.peers\[1\]\.subnet: 198\.19\.3\.0\/24 overlaps 198\.19\.0\.0\/16/);
    expect(problemsOf({ underlayAddress: '198.18.0.2', membership: { peers: [peer('n2', '198.18.0.2', '198.19.2.0/24')] } })[0]).toMatch(
      /^config: membership\.peers\[0\]\.underlayAddress: /,
    );
  });
});

describe('flags', () => {
  it('override the file', () => {
    const c = parseConfig(
      { listen: 'unix:///tmp/a.sock', backend: 'iproute2', stateDir: '/a', nodeName: 'a', underlayAddress: '198.18.0.1', logLevel: 'info' },
      {
        backends,
        flags: {
          listen: 'unix:///tmp/b.sock',
          stateDir: '/b',
          nodeName: 'b',
          underlayAddress: '198.18.0.9',
          logLevel: 'debug',
          backend: 'iproute2',
        },
      },
    );
    expect(c.listen.uri).toBe('unix:///tmp/b.sock');
    expect(c.stateDir).toBe('/b');
    expect(c.nodeName).toBe('b');
    expect(c.underlayAddress).toBe('198.18.0.9');
    expect(c.logLevel).toBe('debug');
  });

  it('name the flag in errors', () => {
    expect(problemsOf({}, { underlayAddress: '1.2.3' })[0]).toMatch(/^--underlay-address: /);
    expect(problemsOf({}, { logLevel: 'loud' })[0]).toMatch(/^--log-level: must be one of/);
    expect(problemsOf({}, { listen: '0.0.0.0:9000' })[0]).toMatch(/^--listen: 0\.0\.0\.0:9000 is TCP without TLS/);
    expect(problemsOf({}, { backend: 'nope' })[0]).toBe("--backend: unknown backend 'nope': valid backends are iproute2");
    expect(problemsOf({}, { nodeName: '-x' })[0]).toMatch(/^--node-name: /);
    expect(problemsOf({}, { stateDir: '' })[0]).toMatch(/^--state-dir: /);
  });
});

describe('parseListen', () => {
  it('accepts the unix and TCP forms', () => {
    expect(parseListen('unix:/run/x.sock')).toEqual({ kind: 'unix', path: '/run/x.sock', uri: 'unix:///run/x.sock' });
    expect(parseListen('localhost:7443')).toEqual({ kind: 'tcp', host: 'localhost', port: 7443, uri: 'localhost:7443' });
    expect(parseListen('[::]:7443')).toMatchObject({ kind: 'tcp', port: 7443 });
  });
  it('refuses non-canonical forms', () => {
    for (const bad of ['127.0.0.01:80', '127.0.0.1:080', '127.0.0.1:', ':80', 'host_name:80', 'unix:x.sock']) {
      expect(() => parseListen(bad), bad).toThrow();
    }
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nodenet-config-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runs on defaults without a file', async () => {
    const c = await loadConfig({ backends });
    expect(c.listen.uri).toBe('unix:///run/nodenet/nodenet.sock');
  });

  it('reads YAML and JSON, flags override it, relative paths are relative to the file', async () => {
    const yamlFile = join(dir, 'nodenet.yaml');
    await writeFile(
      yamlFile,
      'nodeName: from-file\nstateDir: state\nlisten: 127.0.0.1:7443\ntls: { cert: tls/cert.pem, key: /abs/key.pem }\noverlay:\n  vni: 7\n',
    );
    const c = await loadConfig({ file: yamlFile, flags: { nodeName: 'from-flag' }, backends });
    expect(c.nodeName).toBe('from-flag');
    expect(c.stateDir).toBe(join(dir, 'state'));
    expect(c.tls).toEqual({ cert: join(dir, 'tls/cert.pem'), key: '/abs/key.pem' });
    expect(c.overlay.vni).toBe(7);

    const jsonFile = join(dir, 'nodenet.json');
    await writeFile(jsonFile, JSON.stringify({ overlay: { mode: 'host-gw' } }));
    expect((await loadConfig({ file: jsonFile, backends })).overlay.mode).toBe('host-gw');
  });

  it('names a missing file', async () => {
    const missing = join(dir, 'absent.yaml');
    await expect(loadConfig({ file: missing, backends })).rejects.toThrow(`config: cannot read the config file ${missing}: no such file`);
  });

  it('refuses YAML that does not parse, and duplicate keys', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'overlay: { vni: 1\n');
    await expect(loadConfig({ file, backends })).rejects.toThrow(/is not valid YAML/);
    await writeFile(file, 'logLevel: info\nlogLevel: debug\n');
    await expect(loadConfig({ file, backends })).rejects.toThrow(/is not valid YAML/);
  });

  it('names the key of a bad value in the file', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'overlay:\n  vni: 0\n');
    await expect(loadConfig({ file, backends })).rejects.toThrow('config: overlay.vni: must be an integer 1..16777215 (got 0)');
  });
});

describe('IPv6 peers in the config', () => {
  it('reads a dual-stack peer, an IPv6-only peer on an IPv6 underlay, and an IPv6 underlayAddress', () => {
    const c = parseConfig(
      {
        underlayAddress: '2001:db8:18::1',
        membership: {
          peers: [
            { name: 'n2', underlayAddress: '2001:db8:18::2', subnet: '198.19.2.0/24', ipv6Subnet: 'fd19:0:0:2::/64' },
            { name: 'n3', underlayAddress: '2001:db8:18::3', ipv6Subnet: 'fd19:0:0:3::/64' },
            { name: 'n4', underlayAddress: '2001:db8:18::4', subnet: 'fd19:0:0:4::/64' },
          ],
        },
      },
      { backends },
    );
    expect(c.underlayAddress).toBe('2001:db8:18::1');
    expect(c.membership.peers.map((p) => [p.name, String(p.subnet), String(p.ipv6Subnet)])).toEqual([
      ['n2', '198.19.2.0/24', 'fd19:0:0:2::/64'],
      ['n3', 'undefined', 'fd19:0:0:3::/64'],
      // An IPv6-only peer may give its IPv6 subnet as `subnet`, as the seed's API fields do.
      ['n4', 'undefined', 'fd19:0:0:4::/64'],
    ]);
  });

  it.each([
    [
      'a non-canonical ipv6Subnet',
      { name: 'n2', underlayAddress: '198.18.0.2', ipv6Subnet: 'FD19:0:0:2::/64' },
      "config: membership.peers[0].ipv6Subnet: 'FD19:0:0:2::' is not in canonical form (RFC 5952): write fd19:0:0:2::",
    ],
    [
      'an ipv6Subnet wider than /64',
      { name: 'n2', underlayAddress: '198.18.0.2', ipv6Subnet: 'fd19::/48' },
      "config: membership.peers[0].ipv6Subnet: 'fd19::/48': an IPv6 instance subnet must be /64 to /120, e.g. fd19:0:0:2::/64",
    ],
    [
      'an IPv4 ipv6Subnet',
      { name: 'n2', underlayAddress: '198.18.0.2', ipv6Subnet: '198.19.2.0/24' },
      "config: membership.peers[0].ipv6Subnet: '198.19.2.0/24' is not an IPv6 subnet: write one in CIDR form, e.g. fd19:0:0:2::/64",
    ],
    [
      'no subnet at all',
      { name: 'n2', underlayAddress: '198.18.0.2' },
      'config: membership.peers[0].subnet: a node needs an instance subnet: give subnet (IPv4, e.g. 198.19.2.0/24), ipv6Subnet (IPv6, e.g. fd19:0:0:2::/64), or both',
    ],
  ])('refuses %s, naming the key', (_what, peer, message) => {
    expect(problemsOf({ membership: { peers: [peer] } })).toEqual([message]);
  });

  it('refuses overlapping IPv6 subnets of two peers, naming the second one', () => {
    const problems = problemsOf({
      membership: {
        peers: [
          { name: 'n2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24', ipv6Subnet: 'fd19:0:0:2::/64' },
          { name: 'n3', underlayAddress: '198.18.0.3', subnet: '198.19.3.0/24', ipv6Subnet: 'fd19:0:0:2::/96' },
        ],
      },
    });
    expect(problems).toEqual([
      'config: membership.peers[1].ipv6Subnet: fd19:0:0:2::/96 overlaps fd19:0:0:2::/64, the subnet of membership.peers[0] (n2): every node needs its own subnet',
    ]);
  });
});
