/**
 * The daemon's metrics endpoint, for real: the daemon runs in a test namespace (testkit launcher), its
 * /metrics text passes `promtool check metrics`, and a real Prometheus server in the same namespace
 * scrapes it every second and answers queries: after N creates, CreateInterface/OK rose by exactly N; the
 * state gauges follow; a repair done by reconcile is counted by kind. Also: metrics over mutual TLS, and
 * `listen: ""` turning the endpoint off.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, EtcdServer, PrometheusServer, TestScope, Topology, exec, httpGetInNamespace, nsExec, snapshot } from '@nodenet/testkit';

const METRICS_PORT = 9842;

describe('metrics', () => {
  let scope: TestScope;
  let topo: Topology;
  beforeAll(async () => {
    scope = await TestScope.create();
    topo = await Topology.create(scope, { nodes: 5 });
  });
  afterAll(() => scope.cleanup());

  it('serves text that promtool accepts; a real Prometheus scrapes it and sees N creates as +N', async () => {
    const node = topo.node(1);
    // Reconcile every second, so the repair below is seen quickly.
    const daemon = await Daemon.start({ scope, node, config: { reconcileIntervalSeconds: 1 } });
    expect(daemon.logs.find((l) => l.event === 'metrics-listening')).toMatchObject({ url: `http://127.0.0.1:${METRICS_PORT}/metrics` });
    await daemon.network().createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });

    const scrape = await httpGetInNamespace(scope, node.ns, '127.0.0.1', METRICS_PORT, '/metrics');
    expect(scrape.status).toBe(200);
    expect(scrape.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const check = await exec('promtool', ['check', 'metrics'], { input: scrape.body, allowFailure: true });
    expect({ exitCode: check.exitCode, problems: `${check.stdout}${check.stderr}`.trim() }).toEqual({ exitCode: 0, problems: '' });
    expect(scrape.body).toMatch(/^nodenet_build_info\{version="[^"]+",backend="iproute2"\} 1$/m);
    expect(scrape.body).toMatch(/^nodenet_rpc_requests_total\{method="CreateContainerNetworkInterface",code="OK"\} 1$/m);
    expect(scrape.body).toMatch(/^nodenet_cni_present 1$/m);
    expect(scrape.body).toMatch(/^process_resident_memory_bytes \d+/m);
    // Commands ran (the CNI: ip, nft) and were counted by tool.
    const ipCommands = Number(/^nodenet_commands_total\{tool="ip"\} (\d+)$/m.exec(scrape.body)?.[1]);
    const nftCommands = Number(/^nodenet_commands_total\{tool="nft"\} (\d+)$/m.exec(scrape.body)?.[1]);
    expect(ipCommands + nftCommands).toBeGreaterThan(0);
    expect((await httpGetInNamespace(scope, node.ns, '127.0.0.1', METRICS_PORT, '/')).status).toBe(404);
    await checkReadmeAgainst(scrape.body, scope);

    const prometheus = await PrometheusServer.start({ scope, ns: node.ns, targets: [`127.0.0.1:${METRICS_PORT}`] });
    await prometheus.waitFor('up{job="nodenet"}', (v) => v === 1);
    const creates = 'nodenet_rpc_requests_total{method="CreateInterface",code="OK"}';
    // The series exists (at 0) before the first create: the baseline is a real sample, not an absent one.
    const before = await prometheus.waitFor(creates, (v) => v !== undefined);
    expect(before).toBe(0);

    const N = 5;
    const handles: string[] = [];
    for (let i = 0; i < N; i++) {
      handles.push(
        (await daemon.network().createInterface({ ipAddress: `198.19.1.${10 + i}`, ports: [8080 + i], portMappings: [] })).interfaceName,
      );
    }
    // A refused create counts under its own code, not under OK.
    await expect(daemon.network().createInterface({ ipAddress: '198.19.1.10', ports: [], portMappings: [] })).rejects.toMatchObject({
      code: 6,
    });

    expect(await prometheus.waitFor(creates, (v) => v === before! + N)).toBe(N);
    expect(await prometheus.waitFor('nodenet_rpc_requests_total{method="CreateInterface",code="ALREADY_EXISTS"}', (v) => v === 1)).toBe(1);
    expect(await prometheus.waitFor('nodenet_rpc_duration_seconds_count{method="CreateInterface",code="OK"}', (v) => v === N)).toBe(N);
    expect(await prometheus.waitFor('nodenet_instances{kind="veth"}', (v) => v === N)).toBe(N);
    // Each seed port is published for TCP and UDP.
    expect(await prometheus.waitFor('nodenet_published_ports{protocol="tcp"}', (v) => v === N)).toBe(N);

    // A normal workload (creates, a delete) fails no command: the failure counter has no series yet.
    await daemon.network().deleteInterface({ interfaceName: handles.pop()! });
    const afterWork = (await httpGetInNamespace(scope, node.ns, '127.0.0.1', METRICS_PORT, '/metrics')).body;
    expect(afterWork.match(/^nodenet_command_failures_total\{.*$/gm) ?? []).toEqual([]);
    expect(await prometheus.waitFor('nodenet_instances{kind="veth"}', (v) => v === N - 1)).toBe(N - 1);

    // Drift: delete an instance's veth behind the daemon's back; reconcile releases it and counts the repair.
    const hostEnd = handles[0]!.replace(/^nni-/, 'nnh-');
    await exec('ip', ['-n', node.ns, 'link', 'del', hostEnd]);
    expect(await prometheus.waitFor('sum(nodenet_reconcile_repairs_total{kind="instance_released"})', (v) => v === 1)).toBe(1);
    expect(await prometheus.waitFor('nodenet_instances{kind="veth"}', (v) => v === N - 2)).toBe(N - 2);
    expect(await prometheus.value('nodenet_reconcile_runs_total{result="repaired"}')).toBeGreaterThanOrEqual(1);
    expect(await prometheus.value('time() - nodenet_reconcile_last_run_timestamp_seconds')).toBeLessThan(60);

    expect((await daemon.stop()).exitCode).toBe(0);
  });

  it('serves metrics over mutual TLS when metrics.tls has a ca: a scraper without a client certificate is refused', async () => {
    const node = topo.node(2);
    const dir = await scope.createTempDir();
    const pem = await makeCertificates(dir);
    const daemon = await Daemon.start({
      scope,
      node,
      config: {
        metrics: { listen: `127.0.0.1:${METRICS_PORT}`, tls: { cert: pem('server.pem'), key: pem('server.key'), ca: pem('ca.pem') } },
      },
    });
    expect(daemon.logs.find((l) => l.event === 'metrics-listening')).toMatchObject({ url: `https://127.0.0.1:${METRICS_PORT}/metrics` });
    const fetchIn = (withClientCert: boolean) => {
      const options = JSON.stringify({
        host: '127.0.0.1',
        port: METRICS_PORT,
        path: '/metrics',
        servername: 'localhost',
        ca: pem('ca.pem'),
        ...(withClientCert ? { cert: pem('client.pem'), key: pem('client.key') } : {}),
      });
      // A small https client inside the namespace: prints the status, or the error code.
      const script = `const fs=require('fs'),https=require('https');const o=${options};for(const k of ['ca','cert','key'])if(o[k])o[k]=fs.readFileSync(o[k]);
        https.get(o,(r)=>{let n=0;r.on('data',(d)=>n+=d.length);r.on('end',()=>console.log('status',r.statusCode,n))}).on('error',(e)=>console.log('error',e.code||e.message))`;
      return nsExec(node.ns, process.execPath, ['-e', script]);
    };
    expect((await fetchIn(true)).stdout).toMatch(/^status 200 \d{3,}/);
    expect((await fetchIn(false)).stdout).toMatch(/^error /);
    expect((await daemon.stop()).exitCode).toBe(0);
  });

  it('listen: "" turns the endpoint off (nothing listens on the port)', async () => {
    const node = topo.node(3);
    const daemon = await Daemon.start({ scope, node, args: ['--metrics-listen', ''] });
    expect(daemon.logs.find((l) => l.event === 'start')).toMatchObject({ config: { metrics: 'off' } });
    expect(daemon.logs.some((l) => l.event === 'metrics-listening')).toBe(false);
    const listening = await nsExec(node.ns, 'ss', ['-Htln', `sport = :${METRICS_PORT}`]);
    expect(listening.stdout.trim()).toBe('');
    expect((await daemon.stop()).exitCode).toBe(0);
  });

  it('a metrics address that is taken stops the start (exit 1, naming metrics.listen) before any change to the node', async () => {
    const node = topo.node(3);
    const first = await Daemon.start({ scope, node });
    const before = await snapshot(node.ns);
    const second = await Daemon.spawn({ scope, node });
    expect((await second.exited).exitCode).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`metrics.listen: listen on 127.0.0.1:${METRICS_PORT}: .*EADDRINUSE`));
    expect(await snapshot(node.ns)).toEqual(before);
    expect((await first.stop()).exitCode).toBe(0);
  });

  it('etcd membership: connected, peers and their last change, lease renew failures while etcd is down', async () => {
    const etcd = await EtcdServer.startOnFabric(scope, topo);
    const membership = { type: 'etcd', etcd: { endpoints: [etcd.url], prefix: '/nodenet-metrics', leaseTtlSeconds: 6 } };
    const [n4, n5] = [topo.node(4), topo.node(5)];
    const a = await Daemon.start({ scope, node: n4, config: { membership } });
    const b = await Daemon.start({ scope, node: n5, config: { membership } });
    const metricOf = async (name: string): Promise<number> => {
      const body = (await httpGetInNamespace(scope, n4.ns, '127.0.0.1', METRICS_PORT, '/metrics')).body;
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(body);
      if (!m) throw new Error(`${name} is not in the scrape`);
      return Number(m[1]);
    };
    const waitMetric = async (name: string, accept: (v: number) => boolean, timeoutMs = 30_000): Promise<number> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = await metricOf(name);
        if (accept(v)) return v;
        if (Date.now() > deadline) throw new Error(`${name} is still ${v} after ${timeoutMs} ms: ${a.diagnostics()}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    await a.network().createContainerNetworkInterface({ ipAddress: '198.19.4.1', subNetwork: '198.19.4.0/24' });
    expect(await metricOf('nodenet_membership_connected')).toBe(1);
    const firstChange = await metricOf('nodenet_membership_last_peer_change_timestamp_seconds');
    expect(await metricOf('nodenet_peers')).toBe(0);

    // Node 5 joins: node 4 learns a peer and programs it.
    await b.network().createContainerNetworkInterface({ ipAddress: '198.19.5.1', subNetwork: '198.19.5.0/24' });
    await waitMetric('nodenet_peers', (v) => v === 1);
    await waitMetric('nodenet_peers_programmed', (v) => v === 1);
    expect(await metricOf('nodenet_membership_last_peer_change_timestamp_seconds')).toBeGreaterThan(firstChange);
    expect(await metricOf('nodenet_membership_lease_renew_failures_total')).toBe(0);

    // etcd goes away: the watch disconnects, keepalives fail (every ttl/3 = 2 s); the node keeps serving.
    await etcd.stop();
    await waitMetric('nodenet_membership_connected', (v) => v === 0);
    await waitMetric('nodenet_membership_lease_renew_failures_total', (v) => v >= 1);
    expect((await a.network().createInterface({ ipAddress: '198.19.4.2', ports: [], portMappings: [] })).interfaceName).toMatch(/^nni-/);
    expect((await a.stop()).exitCode).toBe(0);
    expect((await b.stop()).exitCode).toBe(0);
  });
});

/** A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with openssl. */
async function makeCertificates(dir: string): Promise<(name: string) => string> {
  const p = (n: string) => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await exec('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '1', '-subj', '/CN=metrics-test-ca']);
  const leaf = async (name: string, ext: string) => {
    await writeFile(p(`${name}.ext`), ext);
    await exec('openssl', ['req', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${name}`]);
    await exec('openssl', [
      'x509',
      '-req',
      '-in',
      p(`${name}.csr`),
      '-CA',
      p('ca.pem'),
      '-CAkey',
      p('ca.key'),
      '-CAcreateserial',
      '-out',
      p(`${name}.pem`),
      '-days',
      '1',
      '-extfile',
      p(`${name}.ext`),
    ]);
    await chmod(p(`${name}.key`), 0o600);
  };
  await leaf('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await leaf('client', 'extendedKeyUsage=clientAuth\n');
  return p;
}

const README = fileURLToPath(new URL('../../../README.md', import.meta.url));

/**
 * The README's metrics table lists exactly the nodenet_ families the daemon serves, and its alert rules
 * pass `promtool check rules` and name only metrics that exist.
 */
async function checkReadmeAgainst(exposition: string, scope: TestScope): Promise<void> {
  const readme = await readFile(README, 'utf8');
  const section = readme.slice(readme.indexOf('### Metrics'), readme.indexOf('### Alerts worth setting'));
  const documented = [...section.matchAll(/^\| `(nodenet_[a-z_]+)` \| (\w+) \|/gm)].map((m) => `${m[1]} ${m[2]}`).sort();
  const served = [...exposition.matchAll(/^# TYPE (nodenet_[a-z_]+) (\w+)$/gm)].map((m) => `${m[1]} ${m[2]}`).sort();
  expect(documented).toEqual(served);

  const alerts = readme.slice(readme.indexOf('### Alerts worth setting'));
  const rules = /```yaml\n([\s\S]*?)```/.exec(alerts)?.[1];
  expect(rules).toBeDefined();
  const dir = await scope.createTempDir();
  await writeFile(join(dir, 'rules.yml'), rules!);
  const check = await exec('promtool', ['check', 'rules', join(dir, 'rules.yml')], { allowFailure: true });
  expect(check.exitCode, check.stdout + check.stderr).toBe(0);
  // Families the daemon declares (a counter with no series yet still has its TYPE line).
  const families = new Set([...exposition.matchAll(/^# TYPE ([a-z_]+) /gm)].map((m) => m[1]!));
  for (const name of new Set(rules!.match(/\bnodenet_[a-z_]+/g) ?? [])) {
    const family = families.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    expect(families, name).toContain(family);
  }
}
