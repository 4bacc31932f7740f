// Conformance with the host bridging through netfilter (net.bridge.bridge-nf-call-*=1, the kernel default
// here): "nodenet works whether or not the host bridges traffic through netfilter". The other files run
// with it off.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSysctls } from '@nodenet/testkit';
import {
  BACKENDS,
  NodeFixture,
  antiSpoofing,
  instanceToInstance,
  loopbackGuard,
  publishedFromInstances,
  publishedFromNode,
  publishedFromWorld,
} from '../src/index.js';

describe.each(BACKENDS)('bridge netfilter on (%s backend)', (backend) => {
  let f: NodeFixture;
  beforeAll(async () => {
    f = await NodeFixture.start({ backend, bridgeNfCall: true });
  });
  afterAll(() => f?.close());

  it('the node bridges through netfilter (and the daemon left that alone)', async () => {
    expect(await readSysctls(f.ns, ['net.bridge.bridge-nf-call-iptables'])).toEqual({ 'net.bridge.bridge-nf-call-iptables': '1' });
  });
  it('two instances ping each other and the gateway, and talk TCP and UDP with their own addresses', () => instanceToInstance(f));
  it('a published port is reachable from instances through the node addresses (hairpin, also to itself)', () => publishedFromInstances(f));
  it('anti-spoofing: packets from an instance with another source address are dropped', () => antiSpoofing(f));
  it("no instance reaches services on the node's 127.0.0.1", () => loopbackGuard(f));
  it('a published port (TCP and UDP) is reachable from the world', () => publishedFromWorld(f));
  it('a published port is reachable from the node itself', () => publishedFromNode(f));
});
