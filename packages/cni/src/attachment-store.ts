/**
 * Durable records of CNI attachments, beside the daemon's other records:
 *
 *   stateDir/cni-attachments/<sha256(container id, ifname)>.json   one per attachment
 *   stateDir/cni-allocation.json                                   the addresses handed out last, per family (the cursors)
 *
 * Written like every record (temp file, fsync, rename, fsync of the directory), so a crash leaves the old
 * or the new content. A record that does not parse stops the daemon naming the file, never silently dropped.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FailedPreconditionError,
  stateWriteError,
  type IpAddress,
  type Ipv4Address,
  type Ipv6Address,
  type PortMapping,
} from '@nodenet/core';
import { isObject, type AttachmentKey } from './conf.js';

const FORMAT_VERSION = 1;

export interface AttachmentRecord {
  readonly containerId: string;
  readonly ifname: string;
  /** The network's name (the conflist's `name`): GC is per network. */
  readonly network: string;
  readonly netns: string;
  /** The instance's seed address as its record keeps it: IPv4, or IPv6 on an IPv6-only node. */
  readonly address: IpAddress;
  /** A dual-stack attachment's IPv6 address. */
  readonly ipv6Address?: Ipv6Address;
  /** True when nodenet chose an address (false: the runtime asked for all of them). */
  readonly allocated: boolean;
  readonly ports: readonly PortMapping[];
  /** The instance's handle, once CreateInterface returned it (absent: the ADD had not finished). */
  readonly handle?: string;
  readonly mac?: string;
  readonly createdAt: string;
}

export function attachmentId(key: AttachmentKey): string {
  return createHash('sha256').update(`${key.containerId}\0${key.ifname}`).digest('hex').slice(0, 40);
}

/** The address handed out last in each family: where the next allocation starts. */
export interface AllocationCursors {
  readonly ipv4?: Ipv4Address;
  readonly ipv6?: Ipv6Address;
}

export class AttachmentStore {
  private readonly dir: string;
  private readonly cursorFile: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'cni-attachments');
    this.cursorFile = join(stateDir, 'cni-allocation.json');
  }

  async load(): Promise<{ records: AttachmentRecord[]; cursors: AllocationCursors }> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const records: AttachmentRecord[] = [];
    for (const entry of (await readdir(this.dir)).sort()) {
      const file = join(this.dir, entry);
      if (entry.includes('.tmp-')) {
        await rm(file, { force: true }); // never renamed into place: that write was not acknowledged
        continue;
      }
      if (!entry.endsWith('.json')) continue;
      const record = parseRecord(await readJson(file, 'cni-attachment'), file);
      if (`${attachmentId(record)}.json` !== entry)
        throw stateError(file, `it records container ${record.containerId} ifname ${record.ifname}, which is not this file name`);
      records.push(record);
    }
    let cursors: AllocationCursors = {};
    try {
      // `last` is the IPv4 cursor (the only one before IPv6), `lastIpv6` the IPv6 one.
      const c = await readJson(this.cursorFile, 'cni-allocation');
      if (isObject(c)) {
        cursors = {
          ...(typeof c.last === 'string' ? { ipv4: c.last as Ipv4Address } : {}),
          ...(typeof c.lastIpv6 === 'string' ? { ipv6: c.lastIpv6 as Ipv6Address } : {}),
        };
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return { records, cursors };
  }

  async save(record: AttachmentRecord): Promise<void> {
    const file = join(this.dir, `${attachmentId(record)}.json`);
    await writing('record the attachment', file, () => writeDurably(file, envelope('cni-attachment', record), this.dir));
  }

  async remove(key: AttachmentKey): Promise<void> {
    const file = join(this.dir, `${attachmentId(key)}.json`);
    await writing('remove the attachment record', file, async () => {
      await rm(file, { force: true });
      await syncDir(this.dir);
    });
  }

  async saveCursors(cursors: AllocationCursors): Promise<void> {
    const record = { ...(cursors.ipv4 ? { last: cursors.ipv4 } : {}), ...(cursors.ipv6 ? { lastIpv6: cursors.ipv6 } : {}) };
    await writing('record the addresses handed out', this.cursorFile, () =>
      writeDurably(this.cursorFile, envelope('cni-allocation', record), join(this.cursorFile, '..')),
    );
  }
}

function envelope(kind: string, record: unknown): string {
  return `${JSON.stringify({ version: FORMAT_VERSION, kind, record }, null, 1)}\n`;
}

async function readJson(file: string, kind: string): Promise<unknown> {
  const text = await readFile(file, 'utf8'); // ENOENT goes to the caller
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw stateError(file, `not valid JSON: ${(e as Error).message}; the file may be truncated`);
  }
  if (!isObject(parsed) || parsed.kind !== kind) throw stateError(file, `expected a ${kind} record`);
  if (parsed.version !== FORMAT_VERSION)
    throw stateError(file, `format version ${String(parsed.version)} is not ${FORMAT_VERSION}: it was written by another nodenet version`);
  return parsed.record;
}

function parseRecord(r: unknown, file: string): AttachmentRecord {
  const ok =
    isObject(r) &&
    typeof r.containerId === 'string' &&
    typeof r.ifname === 'string' &&
    typeof r.network === 'string' &&
    typeof r.netns === 'string' &&
    typeof r.address === 'string' &&
    (r.ipv6Address === undefined || typeof r.ipv6Address === 'string') &&
    typeof r.allocated === 'boolean' &&
    Array.isArray(r.ports) &&
    (r.handle === undefined || typeof r.handle === 'string') &&
    typeof r.createdAt === 'string';
  if (!ok) throw stateError(file, 'it is not a complete attachment record');
  return r as unknown as AttachmentRecord;
}

function stateError(file: string, problem: string): FailedPreconditionError {
  return new FailedPreconditionError(
    `state file ${file} is unreadable (${problem}). nodenet will not start without it, so as not to lose track of the containers attached through its CNI plugin: restore it from a backup, or move it away and DEL that container's attachment by hand`,
  );
}

/** Runs a write of `path`; a read-only or full state directory becomes the status core's stateWriteError decides. */
async function writing(step: string, path: string, write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch (e) {
    throw stateWriteError(e, step, path);
  }
}

async function writeDurably(file: string, content: string, dir: string): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(content);
    await fh.datasync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, file);
  await syncDir(dir);
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
