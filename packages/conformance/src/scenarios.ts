/**
 * Traffic scenarios that run under both bridge-netfilter settings (net.bridge.bridge-nf-call-iptables 0
 * and 1): published ports from everywhere (hairpin included), anti-spoofing, instance to instance.
 */
import { expect } from 'vitest';
import { CNI_NAME } from '@nodenet/core';
import { echo, ipBatch, ping, readSysctls, startEchoServer, startEchoServers, type EchoResult } from '@nodenet/testkit';
import { NODE_GATEWAY, type Instance, type NodeFixture } from './fixture.js';

function reached(r: EchoResult, what: string): void {
  expect(r.ok, `${what}: ${r.error ?? `reply ${JSON.stringify(r.reply)}`}`).toBe(true);
}

/** An instance publishing `port` (TCP and UDP) with echo servers on it. */
export async function publishedInstance(
  f: NodeFixture,
  port = f.nextPort(),
): Promise<{
  instance: Instance;
  port: number;
  tcp: Awaited<ReturnType<typeof startEchoServers>>['tcp'];
  udp: Awaited<ReturnType<typeof startEchoServers>>['udp'];
}> {
  const instance = await f.addInstance(undefined, { ports: [port] });
  const { tcp, udp } = await startEchoServers(f.scope, instance.ns!, port);
  return { instance, port, tcp, udp };
}

/** TCP and UDP to the node's underlay address on a published port, from the world. */
export async function publishedFromWorld(f: NodeFixture): Promise<void> {
  const p = await publishedInstance(f);
  for (const protocol of ['tcp', 'udp'] as const) {
    const r = await echo(f.world.ns, { protocol, host: f.node.address, port: p.port });
    reached(r, `${protocol} world -> ${f.node.address}:${p.port}`);
    const server = protocol === 'tcp' ? p.tcp : p.udp;
    expect(server.receivedPayload(r.payload).length, `${protocol}: the instance's server got the payload`).toBeGreaterThan(0);
    if (protocol === 'udp') expect(r.from, 'the UDP reply comes from the address the world sent to').toBe(f.node.address);
  }
}

/** TCP and UDP to the node's own addresses (underlay, gateway) on a published port, from the node itself. */
export async function publishedFromNode(f: NodeFixture): Promise<void> {
  const p = await publishedInstance(f);
  for (const host of [f.node.address, NODE_GATEWAY]) {
    for (const protocol of ['tcp', 'udp'] as const) {
      const r = await echo(f.ns, { protocol, host, port: p.port });
      reached(r, `${protocol} node -> ${host}:${p.port}`);
      expect((protocol === 'tcp' ? p.tcp : p.udp).receivedPayload(r.payload).length).toBeGreaterThan(0);
    }
  }
}

/** TCP and UDP to 127.0.0.1 on a published port, from the node itself (loopback is one of its addresses). */
export async function publishedFromNodeLoopback(f: NodeFixture): Promise<void> {
  const p = await publishedInstance(f);
  for (const protocol of ['tcp', 'udp'] as const) {
    const r = await echo(f.ns, { protocol, host: '127.0.0.1', port: p.port });
    reached(r, `${protocol} node -> 127.0.0.1:${p.port}`);
    expect((protocol === 'tcp' ? p.tcp : p.udp).receivedPayload(r.payload).length).toBeGreaterThan(0);
  }
}

/**
 * No instance reaches the node's loopback: the CNI has route_localnet=1 (so the node's own 127.0.0.1 reaches
 * published ports), which would let an instance that routes 127.0.0.0/8 to its gateway reach services bound
 * to the node's 127.0.0.1 (CVE-2020-8558 style). Where the guard sits differs by backend (README).
 */
export async function loopbackGuard(f: NodeFixture): Promise<void> {
  const key = `net.ipv4.conf.${CNI_NAME}.route_localnet`;
  expect(
    (await readSysctls(f.ns, [key]))[key],
    `route_localnet on ${CNI_NAME}: without it the kernel drops these packets itself and this scenario proves nothing`,
  ).toBe('1');
  const port = f.nextPort();
  const server = await startEchoServer(f.scope, f.ns, { protocol: 'udp', port, host: '127.0.0.1' });
  reached(await echo(f.ns, { protocol: 'udp', host: '127.0.0.1', port }), 'control: the node reaches its own 127.0.0.1');
  const hostile = await f.addInstance();
  await ipBatch(hostile.ns!, [
    'route del local 127.0.0.0/8 dev lo table local',
    'route del local 127.0.0.1 dev lo table local',
    `route add 127.0.0.0/8 via ${NODE_GATEWAY}`,
  ]);
  const r = await echo(hostile.ns!, { protocol: 'udp', host: '127.0.0.1', port, timeoutMs: 1000 });
  expect(r.ok, `${hostile.handle} reached the node's 127.0.0.1:${port}`).toBe(false);
  expect(server.receivedPayload(r.payload), "the node's loopback service got a datagram from an instance").toEqual([]);
}

/** Hairpin: another instance, and the publishing instance itself, reach the port through the node's addresses. */
export async function publishedFromInstances(f: NodeFixture): Promise<void> {
  const p = await publishedInstance(f);
  const other = await f.addInstance();
  const clients: Array<[string, Instance]> = [
    ['another instance', other],
    ['the publishing instance itself', p.instance],
  ];
  for (const [who, client] of clients) {
    for (const host of [f.node.address, NODE_GATEWAY]) {
      for (const protocol of ['tcp', 'udp'] as const) {
        const r = await echo(client.ns!, { protocol, host, port: p.port });
        reached(r, `${protocol} ${who} (${client.address}) -> ${host}:${p.port}`);
        expect((protocol === 'tcp' ? p.tcp : p.udp).receivedPayload(r.payload).length).toBeGreaterThan(0);
      }
    }
  }
}

/** Two instances of the node: ping each other and the gateway, TCP and UDP between them with real source addresses. */
export async function instanceToInstance(f: NodeFixture): Promise<void> {
  const [a, b] = await Promise.all([f.addInstance(), f.addInstance()]);
  for (const [from, to] of [
    [a, b.address],
    [b, a.address],
    [a, NODE_GATEWAY],
    [b, NODE_GATEWAY],
  ] as const) {
    const r = await ping(from.ns!, to);
    expect(r.ok, r.output).toBe(true);
  }
  const port = f.nextPort();
  const [tcp, udp] = await Promise.all([
    startEchoServer(f.scope, b.ns!, { protocol: 'tcp', port }),
    startEchoServer(f.scope, a.ns!, { protocol: 'udp', port }),
  ]);
  const t = await echo(a.ns!, { protocol: 'tcp', host: b.address, port });
  reached(t, 'tcp a -> b');
  expect(tcp.receivedPayload(t.payload)).toEqual([expect.objectContaining({ peerAddress: a.address })]);
  const u = await echo(b.ns!, { protocol: 'udp', host: a.address, port });
  reached(u, 'udp b -> a');
  expect(udp.receivedPayload(u.payload)[0]).toMatchObject({ peerAddress: b.address });
}

/**
 * Anti-spoofing: an instance that sends with a source address other than its own is dropped, whether the
 * packet is bridged (to another instance) or routed (to the world); the same traffic with its own address
 * passes (control).
 */
export async function antiSpoofing(f: NodeFixture): Promise<void> {
  const [spoofer, victim] = await Promise.all([f.addInstance(), f.addInstance()]);
  const port = f.nextPort();
  const [atVictim, atWorld] = await Promise.all([
    startEchoServer(f.scope, victim.ns!, { protocol: 'udp', port }),
    startEchoServer(f.scope, f.world.ns, { protocol: 'udp', port, host: f.world.address }),
  ]);
  const spoofedInSubnet = f.nextAddress(); // unused address of the node subnet
  const spoofedOutside = '10.99.0.7';
  await ipBatch(spoofer.ns!, [
    `addr add ${spoofedInSubnet}/32 dev ${spoofer.ifname}`,
    `addr add ${spoofedOutside}/32 dev ${spoofer.ifname}`,
  ]);

  // Controls: the instance's own address gets through to both.
  reached(await echo(spoofer.ns!, { protocol: 'udp', host: victim.address, port, bind: spoofer.address }), 'control to instance');
  reached(await echo(spoofer.ns!, { protocol: 'udp', host: f.world.address, port, bind: spoofer.address }), 'control to world');

  for (const source of [spoofedInSubnet, spoofedOutside]) {
    for (const [target, server] of [
      [victim.address, atVictim],
      [f.world.address, atWorld],
    ] as const) {
      const r = await echo(spoofer.ns!, { protocol: 'udp', host: target, port, bind: source, timeoutMs: 1000 });
      expect(r.ok, `a datagram from ${spoofer.handle} with source ${source} to ${target} was answered`).toBe(false);
      expect(r.error, 'the spoofed datagram was sent (the client timed out waiting, it did not fail to send)').toMatch(/timeout/);
      expect(server.receivedPayload(r.payload), `${target} received a datagram spoofed as ${source}`).toEqual([]);
    }
  }
  // ICMP too: a spoofed ping to the other instance gets no answer.
  const p = await ping(spoofer.ns!, victim.address, { source: spoofedInSubnet, timeoutSec: 1, count: 2 });
  expect(p.received, p.output).toBe(0);
}
