import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { exec, nsExec } from '../src/exec.js';
import { TestScope, listNamespaces, pidsInNamespace, sweepStale } from '../src/scope.js';
import { link } from '../src/inspect.js';

/** A pid that is certainly dead: a process we started and waited for. */
async function deadPid(): Promise<number> {
  const child = execa('true');
  const pid = child.pid!;
  await child;
  return pid;
}

describe('TestScope', () => {
  const scopes: TestScope[] = [];
  const leftovers: string[] = [];
  afterEach(async () => {
    for (const s of scopes.splice(0)) await s.cleanup();
    for (const ns of leftovers.splice(0)) await exec('ip', ['netns', 'del', ns], { allowFailure: true });
  });

  it('creates nnt-<pid>-<n> namespaces with lo up and deletes them, killing what runs inside', async () => {
    const scope = await TestScope.create();
    scopes.push(scope);
    const a = await scope.createNamespace();
    const b = await scope.createNamespace();
    expect(a).toMatch(new RegExp(`^nnt-${process.pid}-\\d+$`));
    expect(b).not.toBe(a);
    expect(await listNamespaces()).toEqual(expect.arrayContaining([a, b]));
    expect((await link(a, 'lo'))?.flags).toContain('UP');
    const sleeper = execa('ip', ['netns', 'exec', a, 'sleep', '600'], { reject: false });
    await expect.poll(() => pidsInNamespace(a)).toContain(sleeper.pid);
    const dir = await scope.createTempDir();
    expect(dir).toMatch(new RegExp(`/nnt-${process.pid}-\\d+-`));

    await scope.cleanup();
    const result = await sleeper;
    expect(result.signal).toBe('SIGKILL');
    const after = await listNamespaces();
    expect(after).not.toContain(a);
    expect(after).not.toContain(b);
    expect(await exec('test', ['-e', dir], { allowFailure: true })).toMatchObject({ exitCode: 1 });
  });

  it('runs deferred steps last-first, keeps going past failures and reports them', async () => {
    const scope = await TestScope.create();
    const order: string[] = [];
    scope.defer('first', () => void order.push('first'));
    scope.defer('broken', () => {
      throw new Error('boom');
    });
    scope.defer('last', () => void order.push('last'));
    const ns = await scope.createNamespace();
    await expect(scope.cleanup()).rejects.toThrow(/cleanup 'broken': boom/);
    expect(order).toEqual(['last', 'first']);
    expect(await listNamespaces()).not.toContain(ns);
  });

  it('sweeps namespaces and temp dirs of dead test processes, and nothing else', async () => {
    const dead = await deadPid();
    const stale = `nnt-${dead}-1`;
    const notOurs = `nnt-${dead}-keep`;
    const live = `nnt-${process.pid}-999999`;
    leftovers.push(stale, notOurs, live);
    for (const ns of [stale, notOurs, live]) await exec('ip', ['netns', 'add', ns]);
    const staleDir = `/tmp/nnt-${dead}-1-abc`;
    await exec('mkdir', ['-p', staleDir]);

    const report = await sweepStale();
    expect(report.namespaces).toContain(stale);
    expect(report.tempDirs).toContain(`nnt-${dead}-1-abc`);
    const after = await listNamespaces();
    expect(after).not.toContain(stale);
    expect(after).toContain(notOurs);
    expect(after).toContain(live);
    expect(await exec('test', ['-e', staleDir], { allowFailure: true })).toMatchObject({ exitCode: 1 });
  });

  it('cleans up when the test process dies without calling cleanup()', async () => {
    // A child node process (plain JS: the kit's scope module transpiled) makes a scope with a namespace,
    // then exits normally, or is ended by SIGTERM.
    const dir = await transpileKit(['scope.ts', 'exec.ts']);
    const script = `
      import { TestScope } from ${JSON.stringify(join(dir, 'scope.js'))};
      const scope = await TestScope.create();
      const ns = await scope.createNamespace();
      console.log(ns);
      if (process.argv[1] === 'signal') setInterval(() => {}, 1000); else process.exit(0);
    `;
    try {
      for (const mode of ['exit', 'signal']) {
        const child = execa(process.execPath, ['--input-type=module', '-e', script, mode], { reject: false });
        const ns = await new Promise<string>((resolve) => child.stdout.once('data', (c: Buffer) => resolve(c.toString().trim())));
        expect(ns).toMatch(/^nnt-\d+-\d+$/);
        leftovers.push(ns);
        if (mode === 'signal') {
          expect(await listNamespaces()).toContain(ns);
          child.kill('SIGTERM');
        }
        const r = await child;
        if (mode === 'signal') expect(r.signal).toBe('SIGTERM');
        expect(await listNamespaces()).not.toContain(ns);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Transpiles kit sources to plain JS in a temp dir inside the package (so `execa` resolves from there). */
async function transpileKit(files: string[]): Promise<string> {
  const ts = (await import('typescript')).default;
  const src = fileURLToPath(new URL('../src/', import.meta.url));
  const dir = await mkdtemp(join(src, '..', `.tmp-${process.pid}-`));
  for (const f of files) {
    const out = ts.transpileModule(await readFile(join(src, f), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    });
    await writeFile(join(dir, f.replace(/\.ts$/, '.js')), out.outputText);
  }
  return dir;
}

describe('exec helpers', () => {
  const scope = new TestScope();
  afterAll(() => scope.cleanup());

  it('run commands inside a namespace with argument arrays', async () => {
    const ns = await scope.createNamespace();
    const r = await nsExec(ns, 'ip', ['-j', 'link', 'show', 'lo']);
    expect((JSON.parse(r.stdout) as { ifname: string }[])[0]!.ifname).toBe('lo');
    await expect(nsExec(ns, 'ip', ['link', 'show', 'nope0'])).rejects.toThrow(/exit 1/);
    expect((await nsExec(ns, 'sh', ['-c', 'exit 3'], { allowFailure: true })).exitCode).toBe(3);
  });
});
