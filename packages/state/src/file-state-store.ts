/**
 * The state directory: durable records of what the daemon created.
 *
 *   DIR/cni.json                 the CNI record
 *   DIR/instances/<handle>.json  one file per instance interface
 *   DIR/released.log             handles issued and since deleted, one per line (append-only)
 *
 * One file per instance keeps a create or delete to one small write, whatever the node holds. Every file
 * is written atomically and durably (write a temp file, fsync, rename over, fsync the directory), so after a
 * crash a record is either the old or the new one, never torn. The released log is append-only; a torn last
 * line is what a crash during a delete leaves, and is ignored (that delete was not acknowledged). A record
 * that does not parse is never silently dropped: load() fails naming the file and what to do.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FailedPreconditionError,
  HANDLE_PREFIX,
  parseIfName,
  type CniRecord,
  type IfName,
  type InstanceRecord,
  type NodeState,
  type StateStore,
} from '@nodenet/core';
import { parseCniRecord, parseInstanceRecord } from './records.js';

const FORMAT_VERSION = 1;

/** A state file nodenet cannot read: the daemon refuses to start rather than forget what it created. */
export class StateFileError extends FailedPreconditionError {
  constructor(
    readonly file: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(
      `state file ${file} is unreadable (${problem}). nodenet will not start without it, so as not to lose track of ` +
        `the interfaces it created: restore the file from a backup, or move it away and delete the interfaces and ` +
        `nftables elements it described before starting again`,
      options,
    );
  }
}

export interface FileStateStoreOptions {
  /** How many released handles to remember (a repeated DeleteInterface of an older one gets NOT_FOUND). */
  readonly maxReleased?: number;
}

export class FileStateStore implements StateStore {
  private readonly instancesDir: string;
  private readonly cniFile: string;
  private readonly releasedFile: string;
  private readonly maxReleased: number;
  private released: IfName[] = [];

  constructor(
    readonly dir: string,
    options: FileStateStoreOptions = {},
  ) {
    this.instancesDir = join(dir, 'instances');
    this.cniFile = join(dir, 'cni.json');
    this.releasedFile = join(dir, 'released.log');
    this.maxReleased = options.maxReleased ?? 10_000;
  }

  async load(): Promise<NodeState> {
    await mkdir(this.instancesDir, { recursive: true, mode: 0o700 });
    const cni = await this.readRecord(this.cniFile, 'cni', parseCniRecord);
    const instances: InstanceRecord[] = [];
    for (const entry of (await readdir(this.instancesDir)).sort()) {
      const file = join(this.instancesDir, entry);
      if (entry.includes('.tmp-')) {
        await unlink(file); // a write that never reached its rename: the request was not acknowledged
        continue;
      }
      if (!entry.endsWith('.json')) continue;
      const record = await this.readRecord(file, 'instance', parseInstanceRecord);
      if (!record) continue;
      if (`${record.handle}.json` !== entry) throw new StateFileError(file, `it records handle ${record.handle}, not ${entry.slice(0, -5)}`);
      instances.push(record);
    }
    this.released = await this.readReleased();
    return { cni, instances, released: [...this.released] };
  }

  async saveCni(cni: CniRecord): Promise<void> {
    await writeDurably(this.cniFile, envelope('cni', cni), this.dir);
  }

  async deleteCni(): Promise<void> {
    await rm(this.cniFile, { force: true });
    await fsyncDir(this.dir);
  }

  async saveInstance(record: InstanceRecord): Promise<void> {
    await writeDurably(this.instanceFile(record.handle), envelope('instance', record), this.instancesDir);
  }

  async releaseInstance(handle: IfName): Promise<void> {
    // Log the release first: a crash between the two steps leaves a record whose handle is also released,
    // which load() resolves in favour of the record (the delete was not acknowledged, a retry finishes it).
    await this.appendReleased(handle);
    await rm(this.instanceFile(handle), { force: true });
    await fsyncDir(this.instancesDir);
  }

  private instanceFile(handle: IfName): string {
    if (!handle.startsWith(HANDLE_PREFIX)) throw new Error(`not an instance handle: ${handle}`);
    return join(this.instancesDir, `${handle}.json`);
  }

  private async readRecord<T>(file: string, kind: string, parse: (v: unknown) => T): Promise<T | null> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new StateFileError(file, (e as Error).message, { cause: e });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new StateFileError(file, `not valid JSON: ${(e as Error).message}; the file may be truncated`, { cause: e });
    }
    const env = parsed as { version?: unknown; kind?: unknown; record?: unknown };
    if (typeof parsed !== 'object' || parsed === null || env.kind !== kind) {
      throw new StateFileError(file, `expected a ${kind} record`);
    }
    if (env.version !== FORMAT_VERSION) {
      throw new StateFileError(file, `format version ${String(env.version)} is not ${FORMAT_VERSION}: it was written by another nodenet version`);
    }
    try {
      return parse(env.record);
    } catch (e) {
      throw new StateFileError(file, (e as Error).message, { cause: e });
    }
  }

  private async readReleased(): Promise<IfName[]> {
    let text: string;
    try {
      text = await readFile(this.releasedFile, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new StateFileError(this.releasedFile, (e as Error).message, { cause: e });
    }
    // Every complete line ends with '\n': the last element is '' or a torn line from a crash; drop it.
    const complete = text.split('\n').slice(0, -1);
    const out: IfName[] = [];
    complete.forEach((line, i) => {
      try {
        out.push(parseIfName(line, 'handle'));
      } catch {
        throw new StateFileError(this.releasedFile, `line ${i + 1} is not an interface name`);
      }
    });
    return out.slice(-this.maxReleased);
  }

  private async appendReleased(handle: IfName): Promise<void> {
    this.released.push(handle);
    if (this.released.length > 2 * this.maxReleased) {
      // Compact: keep the newest maxReleased, rewritten atomically.
      this.released = this.released.slice(-this.maxReleased);
      await writeDurably(this.releasedFile, this.released.map((h) => `${h}\n`).join(''), this.dir);
      return;
    }
    const fh = await open(this.releasedFile, 'a', 0o600);
    try {
      await fh.write(`${handle}\n`);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }
}

function envelope(kind: string, record: unknown): string {
  return `${JSON.stringify({ version: FORMAT_VERSION, kind, record }, null, 1)}\n`;
}

/** write temp -> fsync -> rename -> fsync dir: the file is the old or the new content, never a mix. */
async function writeDurably(file: string, content: string, dir: string): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'w', 0o600);
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
  await fsyncDir(dir);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
