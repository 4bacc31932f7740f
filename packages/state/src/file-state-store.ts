/**
 * The state directory: durable records of what the daemon created.
 *
 *   DIR/cni.json                 the CNI record
 *   DIR/instances/<handle>.json  one file per instance interface
 *   DIR/released.log             handles issued and since deleted, one per line (append-only)
 *
 * One file per instance keeps a create or delete to one small write, whatever the node holds. Every file
 * is written atomically and durably (write a temp file, fsync, rename over, fsync the directory), so after a
 * crash a record is either the old or the new one, never torn. A staged instance record is that temp file,
 * written while the kernel work runs; its commit is the rename and the directory's fsync.
 *
 * When `waitInline()` says nothing else is waiting, the small steps (open, write, rename, close, unlink) are
 * synchronous: each takes microseconds, while a trip through libuv's thread pool costs a thread wake-up each
 * way, which on an idle VM is the larger cost (measured here: a record took 1.0 ms hot and 3.3 ms after
 * 300 ms idle with every step async), and so are the fsyncs (write, fsync, rename, fsync dir after 300 ms
 * idle: 1.6-1.7 ms inline vs 2.6-3.0 ms through the pool). While other calls are served, a temp file is
 * written in the pool (creating a file waits for the journal that their fsyncs keep busy), and the
 * directory's fsync, like the released log's, is shared by the calls that arrived while the last one ran
 * (group commit). A staged record always syncs through the pool: the kernel work it overlaps answers meanwhile. The released log is append-only; a torn last
 * line is what a crash during a delete leaves, and is ignored (that delete was not acknowledged). A record
 * that does not parse is never silently dropped: load() fails naming the file and what to do.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  fsync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import {
  FailedPreconditionError,
  HANDLE_PREFIX,
  parseIfName,
  type CniRecord,
  type IfName,
  type InstanceRecord,
  type NodeState,
  type StagedRecord,
  type StateStore,
  stateWriteError,
} from '@nodenet/core';
import { GroupCommitter } from '@nodenet/sys';
import { recordFormatOf, upgradeRecord } from './format-version.js';
import { parseCniRecord, parseInstanceRecord } from './records.js';

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
  /** Whether to wait for the disk on the calling thread now (default: never; the daemon: when it serves one call). */
  readonly waitInline?: () => boolean;
}

export class FileStateStore implements StateStore {
  private readonly instancesDir: string;
  private readonly cniFile: string;
  private readonly releasedFile: string;
  private readonly maxReleased: number;
  private readonly waitInline: () => boolean;
  private released: IfName[] = [];
  /** Handles beginRelease() noted whose releaseInstance() has not come yet (it does not note them again). */
  private readonly releaseNoted = new Set<IfName>();
  /** One fsync per directory for all the renames and removals that arrived while the last one ran. */
  private readonly dirSyncs = new Map<string, GroupCommitter<null>>();
  /** The released log's fdatasync, shared the same way by the appends that arrived while one ran. */
  private readonly releasedSync = new GroupCommitter<null>(() => this.syncFile(this.releasedFile, 'data'));

  constructor(
    readonly dir: string,
    options: FileStateStoreOptions = {},
  ) {
    this.instancesDir = join(dir, 'instances');
    this.cniFile = join(dir, 'cni.json');
    this.releasedFile = join(dir, 'released.log');
    this.maxReleased = options.maxReleased ?? 10_000;
    this.waitInline = options.waitInline ?? (() => false);
  }

  /**
   * Reads every record, synchronously: a record is a few hundred bytes and a synchronous read takes
   * microseconds, while an asynchronous readFile is four trips through the thread pool; with 2,000 instances
   * the daemon waited ~0.6 s for them before it could restore (nothing else runs before SERVING anyway).
   */
  async load(): Promise<NodeState> {
    await mkdir(this.instancesDir, { recursive: true, mode: 0o700 });
    const cni = this.readRecord(this.cniFile, 'cni', parseCniRecord);
    const instances: InstanceRecord[] = [];
    for (const entry of readdirSync(this.instancesDir).sort()) {
      const file = join(this.instancesDir, entry);
      if (entry.includes('.tmp-')) {
        unlinkSync(file); // a write that never reached its rename: the request was not acknowledged
        continue;
      }
      if (!entry.endsWith('.json')) continue;
      const record = this.readRecord(file, 'instance', parseInstanceRecord);
      if (!record) continue;
      if (`${record.handle}.json` !== entry)
        throw new StateFileError(file, `it records handle ${record.handle}, not ${entry.slice(0, -5)}`);
      instances.push(record);
    }
    this.released = this.readReleased();
    return { cni, instances, released: [...this.released] };
  }

  async saveCni(cni: CniRecord): Promise<void> {
    await writing('write the CNI record', this.cniFile, () => this.writeDurably(this.cniFile, envelope('cni', cni), this.dir));
  }

  async deleteCni(): Promise<void> {
    await writing('remove the CNI record', this.cniFile, async () => {
      rmSync(this.cniFile, { force: true });
      await this.syncDir(this.dir);
    });
  }

  async saveInstance(record: InstanceRecord): Promise<void> {
    const file = this.instanceFile(record.handle);
    await writing(`write the record of ${record.handle}`, file, () =>
      this.writeDurably(file, envelope('instance', record), this.instancesDir),
    );
  }

  async stageInstance(record: InstanceRecord): Promise<StagedRecord> {
    const file = this.instanceFile(record.handle);
    // Never inline: the kernel work runs meanwhile and its answers must not wait behind the disk.
    const tmp = await writing(`write the record of ${record.handle}`, file, () =>
      this.writeTemp(file, envelope('instance', record), false),
    );
    let settled = false;
    return {
      commit: async () => {
        if (settled) throw new Error(`the staged record of ${record.handle} was already committed or discarded`);
        settled = true;
        try {
          await this.publish(tmp, file, this.instancesDir);
        } catch (e) {
          // Renamed but not known durable: the create is rolled back, so its record must not stay in effect
          // either (a handle is never reused: there was no older record at this name to keep).
          rmSync(file, { force: true });
          throw stateWriteError(e, `commit the record of ${record.handle}`, file);
        }
      },
      discard: async () => {
        if (settled) return;
        settled = true;
        rmSync(tmp, { force: true });
      },
    };
  }

  async beginRelease(handle: IfName): Promise<void> {
    await writing(`note the release of ${handle}`, this.releasedFile, () => this.appendReleased(handle));
    this.releaseNoted.add(handle);
  }

  async releaseInstance(handle: IfName): Promise<void> {
    // Log the release first: a crash between the two steps leaves a record whose handle is also released,
    // which load() resolves in favour of the record (the delete was not acknowledged, a retry finishes it).
    if (!this.releaseNoted.delete(handle)) {
      await writing(`note the release of ${handle}`, this.releasedFile, () => this.appendReleased(handle));
    }
    const file = this.instanceFile(handle);
    await writing(`remove the record of ${handle}`, file, async () => {
      rmSync(file, { force: true });
      await this.syncDir(this.instancesDir);
    });
  }

  private instanceFile(handle: IfName): string {
    if (!handle.startsWith(HANDLE_PREFIX)) throw new Error(`not an instance handle: ${handle}`);
    return join(this.instancesDir, `${handle}.json`);
  }

  private readRecord<T>(file: string, kind: string, parse: (v: unknown) => T): T | null {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
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
    // A newer format is refused (naming the file, saying to upgrade nodenet); an older one is upgraded in memory.
    const record = upgradeRecord(file, kind, env.version, env.record);
    try {
      return parse(record);
    } catch (e) {
      throw new StateFileError(file, (e as Error).message, { cause: e });
    }
  }

  private readReleased(): IfName[] {
    let text: string;
    try {
      text = readFileSync(this.releasedFile, 'utf8');
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
    if (this.released.length + 1 > 2 * this.maxReleased) {
      // Compact: keep the newest maxReleased, rewritten atomically.
      const kept = [...this.released, handle].slice(-this.maxReleased);
      await this.writeDurably(this.releasedFile, kept.map((h) => `${h}\n`).join(''), this.dir);
      this.released = kept;
      return;
    }
    // An append (O_APPEND, no new inode) takes microseconds; the fdatasync that follows covers every line
    // written before it started, whoever wrote it, so concurrent deletes share one.
    const fd = openSync(this.releasedFile, 'a', 0o600);
    try {
      const line = `${handle}\n`;
      const size = fstatSync(fd).size;
      try {
        // A full disk may take part of the line: cut it off, or the next line would be glued to it.
        if (writeSync(fd, line) !== Buffer.byteLength(line)) throw Object.assign(new Error('short write'), { code: 'ENOSPC' });
      } catch (e) {
        ftruncateSync(fd, size);
        throw e;
      }
    } finally {
      closeSync(fd);
    }
    await this.releasedSync.submit(null);
    this.released.push(handle);
  }

  /** write temp -> fsync -> rename -> fsync dir: the file is the old or the new content, never a mix. */
  private async writeDurably(file: string, content: string, dir: string): Promise<void> {
    await this.publish(await this.writeTemp(file, content), file, dir);
  }

  /** Writes `content` to a new temp file beside `file` and waits until it is on disk; returns its path. */
  private async writeTemp(file: string, content: string, inline = this.waitInline()): Promise<string> {
    const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
    if (!this.waitInline()) return this.writeTempInPool(tmp, content);
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, content);
      await this.syncFd(fd, 'data', inline);
    } catch (e) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw e;
    }
    closeSync(fd);
    return tmp;
  }

  /**
   * writeTemp while other calls are served: every step in the thread pool. Creating a file waits for the
   * file system's journal, which concurrent fsyncs keep busy: on the calling thread that held up every other
   * request (0.4-2 ms per record measured with 32 concurrent writers; nothing in the pool).
   */
  private async writeTempInPool(tmp: string, content: string): Promise<string> {
    const handle = await open(tmp, 'wx', 0o600);
    try {
      await handle.writeFile(content);
      await handle.datasync();
    } catch (e) {
      await handle.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw e;
    }
    await handle.close();
    return tmp;
  }

  /** Renames the temp file over `file` and makes the rename durable. */
  private async publish(tmp: string, file: string, dir: string): Promise<void> {
    try {
      renameSync(tmp, file);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
    await this.syncDir(dir);
  }

  /**
   * Makes the renames and removals in `dir` durable: resolves after an fsync of `dir` that started after
   * this call. Calls that arrive while one runs share the next (group commit), so 32 concurrent creates
   * wait for 2 directory fsyncs instead of queueing 32 in the 4-thread pool.
   */
  private syncDir(dir: string): Promise<void> {
    let group = this.dirSyncs.get(dir);
    if (!group) {
      group = new GroupCommitter<null>(() => this.syncFile(dir, 'all'));
      this.dirSyncs.set(dir, group);
    }
    return group.submit(null);
  }

  private async syncFile(path: string, what: 'data' | 'all'): Promise<void> {
    const fd = openSync(path, 'r');
    try {
      await this.syncFd(fd, what, this.waitInline());
    } finally {
      closeSync(fd);
    }
  }

  private async syncFd(fd: number, what: 'data' | 'all', inline: boolean): Promise<void> {
    if (inline) {
      if (what === 'data') fdatasyncSync(fd);
      else fsyncSync(fd);
      return;
    }
    await (what === 'data' ? fdatasyncAsync(fd) : fsyncAsync(fd));
  }
}

/** Runs a write of `path`; a failure becomes the status the client gets (read-only, full: see core's stateWriteError). */
async function writing<T>(step: string, path: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (e) {
    throw stateWriteError(e, step, path);
  }
}

const fdatasyncAsync = promisify(fdatasync);
const fsyncAsync = promisify(fsync);

function envelope(kind: string, record: unknown): string {
  return `${JSON.stringify({ version: recordFormatOf(kind, record), kind, record }, null, 1)}\n`;
}
