// Bytes written from the seed's definition decode with the generated code, and the reverse: a seed-only
// client and a daemon built on network.proto understand each other; extension fields are simply absent.
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import {
  CreateContainerNetworkInterfaceRequest,
  CreateContainerNetworkInterfaceResponse,
  CreateInterfaceRequest,
  CreateInterfaceResponse,
  DeleteInterfaceRequest,
  Empty,
  InterfaceKind,
  Protocol,
  networkProtoPath,
  seedProtoPath,
} from '../src/index.js';

type AnyMethod = MethodDefinition<object, object>;

// What a grpc-js client or server built from a .proto at run time uses to (de)serialize: camelCase names, as ts-proto.
function methodsOf(
  protoPath: string,
  options: { defaults?: boolean } = {},
): Record<'CreateContainerNetworkInterface' | 'CreateInterface' | 'DeleteInterface', AnyMethod> {
  const service = loadSync(protoPath, options)['network.Network'] as unknown as Record<string, AnyMethod>;
  const method = (name: string): AnyMethod => {
    const found = service[name];
    if (!found) throw new Error(`${protoPath}: no rpc ${name}`);
    return found;
  };
  return {
    CreateContainerNetworkInterface: method('CreateContainerNetworkInterface'),
    CreateInterface: method('CreateInterface'),
    DeleteInterface: method('DeleteInterface'),
  };
}

const seed = methodsOf(seedProtoPath);
// defaults: zero-valued fields appear in decoded objects (as in ts-proto's), so whole messages compare equal.
const full = methodsOf(networkProtoPath, { defaults: true });

const fullRequest: CreateInterfaceRequest = {
  ipAddress: '198.19.1.2',
  ports: [80, 443],
  netns: '/proc/1234/ns/net',
  ifname: 'eth1',
  kind: InterfaceKind.TAP,
  portMappings: [
    { hostPort: 8080, instancePort: 80, protocol: Protocol.TCP },
    { hostPort: 5353, instancePort: 0, protocol: Protocol.UDP },
  ],
};
const fullResponse: CreateInterfaceResponse = {
  interfaceName: 'nni-0a1b2c3d',
  hostInterfaceName: 'nnh-0a1b2c3d',
  macAddress: '02:6e:c6:13:01:02',
  gateway: '198.19.1.1',
  prefixLength: 24,
  mtu: 1450,
};

const encode = <T>(codec: { encode(message: T): { finish(): Uint8Array } }, message: T): Buffer =>
  Buffer.from(codec.encode(message).finish());

describe('wire compatibility between seed.proto and the generated code', () => {
  it('seed CreateInterfaceRequest -> generated: seed fields kept, extensions absent', () => {
    const bytes = seed.CreateInterface.requestSerialize({ ipAddress: '198.19.1.2', ports: [80, 443] });
    const decoded = CreateInterfaceRequest.decode(bytes);
    expect(decoded).toEqual({
      ipAddress: '198.19.1.2',
      ports: [80, 443],
      netns: undefined,
      ifname: undefined,
      kind: undefined,
      portMappings: [],
    });
  });

  it('generated CreateInterfaceRequest with every extension -> seed: seed fields kept, extensions skipped', () => {
    const decoded = seed.CreateInterface.requestDeserialize(encode(CreateInterfaceRequest, fullRequest));
    expect(decoded).toEqual({ ipAddress: '198.19.1.2', ports: [80, 443] });
  });

  it('generated CreateInterfaceResponse with every extension -> seed: interface_name kept', () => {
    expect(seed.CreateInterface.responseDeserialize(encode(CreateInterfaceResponse, fullResponse))).toEqual({
      interfaceName: 'nni-0a1b2c3d',
    });
  });

  it('seed CreateInterfaceResponse -> generated: extension fields undefined', () => {
    const bytes = seed.CreateInterface.responseSerialize({ interfaceName: 'nni-0a1b2c3d' });
    expect(CreateInterfaceResponse.decode(bytes)).toEqual({
      interfaceName: 'nni-0a1b2c3d',
      hostInterfaceName: undefined,
      macAddress: undefined,
      gateway: undefined,
      prefixLength: undefined,
      mtu: undefined,
    });
  });

  it('CreateContainerNetworkInterface request and response round-trip both ways', () => {
    const request = { ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' };
    const response = { interfaceName: 'nodenet0' };
    const m = seed.CreateContainerNetworkInterface;
    expect(CreateContainerNetworkInterfaceRequest.decode(m.requestSerialize(request))).toEqual(request);
    expect(m.requestDeserialize(encode(CreateContainerNetworkInterfaceRequest, request))).toEqual(request);
    expect(CreateContainerNetworkInterfaceResponse.decode(m.responseSerialize(response))).toEqual(response);
    expect(m.responseDeserialize(encode(CreateContainerNetworkInterfaceResponse, response))).toEqual(response);
  });

  it('DeleteInterface request and Empty round-trip both ways', () => {
    const request = { interfaceName: 'nni-0a1b2c3d' };
    const m = seed.DeleteInterface;
    expect(DeleteInterfaceRequest.decode(m.requestSerialize(request))).toEqual(request);
    expect(m.requestDeserialize(encode(DeleteInterfaceRequest, request))).toEqual(request);
    expect(Empty.decode(m.responseSerialize({}))).toEqual({});
    expect(m.responseDeserialize(encode(Empty, {}))).toEqual({});
  });

  it('the seed and generated encodings of seed fields are the same bytes', () => {
    const seedOnly = { ipAddress: '198.19.1.2', ports: [80, 443] };
    expect(encode(CreateInterfaceRequest, CreateInterfaceRequest.fromPartial(seedOnly))).toEqual(
      seed.CreateInterface.requestSerialize(seedOnly),
    );
  });

  it('the generated code matches network.proto field for field (numbers, types)', () => {
    // Decoding with protobufjs from network.proto catches generated code out of step with the .proto.
    const requestFromProto = full.CreateInterface.requestDeserialize(encode(CreateInterfaceRequest, fullRequest));
    expect(requestFromProto).toEqual(fullRequest);
    expect(CreateInterfaceRequest.decode(full.CreateInterface.requestSerialize(fullRequest))).toEqual(fullRequest);
    expect(full.CreateInterface.responseDeserialize(encode(CreateInterfaceResponse, fullResponse))).toEqual(fullResponse);
    expect(CreateInterfaceResponse.decode(full.CreateInterface.responseSerialize(fullResponse))).toEqual(fullResponse);
  });

  it('an optional field set to its zero value stays present', () => {
    const request = CreateInterfaceRequest.fromPartial({ ipAddress: '198.19.1.2', kind: InterfaceKind.VETH, ifname: '' });
    const decoded = CreateInterfaceRequest.decode(encode(CreateInterfaceRequest, request));
    expect(decoded.kind).toBe(InterfaceKind.VETH);
    expect(decoded.ifname).toBe('');
    expect(decoded.netns).toBeUndefined();
  });
});
