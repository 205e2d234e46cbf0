import { tracingChannel } from 'node:diagnostics_channel';
import pino from 'pino';

/**
 * Bun's TracingChannel has no `hasSubscribers` getter (oven-sh/bun#27805; Node has had it since
 * 20.13). pino skips its tracing only when that getter says `false`, so on Bun every log line
 * went through `traceSync` and its store bookkeeping, with no subscriber to see it. The getter
 * as Node defines it: any of the five channels has a subscriber. Only added where it is missing.
 */
function polyfillTracingChannelSubscribers(): void {
  const proto = Object.getPrototypeOf(tracingChannel('threadstore:probe')) as object;
  if ('hasSubscribers' in proto) return;
  Object.defineProperty(proto, 'hasSubscribers', {
    configurable: true,
    get(
      this: Record<
        'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error',
        { hasSubscribers: boolean }
      >,
    ) {
      return (
        this.start.hasSubscribers ||
        this.end.hasSubscribers ||
        this.asyncStart.hasSubscribers ||
        this.asyncEnd.hasSubscribers ||
        this.error.hasSubscribers
      );
    },
  });
}
polyfillTracingChannelSubscribers();

export type Logger = pino.Logger;

/** Keys whose values never reach a log line, at the top level or one level down. */
const SECRET_KEYS = new Set(['api_key', 'authorization', 'content']);
const CENSOR = '[redacted]';

/**
 * Defence in depth: secrets and message content are never logged even if passed by mistake.
 * A check of the line's own keys (and its objects' keys), copying only when something must be
 * censored; pino's path-based `redact` re-parsed its paths on every line.
 */
export function redactSecrets(line: Record<string, unknown>): Record<string, unknown> {
  let out = line;
  for (const key in line) {
    const value = line[key];
    let censored: unknown = value;
    if (SECRET_KEYS.has(key)) {
      censored = CENSOR;
    } else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const nested = value as Record<string, unknown>;
      for (const inner in nested) {
        if (!SECRET_KEYS.has(inner)) continue;
        if (censored === value) censored = { ...nested };
        (censored as Record<string, unknown>)[inner] = CENSOR;
      }
    }
    if (censored !== value) {
      if (out === line) out = { ...line };
      out[key] = censored;
    }
  }
  return out;
}

/** Most a buffered log waits before it is written, ms. */
export const LOG_FLUSH_INTERVAL_MS = 200;
/** Bytes of log lines gathered into one write. */
const LOG_BUFFER_BYTES = 8 * 1024;

/**
 * Log lines on stdout, gathered into writes of 8 kB and flushed at least every 200 ms and when
 * the process exits, instead of one write system call per request line. pino's worker-thread
 * transports do not work inside a compiled binary, so the buffering is sonic-boom's, on this
 * thread. A process killed outright (SIGKILL, out of memory) loses at most the last 200 ms of
 * lines.
 */
export function bufferedStdout(): pino.DestinationStream {
  const stream = pino.destination({ dest: 1, sync: false, minLength: LOG_BUFFER_BYTES });
  const timer = setInterval(() => {
    // flush() throws while the stream has not opened yet; the next tick writes.
    try {
      stream.flush();
    } catch {}
  }, LOG_FLUSH_INTERVAL_MS);
  timer.unref();
  process.once('exit', () => {
    clearInterval(timer);
    try {
      stream.flushSync();
    } catch {}
  });
  return stream;
}

/** A JSON-lines logger (stdout, buffered, unless given another destination). */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: redactSecrets },
    },
    destination ?? bufferedStdout(),
  );
}
