// The full API (network.proto) must stay wire-compatible with the seed (seed.proto): a client built from
// the seed alone talks to a daemon serving network.proto.
import { loadSync } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NetworkService, networkProtoPath, seedProtoPath } from '../src/index.js';

const SEED_METHOD_PATHS = [
  '/network.Network/CreateContainerNetworkInterface',
  '/network.Network/CreateInterface',
  '/network.Network/DeleteInterface',
].sort();

function parseRoot(source: string): protobuf.Root {
  // keepCase: compare the .proto's own field names, not protobufjs' camelCase versions.
  const root = protobuf.parse(source, new protobuf.Root(), { keepCase: true }).root;
  root.resolveAll();
  return root;
}

function allOf<T extends protobuf.ReflectionObject>(ns: protobuf.NamespaceBase, kind: abstract new (...args: never[]) => T): T[] {
  const found: T[] = [];
  for (const nested of ns.nestedArray) {
    if (nested instanceof kind) found.push(nested);
    if (nested instanceof protobuf.Namespace) found.push(...allOf(nested, kind));
  }
  return found;
}

function isProto3Optional(field: protobuf.Field): boolean {
  return field.options?.['proto3_optional'] === true;
}

function fieldShape(field: protobuf.Field): string {
  const type = field.resolvedType ? field.resolvedType.fullName : field.type;
  const label = field.repeated ? 'repeated' : isProto3Optional(field) ? 'optional' : 'singular';
  const packed = field.repeated ? ` packed=${String(field.packed)}` : '';
  return `${label} ${type} ${field.name} = ${field.id}${packed}`;
}

/** Everything in `full` that breaks a client or server built from `seed`. Empty = compatible. */
function compatibilityProblems(seed: protobuf.Root, full: protobuf.Root): string[] {
  const problems: string[] = [];
  for (const seedType of allOf(seed, protobuf.Type)) {
    const fullType = full.lookup(seedType.fullName);
    if (!(fullType instanceof protobuf.Type)) {
      problems.push(`message ${seedType.fullName} is missing`);
      continue;
    }
    const seedIds = new Set(seedType.fieldsArray.map((f) => f.id));
    for (const seedField of seedType.fieldsArray) {
      const fullField = fullType.fields[seedField.name];
      if (!fullField) problems.push(`${seedType.fullName}.${seedField.name} is missing`);
      else if (fieldShape(fullField) !== fieldShape(seedField)) {
        problems.push(`${seedType.fullName}: seed has "${fieldShape(seedField)}", full API has "${fieldShape(fullField)}"`);
      }
    }
    for (const fullField of fullType.fieldsArray) {
      if (seedType.fields[fullField.name]) continue;
      if (seedIds.has(fullField.id)) {
        problems.push(`${seedType.fullName}.${fullField.name} reuses field number ${fullField.id} of the seed`);
      }
      if (!fullField.repeated && !isProto3Optional(fullField)) {
        problems.push(`${seedType.fullName}.${fullField.name} is an extension but neither optional nor repeated`);
      }
    }
  }
  for (const seedEnum of allOf(seed, protobuf.Enum)) {
    const fullEnum = full.lookup(seedEnum.fullName);
    if (!(fullEnum instanceof protobuf.Enum)) problems.push(`enum ${seedEnum.fullName} is missing`);
    else {
      for (const [name, value] of Object.entries(seedEnum.values)) {
        if (fullEnum.values[name] !== value) problems.push(`enum value ${seedEnum.fullName}.${name} = ${value} changed`);
      }
    }
  }
  for (const seedService of allOf(seed, protobuf.Service)) {
    const fullService = full.lookup(seedService.fullName);
    if (!(fullService instanceof protobuf.Service)) {
      problems.push(`service ${seedService.fullName} is missing`);
      continue;
    }
    for (const seedMethod of seedService.methodsArray) {
      const fullMethod = fullService.methods[seedMethod.name];
      const shape = (m: protobuf.Method) =>
        `${m.requestStream ? 'stream ' : ''}${m.resolvedRequestType?.fullName} -> ${m.responseStream ? 'stream ' : ''}${m.resolvedResponseType?.fullName}`;
      if (!fullMethod) problems.push(`rpc ${seedService.fullName}.${seedMethod.name} is missing`);
      else if (shape(fullMethod) !== shape(seedMethod)) {
        problems.push(`rpc ${seedService.fullName}.${seedMethod.name}: seed ${shape(seedMethod)}, full API ${shape(fullMethod)}`);
      }
    }
  }
  return problems;
}

describe('seed compatibility of network.proto', () => {
  const seedSource = readFileSync(seedProtoPath, 'utf8');
  const fullSource = readFileSync(networkProtoPath, 'utf8');
  const seed = parseRoot(seedSource);
  const full = parseRoot(fullSource);

  it('keeps every seed message, field (name, number, type, label), enum and rpc', () => {
    expect(
      allOf(seed, protobuf.Type)
        .map((t) => t.fullName)
        .sort(),
    ).toEqual([
      '.network.CreateContainerNetworkInterfaceRequest',
      '.network.CreateContainerNetworkInterfaceResponse',
      '.network.CreateInterfaceRequest',
      '.network.CreateInterfaceResponse',
      '.network.DeleteInterfaceRequest',
      '.network.Empty',
    ]);
    expect(compatibilityProblems(seed, full)).toEqual([]);
  });

  it('adds only optional or repeated fields, with numbers the seed does not use', () => {
    const added: string[] = [];
    for (const seedType of allOf(seed, protobuf.Type)) {
      const fullType = full.lookupType(seedType.fullName);
      for (const field of fullType.fieldsArray) {
        if (!seedType.fields[field.name]) added.push(`${seedType.name}: ${fieldShape(field)}`);
      }
    }
    // The extensions exist (so the rule above was really applied to something) and all are optional/repeated.
    expect(added.length).toBeGreaterThan(0);
    for (const line of added) expect(line).toMatch(/: (optional|repeated) /);
  });

  it('serves the seed rpcs at exactly the seed method paths with the seed message types', () => {
    const seedDefinition = loadSync(seedProtoPath);
    const fullDefinition = loadSync(networkProtoPath);
    const methods = (definition: ReturnType<typeof loadSync>) => {
      const service = definition['network.Network'];
      if (!service || 'format' in service || 'fileDescriptorProtos' in service) throw new Error('network.Network is not a service');
      return Object.values(service).map((m) => ({
        path: m.path,
        // proto-loader types the descriptor as `object`; it is a DescriptorProto with the message name.
        request: (m.requestType.type as { name: string }).name,
        response: (m.responseType.type as { name: string }).name,
        streaming: [m.requestStream, m.responseStream],
      }));
    };
    const seedMethods = methods(seedDefinition);
    expect(seedMethods.map((m) => m.path).sort()).toEqual(SEED_METHOD_PATHS);
    const fullMethods = methods(fullDefinition);
    for (const seedMethod of seedMethods) {
      expect(fullMethods.find((m) => m.path === seedMethod.path)).toEqual(seedMethod);
    }
    // The generated service definition (what server and clients use) has the same paths and no streaming.
    const generated = Object.values(NetworkService).map((m) => ({ path: m.path, streaming: [m.requestStream, m.responseStream] }));
    expect(generated.map((m) => m.path).sort()).toEqual(fullMethods.map((m) => m.path).sort());
    for (const method of generated) expect(method.streaming).toEqual([false, false]);
  });

  // The checker itself must notice each kind of break, or the tests above prove nothing.
  it.each([
    [
      'a renumbered seed field',
      (s: string) => s.replace('string ip_address = 1;', 'string ip_address = 99;'),
      /ip_address = 1.*ip_address = 99/,
    ],
    [
      'a retyped seed field',
      (s: string) => s.replace('repeated int32 ports = 2;', 'repeated uint32 ports = 2;'),
      /int32 ports.*uint32 ports/,
    ],
    ['a seed field made optional', (s: string) => s.replace('string sub_network = 2;', 'optional string sub_network = 2;'), /sub_network/],
    [
      'a renamed seed field',
      (s: string) =>
        s.replace(
          'string interface_name = 1;\n}\n\n// Request structure used to create a new virtual network',
          'string name = 1;\n}\n\n// Request structure used to create a new virtual network',
        ),
      /DeleteInterfaceRequest.interface_name is missing/,
    ],
    [
      'a non-optional extension field',
      (s: string) => s.replace('optional string netns = 3;', 'string netns = 3;'),
      /netns is an extension but neither optional nor repeated/,
    ],
    // (protobufjs itself rejects two fields with one number; a reuse happens when a seed field is replaced.)
    [
      'an extension reusing a seed number',
      (s: string) => s.replace('repeated int32 ports = 2;', 'repeated int32 port_list = 2;'),
      /port_list reuses field number 2/,
    ],
    [
      'a changed rpc type',
      (s: string) =>
        s.replace(
          'rpc DeleteInterface(DeleteInterfaceRequest) returns (Empty)',
          'rpc DeleteInterface(DeleteInterfaceRequest) returns (CreateInterfaceResponse)',
        ),
      /rpc .*DeleteInterface/,
    ],
    ['a removed rpc', (s: string) => s.replace(/rpc DeleteInterface\(.*\n/, ''), /rpc .*DeleteInterface is missing/],
  ])('detects %s', (_what, mutate, expected) => {
    const mutated = mutate(fullSource);
    expect(mutated).not.toBe(fullSource);
    expect(compatibilityProblems(seed, parseRoot(mutated)).join('\n')).toMatch(expected);
  });
});
