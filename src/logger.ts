import pino from 'pino';

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

/**
 * JSON lines on stdout, written synchronously: pino's worker-thread transports do not work inside
 * a compiled binary, and a synchronous write keeps the last lines before a crash.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: redactSecrets },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
