/**
 * Logging: pino, one JSON object per line on stdout. Every line written while an RPC is served carries
 * that RPC's request id (`reqId`), including the lines core and the adapters log, through an
 * AsyncLocalStorage context rather than a logger threaded through every call.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';
import type { LogLevel } from './config.js';

export type DaemonLogger = PinoLogger;

export interface RequestContext {
  readonly reqId: string;
  readonly method: string;
}

export const requestContext = new AsyncLocalStorage<RequestContext>();

export function createLogger(options: { level: LogLevel; nodeName?: string; destination?: DestinationStream }): DaemonLogger {
  return pino(
    {
      level: options.level,
      base: { name: 'nodenetd', pid: process.pid, ...(options.nodeName ? { node: options.nodeName } : {}) },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin: () => {
        const ctx = requestContext.getStore();
        return ctx ? { reqId: ctx.reqId } : {};
      },
    },
    // Synchronous writes: a line logged just before exit (a fatal start error, the shutdown) is not lost.
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
