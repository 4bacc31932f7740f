/**
 * State records of another format, met by the real daemon at start (testkit launcher, a test namespace):
 * today's records (the committed format-1 fixture) load and are brought back; a record of a newer format
 * stops the daemon with a non-zero exit and a message naming the file and saying to upgrade nodenet,
 * before it changes anything on the node.
 */
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, TestScope, Topology, link, snapshot } from '@nodenet/testkit';
import { RECORD_FORMAT_VERSION } from '@nodenet/state';

const FIXTURE_V1 = fileURLToPath(new URL('../../state/test/fixtures/state-v1', import.meta.url));

describe('state record format at start', () => {
  let scope: TestScope;
  let topo: Topology;
  beforeAll(async () => {
    scope = await TestScope.create();
    topo = await Topology.create(scope, { nodes: 2 });
  });
  afterAll(() => scope.cleanup());

  async function stateFromFixture(): Promise<string> {
    const stateDir = join(await scope.createTempDir(), 'state');
    await cp(FIXTURE_V1, stateDir, { recursive: true });
    return stateDir;
  }

  it('refuses a record of a newer format: exit 1, the file named, "upgrade nodenet", the node unchanged', async () => {
    const node = topo.node(1);
    const stateDir = await stateFromFixture();
    const file = join(stateDir, 'instances', 'nni-c1d395db.json');
    const env = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...env, version: RECORD_FORMAT_VERSION + 1 }));
    const before = await snapshot(node.ns);

    const daemon = await Daemon.spawn({ scope, node, config: { stateDir } });
    const exit = await daemon.exited;
    expect(exit.exitCode).toBe(1);
    expect(daemon.stderr).toContain(file);
    expect(daemon.stderr).toMatch(
      new RegExp(`record format version ${RECORD_FORMAT_VERSION + 1}, written by a newer nodenet.*Upgrade nodenet`),
    );
    expect(daemon.logs.find((l) => l.event === 'start-failed')).toMatchObject({ exitCode: 1 });
    expect(await snapshot(node.ns)).toEqual(before);
    expect(await link(node.ns, 'nodenet0')).toBeUndefined();
    // The records are left as they were.
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ version: RECORD_FORMAT_VERSION + 1 });
  });

  it("loads today's records (format 1) and brings the recorded CNI back", async () => {
    const node = topo.node(2);
    const stateDir = await stateFromFixture();
    const daemon = await Daemon.start({ scope, node, config: { stateDir } });
    // The fixture's CNI is restored; its instances' links are gone (no such namespaces here), so they are released.
    expect((await link(node.ns, 'nodenet0'))?.operstate).toBeDefined();
    const restored = daemon.logs.find((l) => l.event === 'restored');
    expect(restored).toMatchObject({ cni: 'nodenet0', subnet: '198.19.1.0/24' });
    expect((await daemon.stop()).exitCode).toBe(0);
  });
});
