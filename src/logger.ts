import pino from 'pino';

export type Logger = pino.Logger;

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
      formatters: { level: (label) => ({ level: label }) },
      // Defence in depth: these never reach a log line even if passed by mistake.
      redact: {
        paths: ['api_key', 'authorization', '*.api_key', '*.authorization', 'content', '*.content'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
