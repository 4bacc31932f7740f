import { Writable } from 'node:stream';
import { Metadata, status, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { InterfaceKind, Protocol, type CreateInterfaceRequest } from '@nodenet/api';
import { FailedPreconditionError, InvalidArgumentError, type NodeNetwork } from '@nodenet/core';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { createNetworkServer, InFlight, kindOf, protocolOf, requestIdOf, toCreateInterfaceInput } from '../src/network-server.js';

function request(partial: Partial<CreateInterfaceRequest>): CreateInterfaceRequest {
  return { ipAddress: '198.19.1.2', ports: [], portMappings: [], ...partial };
}

describe('request mapping', () => {
  it('maps enums and leaves absent optional fields out', () => {
    expect(kindOf(undefined)).toBeUndefined();
    expect(kindOf(InterfaceKind.VETH)).toBe('veth');
    expect(kindOf(InterfaceKind.TAP)).toBe('tap');
    expect(protocolOf(Protocol.TCP_AND_UDP, 'p')).toBe('both');
    expect(protocolOf(Protocol.TCP, 'p')).toBe('tcp');
    expect(protocolOf(Protocol.UDP, 'p')).toBe('udp');
    expect(toCreateInterfaceInput(request({ ports: [80] }))).toEqual({ ipAddress: '198.19.1.2', ports: [80], portMappings: [] });
    expect(
      toCreateInterfaceInput(
        request({
          kind: InterfaceKind.TAP,
          netns: 'ns1',
          ifname: 'eth1',
          portMappings: [{ hostPort: 8080, instancePort: 80, protocol: Protocol.TCP }],
        }),
      ),
    ).toEqual({
      ipAddress: '198.19.1.2',
      ports: [],
      portMappings: [{ hostPort: 8080, instancePort: 80, protocol: 'tcp' }],
      kind: 'tap',
      netns: 'ns1',
      ifname: 'eth1',
    });
  });

  it('refuses unknown enum numbers as INVALID_ARGUMENT naming the field', () => {
    expect(() => kindOf(7 as InterfaceKind)).toThrow(InvalidArgumentError);
    expect(() => kindOf(7 as InterfaceKind)).toThrow(/^kind: 7 is not an InterfaceKind/);
    expect(() => toCreateInterfaceInput(request({ portMappings: [{ hostPort: 1, instancePort: 1, protocol: 9 as Protocol }] }))).toThrow(
      /^port_mappings\[0\]\.protocol: 9 is not a Protocol/,
    );
  });

  it('takes a sane x-request-id from the client, else makes one', () => {
    const md = new Metadata();
    md.set('x-request-id', 'abc-123');
    expect(requestIdOf(md)).toBe('abc-123');
    const bad = new Metadata();
    bad.set('x-request-id', 'has space');
    expect(requestIdOf(bad)).toMatch(/^[0-9a-f-]{36}$/);
    expect(requestIdOf(new Metadata())).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('handlers', () => {
  function setup(network: Partial<NodeNetwork>) {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const logger = createLogger({ level: 'debug', destination });
    const inFlight = new InFlight();
    const server = createNetworkServer(network as NodeNetwork, logger, inFlight);
    return { server, lines, inFlight };
  }

  function call<Req>(req: Req, md = new Metadata()) {
    const sent: Metadata[] = [];
    const c = {
      request: req,
      metadata: md,
      getPeer: () => 'unix:test',
      sendMetadata: (m: Metadata) => sent.push(m),
      once: () => undefined,
    };
    return { c: c as unknown as ServerUnaryCall<Req, unknown>, sent };
  }

  it('fills the response extension fields and logs method, code, duration and request id', async () => {
    const { server, lines, inFlight } = setup({
      createInterface: async () => ({
        interfaceName: 'nni-0000abcd' as never,
        hostInterfaceName: 'nnh-0000abcd' as never,
        macAddress: '02:6e:c6:13:01:02',
        gateway: '198.19.1.1' as never,
        prefixLength: 24,
        mtu: 1450,
      }),
    });
    const md = new Metadata();
    md.set('x-request-id', 'req-1');
    const { c, sent } = call(request({}), md);
    const result = await new Promise<unknown>((resolve, reject) =>
      server.createInterface(c, (err, res) =>
        err ? reject(err instanceof Error ? err : new Error(err.details ?? 'the call failed')) : resolve(res),
      ),
    );
    expect(result).toEqual({
      interfaceName: 'nni-0000abcd',
      hostInterfaceName: 'nnh-0000abcd',
      macAddress: '02:6e:c6:13:01:02',
      gateway: '198.19.1.1',
      prefixLength: 24,
      mtu: 1450,
    });
    expect(sent[0]!.get('x-request-id')).toEqual(['req-1']);
    const rpc = lines.find((l) => l.msg === 'rpc')!;
    expect(rpc).toMatchObject({ method: 'CreateInterface', code: 'OK', reqId: 'req-1', level: 'info' });
    expect(typeof rpc.durationMs).toBe('number');
    expect(inFlight.size).toBe(0);
  });

  it('maps a core error to its status and a non-core error to INTERNAL naming the RPC', async () => {
    const { server, lines } = setup({
      deleteInterface: async () => {
        throw new FailedPreconditionError('interface nni-1 is still being created: retry');
      },
      createContainerNetworkInterface: async () => {
        throw new RangeError('surprise');
      },
    });
    const del = call({ interfaceName: 'nni-1' });
    const e1 = await new Promise<Partial<ServiceError>>((resolve) => server.deleteInterface(del.c, (err) => resolve(err as never)));
    expect(e1.code).toBe(status.FAILED_PRECONDITION);
    expect(e1.details).toBe('interface nni-1 is still being created: retry');
    const cni = call({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
    const e2 = await new Promise<Partial<ServiceError>>((resolve) =>
      server.createContainerNetworkInterface(cni.c, (err) => resolve(err as never)),
    );
    expect(e2.code).toBe(status.INTERNAL);
    expect(e2.details).toBe('CreateContainerNetworkInterface: surprise');
    const rpcLines = lines.filter((l) => l.msg === 'rpc');
    expect(rpcLines.map((l) => [l.method, l.code, l.level])).toEqual([
      ['DeleteInterface', 'FAILED_PRECONDITION', 'info'],
      ['CreateContainerNetworkInterface', 'INTERNAL', 'error'],
    ]);
    for (const l of rpcLines) expect(typeof l.reqId).toBe('string');
    expect(rpcLines[0]!.reqId).not.toBe(rpcLines[1]!.reqId);
  });

  it('sends the request-id header once, together with the reply, on success and on error', async () => {
    let finish!: (outcome: 'ok' | 'fail') => void;
    const { server } = setup({
      deleteInterface: () =>
        new Promise((resolve, reject) => {
          finish = (outcome) => (outcome === 'ok' ? resolve() : reject(new FailedPreconditionError('busy: retry')));
        }),
    });
    for (const outcome of ['ok', 'fail'] as const) {
      const md = new Metadata();
      md.set('x-request-id', `req-${outcome}`);
      const { c, sent } = call({ interfaceName: 'nni-1' }, md);
      const headersAtReply: number[] = [];
      const replied = new Promise<ServiceError | null>((resolve) =>
        server.deleteInterface(c, (err) => {
          headersAtReply.push(sent.length);
          resolve(err as ServiceError | null);
        }),
      );
      await new Promise((resolve) => setImmediate(resolve));
      expect(sent).toEqual([]); // nothing goes out while the handler runs
      finish(outcome);
      const err = await replied;
      expect(err?.code ?? status.OK).toBe(outcome === 'ok' ? status.OK : status.FAILED_PRECONDITION);
      expect(headersAtReply).toEqual([1]);
      expect(sent.map((m) => m.get('x-request-id'))).toEqual([[`req-${outcome}`]]);
    }
  });

  it('refuses a bad enum before calling core', async () => {
    let called = false;
    const { server } = setup({
      createInterface: async () => {
        called = true;
        throw new Error('unreachable');
      },
    });
    const { c } = call(request({ kind: 5 as InterfaceKind }));
    const err = await new Promise<Partial<ServiceError>>((resolve) => server.createInterface(c, (e) => resolve(e as never)));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^kind: /);
    expect(called).toBe(false);
  });
});
