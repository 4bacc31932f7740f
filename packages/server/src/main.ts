/**
 * `nodenetd`: parse flags and config (exit 2 on any problem, before touching anything), start the daemon,
 * and stop it gracefully on SIGTERM / SIGINT (a second signal, or the timeout, cuts calls in flight off).
 */
import { parseCommandLine } from './cli.js';
import { ConfigError, loadConfig, type DaemonConfig } from './config.js';
import { BACKEND_NAMES } from './container.js';
import { startDaemon, StartError, type DaemonHandle } from './daemon.js';
import { createLogger, type DaemonLogger } from './logger.js';
import { createServiceNotifier, type ServiceNotifier } from './service-notify.js';

const SHUTDOWN_TIMEOUT_MS = 10_000;

function fail(message: string, exitCode: number): never {
  for (const line of message.split('\n')) process.stderr.write(`nodenetd: ${line}\n`);
  process.exit(exitCode);
}

async function main(): Promise<void> {
  const parsed = parseCommandLine(process.argv, { backends: BACKEND_NAMES });
  if (parsed.action === 'exit') process.exit(parsed.exitCode);
  const { configFile, flags } = parsed.commandLine;

  let config: DaemonConfig;
  try {
    config = await loadConfig({ ...(configFile !== undefined ? { file: configFile } : {}), flags, backends: BACKEND_NAMES });
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message, e.exitCode);
    throw e;
  }

  const logger = createLogger({ level: config.logLevel, nodeName: config.nodeName });
  process.on('uncaughtException', (e) => die(logger, 'uncaught exception', e));
  process.on('unhandledRejection', (e) => die(logger, 'unhandled rejection', e));
  const notifier = createServiceNotifier(process.env, process.pid, (message, err) => logger.warn({ event: 'notify-failed', err }, message));

  // Signals are caught from the start: one during the start stops the daemon as soon as it is up.
  let handle: DaemonHandle | undefined;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    logger.info({ event: 'signal', signal }, `received ${signal}`);
    if (signals > 1) {
      logger.warn({ event: 'signal', signal }, 'second signal: cutting calls in flight off');
      if (handle) handle.forceStop();
      else process.exit(1);
      return;
    }
    if (handle) void stop(handle, notifier);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // SIGHUP: reload the config (config-reload.ts); before the daemon is up it is ignored (and logged).
  process.on('SIGHUP', () => {
    logger.info(
      { event: 'signal', signal: 'SIGHUP' },
      handle ? 'received SIGHUP: reloading the config' : 'received SIGHUP before the daemon was up: ignored',
    );
    void handle?.reload(() => loadConfig({ ...(configFile !== undefined ? { file: configFile } : {}), flags, backends: BACKEND_NAMES }));
  });

  try {
    handle = await startDaemon(config, { logger });
  } catch (e) {
    const exitCode = e instanceof ConfigError || e instanceof StartError ? e.exitCode : 1;
    const message = e instanceof Error ? e.message : String(e);
    logger.fatal({ event: 'start-failed', exitCode, err: message }, 'start failed');
    fail(message, exitCode);
  }
  if (signals > 0) return void stop(handle, notifier);
  // Health is SERVING now: the restore is done and the socket listens.
  await notifier.ready(`serving on ${config.listen.uri}: ${handle.network.listInstances().length} instances`);
}

async function stop(handle: DaemonHandle, notifier: ServiceNotifier): Promise<void> {
  const stopped = handle.stop({ timeoutMs: SHUTDOWN_TIMEOUT_MS });
  await notifier.stopping('stopping: waiting for calls in flight');
  const { forced } = await stopped;
  process.exit(forced ? 1 : 0);
}

function die(logger: DaemonLogger, what: string, e: unknown): never {
  logger.fatal({ event: 'crash', err: e instanceof Error ? (e.stack ?? e.message) : String(e) }, what);
  process.exit(1);
}

await main();
