/**
 * The CNI plugin suite: what a runtime pays per container through libcni with nodenet's plugin
 * against the stock chain (bridge + host-local + portmap, containerd's default shape), ADD and DEL with one
 * published port, interleaved per round (nodenet, stock, nodenet, ...), both driven by the same libcni
 * program (packages/cni-plugin's cni-driver) in the node's namespace, as a runtime on the node would run
 * them. And the plugin's own cost, exec to exit: VERSION, and ADD against a stub daemon that answers at once
 * (so nodenetd's work is left out), timed by the driver around each exec.
 */
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { Daemon, nsExec, repoRoot, TestScope, Topology } from '@nodenet/testkit';
import type { BenchOptions } from '../options.js';
import { ratio, summarize, type Summary } from '../stats.js';

const PLUGIN_DIST = join(repoRoot, 'packages/cni-plugin/dist');
const STOCK_PLUGINS = '/usr/lib/cni';

export interface CniPluginResult {
  readonly rounds: number;
  /** The plugin alone, exec to exit (ms). */
  readonly pluginOwn: { readonly version: Summary; readonly addAgainstStub: Summary };
  /** ADD and DEL through libcni (ms), per conflist. */
  readonly nodenet: { readonly add: Summary; readonly del: Summary };
  readonly stock: { readonly add: Summary; readonly del: Summary };
  /** p50 nodenet / p50 stock chain. */
  readonly addRatio: number;
  readonly delRatio: number;
}

interface DriverOutput {
  readonly ok: boolean;
  readonly result?: unknown;
  readonly error?: { code: number; msg: string };
}

async function runDriver(ns: string, args: string[]): Promise<unknown> {
  const r = await nsExec(ns, join(PLUGIN_DIST, 'cni-driver'), args, { timeoutMs: 600_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const out = JSON.parse(line) as DriverOutput;
  if (!out.ok) throw new Error(`cni-driver ${args[0]}: ${JSON.stringify(out.error)}`);
  return out.result;
}

export async function runCniPlugin(options: BenchOptions): Promise<CniPluginResult> {
  const { rounds, warmup } = options.cniPlugin;
  const scope = await TestScope.create();
  try {
    const topo = await Topology.create(scope, { nodes: 1 });
    const node = topo.node(1);
    const daemon = await Daemon.start({ scope, node });
    const dir = await scope.createTempDir();
    const nodenetList = join(dir, 'nodenet.conflist');
    await writeFile(
      nodenetList,
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'nodenet',
        plugins: [
          {
            type: 'nodenet',
            socket: daemon.cniSocket,
            subnet: '198.19.1.0/24',
            gateway: '198.19.1.1',
            capabilities: { portMappings: true },
          },
        ],
      }),
    );
    const stockList = join(dir, 'stock.conflist');
    await writeFile(
      stockList,
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'stock',
        plugins: [
          {
            type: 'bridge',
            bridge: 'cnibench0',
            isGateway: true,
            ipMasq: true,
            hairpinMode: true,
            ipam: {
              type: 'host-local',
              ranges: [[{ subnet: '198.19.200.0/24' }]],
              routes: [{ dst: '0.0.0.0/0' }],
              dataDir: join(dir, 'host-local'),
            },
          },
          { type: 'portmap', capabilities: { portMappings: true }, snat: true },
        ],
      }),
    );
    const [nsA, nsB] = await Promise.all([topo.createInstanceNamespace(), topo.createInstanceNamespace()]);
    const common = [
      `-conflist=${nodenetList},${stockList}`,
      `-netns=/run/netns/${nsA},/run/netns/${nsB}`,
      `-id=bench-${process.pid}`,
      `-path=${PLUGIN_DIST}:${STOCK_PLUGINS}`,
      `-cache=${join(dir, 'cache')}`,
      `-ports=${JSON.stringify([{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }])}`,
    ];
    const samples = (await runDriver(node.ns, ['-op=bench', ...common, `-rounds=${rounds + warmup}`])) as {
      name: string;
      addMs: number[];
      delMs: number[];
    }[];
    const of = (name: string) => {
      const s = samples.find((x) => x.name === name)!;
      return { add: summarize(s.addMs.slice(warmup)), del: summarize(s.delMs.slice(warmup)) };
    };
    const own = (await runDriver(node.ns, ['-op=plugin-cost', `-path=${join(PLUGIN_DIST, 'nodenet')}`, `-rounds=${rounds + warmup}`])) as {
      versionMs: number[];
      addMs: number[];
    };
    const nodenet = of('nodenet');
    const stock = of('stock');
    return {
      rounds,
      pluginOwn: { version: summarize(own.versionMs.slice(warmup)), addAgainstStub: summarize(own.addMs.slice(warmup)) },
      nodenet,
      stock,
      addRatio: ratio(nodenet.add.p50, stock.add.p50),
      delRatio: ratio(nodenet.del.p50, stock.del.p50),
    };
  } finally {
    await scope.cleanup();
  }
}
