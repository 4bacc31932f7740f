/** The explanations of failed kernel commands both backends share, as pure functions of the failures. */
import { describe, expect, it } from 'vitest';
import {
  AlreadyExistsError,
  CNI_NAME,
  FailedPreconditionError,
  InternalError,
  Subnet,
  macForAddress,
  parseIpv4Address,
  type CniSpec,
} from '@nodenet/core';
import { instanceSpecFor } from '@nodenet/testkit/instance-specs';
import {
  IpBatchError,
  LINE,
  deleteLinkScript,
  deleteTolerant,
  explainLinkFailure,
  unexpectedFailure,
  type IpBatchFailure,
  type IpLine,
} from '../src/index.js';

const gateway = parseIpv4Address('198.19.1.1', 'gateway');
const cni: CniSpec = { name: CNI_NAME, ipv4: { gateway, subnet: Subnet.of('198.19.1.0/24') }, mtu: 1450, mac: macForAddress(gateway) };
const spec = instanceSpecFor(cni, 0xabcd, 7);
const createLine: IpLine = { id: LINE.createLink, args: ['link', 'add'], step: 'create veth pair' };
const failedAt = (line: IpLine, detail: string) => new IpBatchError('create', 'ip -batch -', line, detail, [{ line: 1, message: detail }]);
/** A runner that answers every batch with these failures. */
const answering = (failures: IpBatchFailure[]) => ({ batch: async () => failures });

describe('deleteTolerant', () => {
  const lines = [...deleteLinkScript('nnh-1'), ...deleteLinkScript('nnh-2'), ...deleteLinkScript('nnh-3')];

  it('treats a delete finding nothing as success', async () => {
    await expect(
      deleteTolerant(
        answering([
          { line: 1, message: 'Cannot find device "nnh-1"' },
          { line: 2, message: 'RTNETLINK answers: No such device' },
        ]),
        lines,
        'delete',
      ),
    ).resolves.toBeUndefined();
  });

  it('names the first real failure and lists every other one ("and N more")', async () => {
    const err = await deleteTolerant(
      answering([
        { line: 1, message: 'Cannot find device "nnh-1"' },
        { line: 2, message: 'RTNETLINK answers: Operation not permitted' },
        { line: 3, message: 'RTNETLINK answers: Device or resource busy' },
      ]),
      lines,
      'delete three',
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalError);
    expect((err as Error).message).toBe(
      'delete nnh-2: RTNETLINK answers: Operation not permitted (and 1 more: RTNETLINK answers: Device or resource busy)',
    );
  });

  it('unexpectedFailure skips only absent-deletes of the given line ids', () => {
    const route: IpLine = { id: 'delete-route', args: ['route', 'del'], step: 'delete the route' };
    const add: IpLine = { id: 'peer-route', args: ['route', 'replace'], step: 'route it' };
    const ids = new Set(['delete-route']);
    expect(unexpectedFailure([{ line: 1, message: 'RTNETLINK answers: No such process' }], [route], ids)).toBeUndefined();
    expect(unexpectedFailure([{ line: 1, message: 'RTNETLINK answers: No such process' }], [add], ids)?.line).toBe(add);
  });
});

describe('explainLinkFailure', () => {
  it('a missing CNI: FAILED_PRECONDITION saying to create it', async () => {
    const e = await explainLinkFailure(spec, failedAt(createLine, `Cannot find device "${CNI_NAME}"`));
    expect(e).toBeInstanceOf(FailedPreconditionError);
    expect((e as Error).message).toMatch(/CNI bridge nodenet0 does not exist.*CreateContainerNetworkInterface/);
  });

  it('a name taken: ALREADY_EXISTS naming both ends (a TAP: its one name)', async () => {
    const e = await explainLinkFailure(spec, failedAt(createLine, 'RTNETLINK answers: File exists'));
    expect(e).toBeInstanceOf(AlreadyExistsError);
    expect((e as Error).message).toContain(`a link named ${spec.hostIfname} or ${spec.handle} already exists`);
    const tap = instanceSpecFor(cni, 0xabce, 8, { kind: 'tap' });
    expect(((await explainLinkFailure(tap, failedAt(createLine, 'RTNETLINK answers: File exists'))) as Error).message).toContain(
      `a link named ${tap.handle} already exists`,
    );
  });

  it('anything else is returned as it was (a backend may add its own cases)', async () => {
    const full = failedAt(createLine, 'RTNETLINK answers: Exchange full');
    expect(await explainLinkFailure(spec, full)).toBe(full);
    const other = new Error('boom');
    expect(await explainLinkFailure(spec, other)).toBe(other);
  });
});
