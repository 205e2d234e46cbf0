import { tracingChannel } from 'node:diagnostics_channel';
import pino from 'pino';
import { causes } from './lib/errors';

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
 * censored; pino's path-based `redact` re-parsed its paths on every line. An error under a key
 * other than `err` (which has its serializer) is written as `serializeError` writes it.
 */
export function redactSecrets(line: Record<string, unknown>): Record<string, unknown> {
  let out = line;
  for (const key in line) {
    const value = line[key];
    let censored: unknown = value;
    if (SECRET_KEYS.has(key)) {
      censored = CENSOR;
    } else if (value instanceof Error) {
      // Under `err` the serializer takes it whole; its fields are not looked into here.
      if (key !== 'err') censored = serializeError(value);
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

/** An error as a log line shows it: what failed and where, never a value. */
export interface LoggedError {
  /** Class name, e.g. DrizzleQueryError, PostgresError, TypeError. */
  type: string;
  /** SQLSTATE, driver or system code (23505, ECONNREFUSED, database_busy). */
  code?: string;
  /** HTTP status of an error that has one (an embeddings API answer, an AppError). */
  status?: number;
  /** PostgreSQL's names of what the error is about: schema objects, never values. */
  constraint?: string;
  table?: string;
  column?: string;
  data_type?: string;
  /** The PostgreSQL function that raised it, e.g. timestamptz_in. */
  routine?: string;
  syscall?: string;
  /** The failed statement's verb and first table, e.g. "insert messages". */
  statement?: string;
  /** Stack frames only: the first line of a stack repeats the message. */
  stack?: string;
  cause?: LoggedError;
}

const SERIALIZED = Symbol('threadstore.serializedError');
/** Causes written below an error (drizzle → postgres.js is two links). */
const MAX_CAUSE_DEPTH = 4;
const MAX_FRAMES = 12;
/** A stack frame as JavaScriptCore and V8 print it, ending in a position or a native marker. */
const FRAME = /^\s+at \S.{0,400}(?::\d+:\d+\)?|\((?:native|unknown)\))$/;
/** Identifier-shaped names only: a field that could carry anything else is left out. */
const NAME = /^[A-Za-z_][\w$.-]{0,62}$/;
/** SQLSTATEs (22008), driver codes (CONNECTION_CLOSED) and AppError codes (database_busy). */
const CODE = /^[A-Za-z0-9_.-]{1,64}$/;
/** SQL read for a statement's name: its start holds the verb and table. */
const STATEMENT_SCAN_CHARS = 4000;
/** Parentheses, string literals (skipped), quoted identifiers and words of SQL text. */
const SQL_TOKEN = /'(?:[^']|'')*'|"([^"]{1,63})"|([A-Za-z_][\w$]*)|[()]/g;
const VERBS = new Set(['select', 'insert', 'update', 'delete', 'merge', 'copy']);

function nameField(value: unknown): string | undefined {
  return typeof value === 'string' && NAME.test(value) ? value : undefined;
}

/**
 * The statement an error came from, by verb and table ("select message_search", "insert
 * messages"), read from the SQL text drizzle and postgres.js attach: the words outside
 * parentheses and quotes, so a WITH prefix is passed over. The text itself is never logged:
 * drizzle's message and `params` hold every bound value (search queries, content, ids), and
 * PostgreSQL's messages quote the values they refuse.
 */
function statementName(sqlText: unknown): string | undefined {
  if (typeof sqlText !== 'string') return undefined;
  const words: string[] = [];
  let depth = 0;
  for (const m of sqlText.slice(0, STATEMENT_SCAN_CHARS).matchAll(SQL_TOKEN)) {
    const [token, quoted, word] = m;
    if (token === '(') depth++;
    else if (token === ')') depth--;
    else if (depth === 0 && (quoted ?? word)) words.push(quoted ?? word!.toLowerCase());
  }
  const verbAt = words.findIndex((w) => VERBS.has(w));
  if (verbAt < 0) return nameField(words[0]);
  const verb = words[verbAt]!;
  const tableAt =
    verb === 'update'
      ? verbAt + 1
      : words.findIndex((w, i) => i > verbAt && /^(from|into)$/.test(w)) + 1;
  const table = tableAt > 0 ? nameField(words[tableAt]) : undefined;
  return table ? `${verb} ${table}` : verb;
}

/** Stack frames of an error, without its first line(s): those repeat the message. */
function framesOf(err: Error): string | undefined {
  if (typeof err.stack !== 'string') return undefined;
  let rest = err.stack;
  const message = typeof err.message === 'string' ? err.message : '';
  const at = message ? rest.indexOf(message) : -1;
  if (at >= 0) rest = rest.slice(at + message.length);
  const frames = rest
    .split('\n')
    .filter((line) => FRAME.test(line))
    .slice(0, MAX_FRAMES);
  return frames.length > 0 ? frames.join('\n') : undefined;
}

/**
 * The one way an error reaches a log line (pino's `err` serializer, and any error under another
 * key): class, SQLSTATE or code, constraint and the other names PostgreSQL gives, the statement
 * by verb and table, the stack frames, and the same for its causes. Never the message, the SQL
 * text, bound parameters, PostgreSQL's detail or hint, or any other field: those carry message
 * content, search queries, metadata, ids and key material.
 */
export function serializeError(err: unknown): LoggedError {
  let outermost: LoggedError | undefined;
  let innermost: LoggedError | undefined;
  for (const link of causes(err, MAX_CAUSE_DEPTH + 1)) {
    const out = serializeLink(link);
    if (innermost) innermost.cause = out;
    else outermost = out;
    // Serialized already: it brings its own causes.
    if (out === link) break;
    innermost = out;
  }
  return outermost ?? serializeLink(err);
}

/** One link of a cause chain, without its cause. */
function serializeLink(err: unknown): LoggedError {
  if (err === null || typeof err !== 'object') {
    // A thrown string or number may be anything at all.
    return { type: err === null ? 'null' : typeof err };
  }
  if ((err as { [SERIALIZED]?: true })[SERIALIZED]) return err as LoggedError;
  const e = err as Record<string, unknown>;
  // The class (DrizzleQueryError says only "Error" in its name); a plain object by its name.
  const ctor = nameField(err.constructor?.name);
  const out: LoggedError = {
    type: (ctor !== 'Object' ? ctor : undefined) ?? nameField(e.name) ?? 'Object',
  };
  Object.defineProperty(out, SERIALIZED, { value: true });
  const code =
    typeof e.code === 'number'
      ? String(e.code)
      : typeof e.code === 'string' && CODE.test(e.code)
        ? e.code
        : undefined;
  if (code) out.code = code;
  if (typeof e.status === 'number') out.status = e.status;
  const constraint = nameField(e.constraint_name ?? e.constraint);
  if (constraint) out.constraint = constraint;
  const table = nameField(e.table_name ?? e.table);
  if (table) out.table = table;
  const column = nameField(e.column_name ?? e.column);
  if (column) out.column = column;
  const dataType = nameField(e.data_type_name ?? e.dataType);
  if (dataType) out.data_type = dataType;
  const routine = nameField(e.routine);
  if (routine) out.routine = routine;
  const syscall = nameField(e.syscall);
  if (syscall) out.syscall = syscall;
  const statement = statementName(e.query);
  if (statement) out.statement = statement;
  if (err instanceof Error) {
    const stack = framesOf(err);
    if (stack) out.stack = stack;
  }
  return out;
}

/**
 * An error in one line of text with no value in it, for the places that keep a failure as a
 * string (a retention run's `error`, a message's `embedding_error`): class and code of each
 * link of the cause chain, and the statement, e.g.
 * "DrizzleQueryError: PostgresError 57014 (select messages)".
 */
export function errorSummary(err: unknown): string {
  const parts: string[] = [];
  let statement: string | undefined;
  for (const e of causes(serializeError(err), MAX_CAUSE_DEPTH + 1) as Generator<LoggedError>) {
    parts.push(e.code ? `${e.type} ${e.code}` : e.type);
    statement ??= e.statement;
  }
  return parts.join(': ') + (statement ? ` (${statement})` : '');
}

/**
 * pino takes an error's message as the line's `msg` when none is given (`logger.error(err)`,
 * `logger.warn({ err })`); the message may hold SQL parameters. The line gets the class name
 * instead.
 */
function logMethod(this: pino.Logger, args: unknown[], method: (...a: unknown[]) => void): void {
  const first = args[0];
  if (args.length === 1 && first !== null && typeof first === 'object') {
    const err = first instanceof Error ? first : (first as { err?: unknown }).err;
    if (err !== undefined && (first instanceof Error || !('msg' in first))) {
      return method.apply(this, [first, `error (${serializeError(err).type})`]);
    }
  }
  return method.apply(this, args);
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
      serializers: { err: serializeError },
      hooks: { logMethod },
    },
    destination ?? bufferedStdout(),
  );
}
