/**
 * What the daemon's reconcile loop calls, against the real kernel in namespaces the test makes: ensureCni's
 * repair reports (and that it writes nothing when all is right), namespace identity (createInstance's
 * netnsId, namespaceAlive), listOwnedLinks and deleteOwnedLinks. Every namespace is deleted afterwards.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readlink, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RecordedCommand } from '@nodenet/testkit/recording-sys';
import { CNI_NAME, Subnet, macForAddress, parseIfName, parseIpv4Address, parseNetnsRef, type CniSpec, type Logger } from '@nodenet/core';
import { run, runLean } from '@nodenet/sys';
import { LinuxNamespaceIdentity } from '@nodenet/linux';
import { Iproute2Dataplane } from '../src/index.js';

const identity = new LinuxNamespaceIdentity();
import { TestNamespaces, ipJson, sh } from './netns-fixture.js';
import { instanceSpecMaker } from '@nodenet/testkit/instance-specs';

/** Every command the code under test started (file, args, options), in order. */
const commandsRun = vi.hoisted((): RecordedCommand[] => []);
// Pass-through spies on both runners (see recordingSys).
vi.mock('@nodenet/sys', async (original) => (await import('@nodenet/testkit/recording-sys')).recordingSys(original, commandsRun));

const gateway = parseIpv4Address('198.19.1.1', 'gateway');
const cniSpec: CniSpec = { name: CNI_NAME, ipv4: { gateway, subnet: Subnet.of('198.19.1.0/24') }, mtu: 1450, mac: macForAddress(gateway) };

const instanceSpec = instanceSpecMaker(cniSpec, 0x7e000000);

const namespaces = new TestNamespaces();
let node = '';
let dp: Iproute2Dataplane;

/** The commands run spawns while `fn` runs (pass-through spy). */
async function spawnedBy<T>(fn: () => Promise<T>): Promise<{ result: T; commands: string[] }> {
  const before = commandsRun.length;
  const result = await fn();
  const commands = commandsRun.slice(before).map((c) => [c[0], ...c[1]].join(' '));
  return { result, commands };
}

async function sysctl(ns: string, key: string): Promise<string> {
  return (await sh('ip', ['netns', 'exec', ns, 'sysctl', '-n', key])).trim();
}

async function setSysctl(ns: string, key: string, value: string): Promise<void> {
  await sh('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', `${key}=${value}`]);
}

interface LinkJson {
  ifname: string;
  ifindex: number;
  mtu: number;
  address: string;
  flags: string[];
  ifalias?: string;
}

async function linkOf(ns: string, name: string): Promise<LinkJson | null> {
  const r = await run('ip', ['-n', ns, '-j', 'link', 'show', 'dev', name], { step: 'test: read link', okExitCodes: [1] });
  return r.exitCode === 0 ? (JSON.parse(r.stdout) as LinkJson[])[0]! : null;
}

async function ipv4Of(ns: string, dev: string): Promise<string[]> {
  const links = await ipJson<{ addr_info?: { family: string; local: string; prefixlen: number }[] }[]>(ns, ['addr', 'show', 'dev', dev]);
  return (links[0]?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** A `sleep` in a new anonymous network namespace that the test can stop itself. */
async function startSleeper(): Promise<{ pid: number; path: string; stop: () => Promise<void> }> {
  const child = spawn('unshare', ['--net', 'sleep', '1000'], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  const pid = child.pid!;
  const own = await readlink('/proc/self/ns/net');
  for (let i = 0; i < 200; i++) {
    const ns = await readlink(`/proc/${pid}/ns/net`).catch(() => own);
    if (ns !== own) return { pid, path: `/proc/${pid}/ns/net`, stop };
    await sleep(10);
  }
  await stop();
  throw new Error(`unshare --net sleep (pid ${pid}) did not enter a new namespace`);
}

beforeAll(async () => {
  ({ node } = await namespaces.addNode(1500));
  dp = new Iproute2Dataplane({ netns: node });
});

afterAll(async () => {
  await dp.close();
  await namespaces.cleanup();
});

describe('ensureCni reports what it repaired', () => {
  it('creating reports the bridge (and forwarding, off in a new namespace); then [] twice, with reads only', async () => {
    expect(await sysctl(node, 'net.ipv4.ip_forward')).toBe('0');
    expect(await dp.ensureCni(cniSpec)).toEqual(['nodenet0 was missing: created', 'net.ipv4.ip_forward was 0: set to 1']);
    expect([await sysctl(node, 'net.ipv4.ip_forward'), await sysctl(node, 'net.ipv4.conf.nodenet0.route_localnet')]).toEqual(['1', '1']);
    expect(await sysctl(node, 'net.ipv6.conf.nodenet0.disable_ipv6')).toBe('1');

    for (let i = 0; i < 2; i++) {
      const { result, commands } = await spawnedBy(() => dp.ensureCni(cniSpec));
      expect(result).toEqual([]);
      // One link+address read and one sysctl read, side by side; nothing written.
      expect(commands.sort()).toEqual([
        `ip -n ${node} -j -d addr show dev nodenet0`,
        `ip netns exec ${node} sysctl -e net/ipv4/ip_forward net/ipv4/conf/nodenet0/route_localnet net/ipv6/conf/nodenet0/disable_ipv6`,
      ]);
    }
  });

  it('a deleted address is added back and reported; then []', async () => {
    const before = await linkOf(node, CNI_NAME);
    await sh('ip', ['-n', node, 'address', 'flush', 'dev', CNI_NAME]);
    expect(await dp.ensureCni(cniSpec)).toEqual(['address 198.19.1.1/24 was missing on nodenet0: added']);
    expect(await ipv4Of(node, CNI_NAME)).toEqual(['198.19.1.1/24']);
    expect((await linkOf(node, CNI_NAME))!.ifindex).toBe(before!.ifindex);
    expect(await dp.ensureCni(cniSpec)).toEqual([]);
  });

  it('a bridge set down is brought up and reported; then []', async () => {
    await sh('ip', ['-n', node, 'link', 'set', 'dev', CNI_NAME, 'down']);
    expect(await dp.ensureCni(cniSpec)).toEqual(['nodenet0 was down: brought up']);
    expect((await linkOf(node, CNI_NAME))!.flags).toContain('UP');
    expect(await dp.ensureCni(cniSpec)).toEqual([]);
  });

  it('MTU, MAC and a stale address are repaired and reported, each on its own line', async () => {
    await sh(
      'ip',
      ['-n', node, '-batch', '-'],
      `link set dev ${CNI_NAME} mtu 1300 address 02:00:00:00:00:09\naddress add 198.19.7.1/24 dev ${CNI_NAME}\n`,
    );
    expect(await dp.ensureCni(cniSpec)).toEqual([
      'MAC of nodenet0 was 02:00:00:00:00:09: set to 02:6e:c6:13:01:01',
      'MTU of nodenet0 was 1300: set to 1450',
      'stale address 198.19.7.1/24 was on nodenet0: removed',
    ]);
    const l = await linkOf(node, CNI_NAME);
    expect([l!.mtu, l!.address]).toEqual([1450, cniSpec.mac]);
    expect(await ipv4Of(node, CNI_NAME)).toEqual(['198.19.1.1/24']);
    expect(await dp.ensureCni(cniSpec)).toEqual([]);
  });

  it('ip_forward, route_localnet and disable_ipv6 set back to 0 are rewritten and reported; then []', async () => {
    await setSysctl(node, 'net.ipv4.ip_forward', '0');
    expect(await dp.ensureCni(cniSpec)).toEqual(['net.ipv4.ip_forward was 0: set to 1']);
    expect(await sysctl(node, 'net.ipv4.ip_forward')).toBe('1');

    await setSysctl(node, 'net.ipv4.conf.nodenet0.route_localnet', '0');
    await setSysctl(node, 'net.ipv6.conf.nodenet0.disable_ipv6', '0');
    expect(await dp.ensureCni(cniSpec)).toEqual([
      'net.ipv4.conf.nodenet0.route_localnet was 0: set to 1',
      'net.ipv6.conf.nodenet0.disable_ipv6 was 0: set to 1',
    ]);
    expect([
      await sysctl(node, 'net.ipv4.conf.nodenet0.route_localnet'),
      await sysctl(node, 'net.ipv6.conf.nodenet0.disable_ipv6'),
    ]).toEqual(['1', '1']);
    expect(await dp.ensureCni(cniSpec)).toEqual([]);
  });

  it('a deleted bridge is recreated with its settings and reported; then []', async () => {
    await sh('ip', ['-n', node, 'link', 'del', 'dev', CNI_NAME]);
    expect(await dp.ensureCni(cniSpec)).toEqual(['nodenet0 was missing: created']);
    const l = await linkOf(node, CNI_NAME);
    expect([l!.ifalias, l!.mtu, l!.address, l!.flags.includes('UP')]).toEqual(['nodenet:cni', 1450, cniSpec.mac, true]);
    expect(await ipv4Of(node, CNI_NAME)).toEqual(['198.19.1.1/24']);
    expect([
      await sysctl(node, 'net.ipv4.conf.nodenet0.route_localnet'),
      await sysctl(node, 'net.ipv6.conf.nodenet0.disable_ipv6'),
    ]).toEqual(['1', '1']);
    expect(await dp.ensureCni(cniSpec)).toEqual([]);
  });

  it('measures a no-op ensureCni (netns option: ip read + sysctl read in parallel)', async () => {
    const times: number[] = [];
    for (let i = 0; i < 40; i++) {
      const t = performance.now();
      const repairs = await dp.ensureCni(cniSpec);
      times.push(performance.now() - t);
      expect(repairs).toEqual([]);
    }
    console.log(`[iproute2] no-op ensureCni with netns option (n=40): median ${median(times).toFixed(1)} ms`);
  });
});

describe('namespace identity', () => {
  it('createInstance into a named namespace returns its DEV:INODE; namespaceAlive tracks it until deleted', async () => {
    const pod = await namespaces.add('alive');
    const st = await stat(`/run/netns/${pod}`, { bigint: true });
    const placement = await dp.createInstance(instanceSpec(10, { netns: pod }));
    expect(placement).toEqual({ netnsId: `${st.dev}:${st.ino}` });
    // The inode is the namespace's own number, as a process inside it sees it.
    expect((await sh('ip', ['netns', 'exec', pod, 'readlink', '/proc/self/ns/net'])).trim()).toBe(`net:[${st.ino}]`);

    const ref = parseNetnsRef(pod, 'netns');
    expect(await identity.namespaceAlive(ref, placement.netnsId)).toBe(true);
    expect(await identity.namespaceAlive(ref, undefined)).toBe(true);
    expect(await identity.namespaceAlive(ref, '4:1')).toBe(false);

    await sh('ip', ['netns', 'del', pod]);
    expect(await identity.namespaceAlive(ref, placement.netnsId)).toBe(false);
    expect(await identity.namespaceAlive(ref, undefined)).toBe(false);

    // Recreated under the same name: a namespace exists there, but not the one the instance went into.
    await sh('ip', ['netns', 'add', pod]);
    expect(await identity.namespaceAlive(ref, placement.netnsId)).toBe(false);
    expect(await identity.namespaceAlive(ref, undefined)).toBe(true);
  });

  it('a /proc/PID/ns/net path: netnsId returned, alive while the process runs, not after it exits', async () => {
    const sleeper = await startSleeper();
    try {
      const ref = parseNetnsRef(sleeper.path, 'netns');
      const placement = await dp.createInstance(instanceSpec(11, { netns: sleeper.path }));
      const st = await stat(sleeper.path, { bigint: true });
      expect(placement).toEqual({ netnsId: `${st.dev}:${st.ino}` });
      expect(await identity.namespaceAlive(ref, placement.netnsId)).toBe(true);
      // The same path showing another namespace (as a reused PID would) is not alive for that identity.
      const own = parseNetnsRef(`/proc/${process.pid}/ns/net`, 'netns');
      expect(await identity.namespaceAlive(own, placement.netnsId)).toBe(false);
      expect(await identity.namespaceAlive(own, undefined)).toBe(true);

      await sleeper.stop();
      expect(await identity.namespaceAlive(ref, placement.netnsId)).toBe(false);
      expect(await identity.namespaceAlive(ref, undefined)).toBe(false);
    } finally {
      await sleeper.stop();
    }
  });

  it('a veth left on the node and a TAP return no netnsId', async () => {
    expect(await dp.createInstance(instanceSpec(12))).toEqual({});
    expect(await dp.createInstance(instanceSpec(13, { kind: 'tap' }))).toEqual({});
  });

  it('files that are not network namespaces, and missing ones, are not alive; no process is spawned', async () => {
    const { result, commands } = await spawnedBy(async () =>
      Promise.all(
        ['/etc/hostname', '/proc/self/ns/mnt', '/proc/999999999/ns/net', `nnt-${process.pid}-never`].map((p) =>
          identity.namespaceAlive(parseNetnsRef(p, 'netns'), undefined),
        ),
      ),
    );
    expect(result).toEqual([false, false, false, false]);
    expect(commands).toEqual([]);
  });
});

describe('owned links', () => {
  it('listOwnedLinks finds the CNI, host veth ends and TAPs, not foreign links; deleteOwnedLinks removes them', async () => {
    const other = await namespaces.add('owned');
    const pod = await namespaces.add('owned-pod');
    const warnings: unknown[] = [];
    const logger: Logger = { debug() {}, info() {}, error() {}, warn: (obj) => warnings.push(obj) };
    const dp2 = new Iproute2Dataplane({ netns: other, logger });
    await dp2.ensureCni(cniSpec);
    const onNode = instanceSpec(20);
    const inPod = instanceSpec(21, { netns: pod });
    const tap = instanceSpec(22, { kind: 'tap' });
    for (const s of [onNode, inPod, tap]) await dp2.createInstance(s);
    // Foreign links: a veth pair, a bridge with someone else's alias, one with no alias.
    await sh(
      'ip',
      ['-n', other, '-batch', '-'],
      ['link add foreign0 type veth peer name foreign1', 'link add br-x type bridge', 'link set dev br-x alias someone:else', ''].join(
        '\n',
      ),
    );

    const { result: owned, commands } = await spawnedBy(() => dp2.listOwnedLinks());
    expect(commands).toEqual([`ip -n ${other} -j -d link show`]);
    expect([...owned].sort((a, b) => a.name.localeCompare(b.name))).toEqual(
      [
        { name: CNI_NAME, ownerTag: 'nodenet:cni', kind: 'bridge', master: '', operstate: expect.any(String) as unknown },
        {
          name: onNode.hostIfname,
          ownerTag: `nodenet:${onNode.handle}`,
          kind: 'veth',
          master: CNI_NAME,
          operstate: expect.any(String) as unknown,
        },
        {
          name: inPod.hostIfname,
          ownerTag: `nodenet:${inPod.handle}`,
          kind: 'veth',
          master: CNI_NAME,
          operstate: expect.any(String) as unknown,
        },
        { name: tap.handle, ownerTag: `nodenet:${tap.handle}`, kind: 'tun', master: CNI_NAME, operstate: expect.any(String) as unknown },
      ].sort((a, b) => a.name.localeCompare(b.name)),
    );

    const names = [
      onNode.hostIfname,
      inPod.hostIfname,
      tap.handle,
      parseIfName('nnh-absent0', 'n'),
      parseIfName('foreign0', 'n'),
      parseIfName('br-x', 'n'),
    ];
    const del = await spawnedBy(() => dp2.deleteOwnedLinks(names));
    // One read, one batch.
    expect(del.commands).toEqual([`ip -n ${other} -j -d link show`, `ip -n ${other} -force -batch -`]);
    const left = (await ipJson<LinkJson[]>(other, ['link', 'show'])).map((l) => l.ifname).sort();
    // Both veth ends are gone (the instance end on the node, and eth0 in the pod); foreign links stay.
    expect(left).toEqual(['br-x', 'foreign0', 'foreign1', 'lo', CNI_NAME].sort());
    expect((await ipJson<LinkJson[]>(pod, ['link', 'show'])).map((l) => l.ifname)).toEqual(['lo']);
    expect(warnings).toEqual([
      { link: 'foreign0', alias: null },
      { link: 'br-x', alias: 'someone:else' },
    ]);
    expect((await dp2.listOwnedLinks()).map((l) => l.name)).toEqual([CNI_NAME]);

    // Again: everything absent is fine; nothing to delete means no batch; no names means no process at all.
    expect((await spawnedBy(() => dp2.deleteOwnedLinks(names.slice(0, 4)))).commands).toEqual([`ip -n ${other} -j -d link show`]);
    expect((await spawnedBy(() => dp2.deleteOwnedLinks([]))).commands).toEqual([]);
    // A TAP cut short between `tuntap add` and its tag: nodenet's (listed, deleted); a foreign TAP is not.
    await sh('ip', ['-n', other, '-batch', '-'], 'tuntap add dev nni-0badc0de mode tap\ntuntap add dev tap-x mode tap\n');
    expect((await dp2.listOwnedLinks()).map((l) => l.name).sort()).toEqual([CNI_NAME, 'nni-0badc0de'].sort());
    await dp2.deleteOwnedLinks([parseIfName('nni-0badc0de', 'n'), parseIfName('tap-x', 'n')]);
    expect((await ipJson<LinkJson[]>(other, ['link', 'show'])).map((l) => l.ifname)).toContain('tap-x');
    expect((await ipJson<LinkJson[]>(other, ['link', 'show'])).map((l) => l.ifname)).not.toContain('nni-0badc0de');

    // The CNI is deleted like any owned link when asked.
    await dp2.deleteOwnedLinks([CNI_NAME]);
    expect(await dp2.listOwnedLinks()).toEqual([]);
    await dp2.close();
  });
});

describe('owned links vanishing mid-way', () => {
  it('links deleted by someone else between the re-check and the batch are fine (some, or all of them)', async () => {
    const other = await namespaces.add('vanish');
    const dp2 = new Iproute2Dataplane({ netns: other });
    const taps = ['nni-7d000001', 'nni-7d000002', 'nni-7d000003'];
    const tag = async () =>
      sh(
        'ip',
        ['-n', other, '-batch', '-'],
        taps.flatMap((t) => [`tuntap add dev ${t} mode tap`, `link set dev ${t} alias nodenet:${t}`]).join('\n') + '\n',
      );
    /** Makes the next `ip -j link show` (the re-check) delete `gone` right after it has read. */
    const vanishAfterRead = (gone: string[]) => {
      const real = vi.mocked(runLean).getMockImplementation()!;
      vi.mocked(runLean).mockImplementationOnce(async (file, args, options) => {
        const result = await real(file, args, options);
        await sh('ip', ['-n', other, '-batch', '-'], gone.map((g) => `link del dev ${g}`).join('\n') + '\n');
        return result;
      });
    };
    const names = taps.map((t) => parseIfName(t, 'n'));

    await tag();
    vanishAfterRead([taps[1]!]);
    await dp2.deleteOwnedLinks(names);
    expect(await dp2.listOwnedLinks()).toEqual([]);

    await tag();
    vanishAfterRead(taps);
    await dp2.deleteOwnedLinks(names);
    expect(await dp2.listOwnedLinks()).toEqual([]);
  });
});

describe('latency (reported, not asserted)', () => {
  it('measures namespaceAlive and listOwnedLinks / deleteOwnedLinks over 200 owned TAPs', async () => {
    const other = await namespaces.add('many');
    const pod = await namespaces.add('many-pod');
    const dp2 = new Iproute2Dataplane({ netns: other });
    const taps = Array.from({ length: 200 }, (_, i) => `nni-${(0x6f000000 + i).toString(16)}`);
    await sh(
      'ip',
      ['-n', other, '-batch', '-'],
      taps.flatMap((t) => [`tuntap add dev ${t} mode tap`, `link set dev ${t} alias nodenet:${t}`]).join('\n') + '\n',
    );

    const placement = await dp.createInstance(instanceSpec(30, { netns: pod }));
    const ref = parseNetnsRef(pod, 'netns');
    const alive: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      expect(await identity.namespaceAlive(ref, placement.netnsId)).toBe(true);
      alive.push(performance.now() - t);
    }
    const list: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      expect(await dp2.listOwnedLinks()).toHaveLength(200);
      list.push(performance.now() - t);
    }
    const t = performance.now();
    await dp2.deleteOwnedLinks(taps.map((n) => parseIfName(n, 'n')));
    const deleteMs = performance.now() - t;
    expect(await dp2.listOwnedLinks()).toEqual([]);
    console.log(`[iproute2] namespaceAlive (n=200): median ${(median(alive) * 1000).toFixed(0)} µs`);
    console.log(`[iproute2] listOwnedLinks with 200 owned links (n=20): median ${median(list).toFixed(1)} ms`);
    console.log(`[iproute2] deleteOwnedLinks of 200 TAPs (one read + one batch): ${deleteMs.toFixed(1)} ms`);
  });
});
