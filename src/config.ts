import { Type as T, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { randomToken } from './auth/keys';

/** Environment variables threadstore reads; `.env.example` mirrors this list key for key. */
const ConfigSchema = T.Object({
  /** TCP port the HTTP server listens on. */
  PORT: T.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  /** Interface the HTTP server binds to. */
  HOST: T.String({ minLength: 1, default: '0.0.0.0' }),
  /** PostgreSQL connection URL; when unset, the embedded PGlite database under DATA_DIR is used. */
  DATABASE_URL: T.Optional(T.String({ pattern: '^postgres(ql)?://' })),
  /** Maximum number of pooled PostgreSQL connections per process. */
  DB_POOL_MAX: T.Integer({ minimum: 1, maximum: 1000, default: 10 }),
  /**
   * Queries sent on one pooled connection before the first is answered (pipelining). More share
   * each database wake-up; a query may then wait behind those ahead of it. 1 sends one at a time.
   */
  DB_PIPELINE_DEPTH: T.Integer({ minimum: 1, maximum: 100, default: 4 }),
  /** How long to wait for a new PostgreSQL connection before answering 503. */
  DB_CONNECT_TIMEOUT_MS: T.Integer({ minimum: 100, default: 3000 }),
  /**
   * Server-side statement timeout of request queries, so a slow query cannot pin a pooled
   * connection; defaults to REQUEST_TIMEOUT_MS (0 disables it).
   */
  DB_STATEMENT_TIMEOUT_MS: T.Optional(T.Integer({ minimum: 0 })),
  /** How long a request waits for a pooled connection before it gets 503 database_busy. */
  DB_POOL_ACQUIRE_TIMEOUT_MS: T.Integer({ minimum: 1, default: 5000 }),
  /**
   * Most queries waiting for a pooled connection at once. Past it the tenant with the most
   * waiting loses its newest (429 concurrency_limited), or the newcomer gets 503 database_busy
   * when no other tenant waits.
   */
  DB_POOL_QUEUE_MAX: T.Integer({ minimum: 0, default: 1000 }),
  /** A request running longer than this gets 503 request_timeout. */
  REQUEST_TIMEOUT_MS: T.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
  /** How long in-flight requests get to finish after SIGTERM/SIGINT before the process exits. */
  SHUTDOWN_TIMEOUT_MS: T.Integer({ minimum: 0, default: 15_000 }),
  /** Directory of the embedded database (only used without DATABASE_URL). */
  DATA_DIR: T.String({ minLength: 1, default: './data' }),
  /** Bearer key for /v1/admin routes; generated per run when unset outside production. */
  ADMIN_API_KEY: T.Optional(T.String({ minLength: 16 })),
  /** Secret that signs pagination cursors; derived from ADMIN_API_KEY when unset. */
  CURSOR_SECRET: T.Optional(T.String({ minLength: 16 })),
  /** Apply pending migrations when `serve` starts. */
  MIGRATE_ON_START: T.Boolean({ default: true }),
  /** Minimum level of log lines written to stdout. */
  LOG_LEVEL: T.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => T.Literal(l)),
    { default: 'info' },
  ),
  /** `production` makes ADMIN_API_KEY mandatory. */
  NODE_ENV: T.String({ default: 'development' }),
  /** Largest accepted request body in bytes; larger bodies get 413. */
  MAX_BODY_BYTES: T.Integer({ minimum: 1024, default: 4 * 1024 * 1024 }),
  /** Largest message content in characters. */
  MAX_CONTENT_CHARS: T.Integer({ minimum: 1, maximum: 1_000_000, default: 32_000 }),
  /** How long a resolved API key is cached in process before it is looked up again. */
  AUTH_CACHE_TTL_MS: T.Integer({ minimum: 0, default: 5000 }),
  /**
   * Which X-Forwarded-For entries to believe: unset/false (none: the socket address is the
   * client), a number of proxy hops, or a comma-separated list of proxy addresses.
   */
  TRUST_PROXY: T.String({ default: 'false', pattern: '^[0-9A-Fa-f.:, ]*$|^(true|false)$' }),
  /** Count requests against the budgets below (false: no limits, e.g. when a gateway enforces them). */
  RATE_LIMIT_ENABLED: T.Boolean({ default: true }),
  /** Writes (POST/PATCH/DELETE under /v1) per tenant, or per client IP without a valid key, per window. */
  RATE_LIMIT_WRITE_PER_MINUTE: T.Integer({ minimum: 1, default: 100 }),
  /** Reads and searches per tenant, or per client IP without a valid key, per window. */
  RATE_LIMIT_READ_PER_MINUTE: T.Integer({ minimum: 1, default: 1000 }),
  /** Admin routes and probes per client IP per window, apart from tenant traffic. */
  RATE_LIMIT_ADMIN_PER_MINUTE: T.Integer({ minimum: 1, default: 600 }),
  /** Length of a rate-limit window; it starts at a key's first request. */
  RATE_LIMIT_WINDOW_MS: T.Integer({ minimum: 1000, default: 60_000 }),
  /**
   * Redis holding the rate-limit counters (redis:// or rediss://), so budgets hold across every
   * instance; unset: each process counts on its own.
   */
  REDIS_URL: T.Optional(T.String({ pattern: '^rediss?://' })),
  /** A Redis call that has not answered within this counts as a store error. */
  REDIS_TIMEOUT_MS: T.Integer({ minimum: 1, maximum: 60_000, default: 200 }),
  /** What a request gets when its rate-limit count fails: `allow` it, or `deny` it with 503. */
  RATE_LIMIT_ON_STORE_ERROR: T.Union([T.Literal('allow'), T.Literal('deny')], {
    default: 'allow',
  }),
  /** Comma-separated exact origins allowed cross-origin (empty: no cross-origin access). */
  CORS_ORIGINS: T.String({ default: '' }),
  /** How long browsers may cache a preflight answer, in seconds. */
  CORS_MAX_AGE: T.Integer({ minimum: 0, default: 600 }),
  /** How long an Idempotency-Key is remembered per tenant, in seconds. */
  IDEMPOTENCY_TTL_SECONDS: T.Integer({ minimum: 1, default: 86_400 }),
  /** Base URL of an OpenAI-compatible embeddings API (…/v1); unset: embeddings off, full-text search only. */
  EMBEDDING_URL: T.Optional(T.String({ pattern: '^https?://' })),
  /** Bearer key of the embeddings API. */
  EMBEDDING_API_KEY: T.Optional(T.String({ minLength: 1 })),
  /** Embedding model name sent to the API. */
  EMBEDDING_MODEL: T.String({ minLength: 1, default: 'text-embedding-3-small' }),
  /** Vector length; fixed once vectors are stored (a change needs a re-embed). */
  EMBEDDING_DIMENSIONS: T.Integer({ minimum: 1, maximum: 2000, default: 1536 }),
  /** Messages embedded per API call by the background worker. */
  EMBEDDING_BATCH_SIZE: T.Integer({ minimum: 1, maximum: 2048, default: 64 }),
  /** Timeout of one embeddings API call. */
  EMBEDDING_TIMEOUT_MS: T.Integer({ minimum: 100, default: 10_000 }),
  /** Retries of a failed call (timeouts, connection errors, 429, 5xx) by the background worker. */
  EMBEDDING_MAX_RETRIES: T.Integer({ minimum: 0, maximum: 10, default: 3 }),
  /**
   * Failed attempts after which a message the provider keeps failing is marked `failed`
   * (`attempts_exhausted`). Only failures of the message itself count, never an outage.
   */
  EMBEDDING_MAX_ATTEMPTS: T.Integer({ minimum: 1, maximum: 100, default: 5 }),
  /** Consecutive failures that open the circuit breaker. */
  EMBEDDING_BREAKER_THRESHOLD: T.Integer({ minimum: 1, default: 5 }),
  /** How long the open breaker fails fast before letting a probe call through. */
  EMBEDDING_BREAKER_COOLDOWN_MS: T.Integer({ minimum: 100, default: 15_000 }),
  /** Total time a search may spend embedding its query before it degrades to full-text. */
  EMBEDDING_QUERY_BUDGET_MS: T.Integer({ minimum: 50, default: 1000 }),
  /** How long the worker waits before looking for new work when the backlog is empty. */
  EMBEDDING_POLL_INTERVAL_MS: T.Integer({ minimum: 10, default: 1000 }),
  /** A worker's claim on a batch; after it expires another worker may take the batch. */
  EMBEDDING_LEASE_MS: T.Integer({ minimum: 1000, default: 120_000 }),
  /** Text search configuration of PostgreSQL for full-text search (e.g. simple, english). */
  SEARCH_LANGUAGE: T.String({ pattern: '^[a-z_]{1,63}$', default: 'simple' }),
  /** Default for new tenants: archive messages older than this many days (unset: never). */
  RETENTION_ARCHIVE_AFTER_DAYS: T.Optional(T.Integer({ minimum: 1, maximum: 36_500 })),
  /** Default for new tenants: delete messages older than this many days (unset: never). */
  RETENTION_PURGE_AFTER_DAYS: T.Optional(T.Integer({ minimum: 1, maximum: 36_500 })),
  /** How often the server runs the retention job (0: never; run it on demand instead). */
  RETENTION_INTERVAL_MS: T.Integer({ minimum: 0, default: 3_600_000 }),
  /** Time limit of one retention run (on demand or scheduled), apart from REQUEST_TIMEOUT_MS. */
  RETENTION_RUN_TIMEOUT_MS: T.Integer({ minimum: 1000, default: 300_000 }),
  /** Rows archived or purged per transaction, so the job never holds locks for long. */
  RETENTION_BATCH_SIZE: T.Integer({ minimum: 1, maximum: 100_000, default: 5000 }),
  /** Record per-request counters and latency histograms (false: /metrics keeps the other series). */
  REQUEST_METRICS: T.Boolean({ default: true }),
  /** Bearer token required by GET /metrics when set. */
  METRICS_TOKEN: T.Optional(T.String({ minLength: 16 })),
});

export type Config = Omit<Static<typeof ConfigSchema>, 'DB_STATEMENT_TIMEOUT_MS'> & {
  DB_STATEMENT_TIMEOUT_MS: number;
  /** True when ADMIN_API_KEY was generated for this run rather than configured. */
  adminKeyGenerated: boolean;
  ADMIN_API_KEY: string;
  CURSOR_SECRET: string;
};

/** Raised with every invalid variable listed, so an operator fixes them all in one go. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Parses the environment once: applies defaults, coerces strings to numbers and booleans,
 * and rejects unknown values with one readable message listing every bad variable.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(ConfigSchema.properties)) {
    const value = env[key];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  const converted = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, raw));
  const problems = [...Value.Errors(ConfigSchema, converted)].map((e) => {
    const key = e.path.slice(1);
    return `  ${key || '(root)'}: ${e.message} (got ${shownValue(key, raw[key])})`;
  });
  if (problems.length > 0) {
    throw new ConfigError(`Invalid configuration:\n${[...new Set(problems)].join('\n')}`);
  }
  const parsed = converted as Static<typeof ConfigSchema>;
  if (parsed.NODE_ENV === 'production' && !parsed.ADMIN_API_KEY) {
    throw new ConfigError(
      'Invalid configuration:\n  ADMIN_API_KEY: required when NODE_ENV=production',
    );
  }
  const adminKeyGenerated = !parsed.ADMIN_API_KEY;
  const adminKey = parsed.ADMIN_API_KEY ?? `tsadmin_${randomToken(32)}`;
  const cursorSecret =
    parsed.CURSOR_SECRET ??
    new Bun.CryptoHasher('sha256', adminKey).update('threadstore-cursor').digest('base64url');
  return {
    ...parsed,
    DB_STATEMENT_TIMEOUT_MS: parsed.DB_STATEMENT_TIMEOUT_MS ?? parsed.REQUEST_TIMEOUT_MS,
    ADMIN_API_KEY: adminKey,
    CURSOR_SECRET: cursorSecret,
    adminKeyGenerated,
  };
}

/** Variables whose values are secrets: an error message gives only their length. */
const SECRET_VARIABLES = new Set([
  'ADMIN_API_KEY',
  'CURSOR_SECRET',
  'EMBEDDING_API_KEY',
  'METRICS_TOKEN',
]);
/** Variables holding URLs, which may carry a user and password. */
const URL_VARIABLES = new Set(['DATABASE_URL', 'REDIS_URL', 'EMBEDDING_URL']);
const URL_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]{0,30}:\/\//;

/**
 * A refused value as a configuration error shows it: a secret by its length only, a URL by its
 * scheme only (a malformed URL cannot be trusted to show where its password is), anything else
 * as given.
 */
function shownValue(key: string, value: unknown): string {
  if (typeof value !== 'string') return JSON.stringify(value);
  if (SECRET_VARIABLES.has(key)) return `a secret of ${value.length} characters`;
  if (URL_VARIABLES.has(key)) {
    const scheme = URL_SCHEME.exec(value)?.[0];
    return scheme
      ? `a URL of ${value.length} characters starting ${JSON.stringify(scheme)}`
      : `a value of ${value.length} characters`;
  }
  return JSON.stringify(value);
}

/**
 * `text` with every secret of the environment replaced: the values of ADMIN_API_KEY,
 * CURSOR_SECRET, EMBEDDING_API_KEY and METRICS_TOKEN, and the user information of the URLs.
 * For messages written at start-up (a fatal error), which may quote what a library was given.
 */
export function withoutSecrets(
  text: string,
  env: Record<string, string | undefined> = process.env,
): string {
  const secrets: string[] = [];
  for (const key of SECRET_VARIABLES) {
    const value = env[key];
    if (value) secrets.push(value);
  }
  for (const key of URL_VARIABLES) {
    const value = env[key];
    if (!value) continue;
    // user:password sits between "://" and the last "@" before the path (a password may hold "@").
    const authority = value.replace(URL_SCHEME, '').split(/[/?#]/)[0] ?? '';
    const at = authority.lastIndexOf('@');
    if (at < 0) continue;
    const userinfo = authority.slice(0, at);
    const password = userinfo.slice(userinfo.indexOf(':') + 1);
    for (const s of [userinfo, password]) {
      if (!s) continue;
      secrets.push(s);
      try {
        secrets.push(decodeURIComponent(s));
      } catch {}
    }
  }
  let out = text;
  // Longest first, so a password inside a user:password pair does not leave the rest behind.
  for (const s of [...new Set(secrets)].sort((a, b) => b.length - a.length)) {
    if (s.length >= 4) out = out.split(s).join('[redacted]');
  }
  return out;
}

/** Names of every variable the configuration reads. */
export function configKeys(): string[] {
  return Object.keys(ConfigSchema.properties);
}

/** Variable families of threadstore: an unknown name in one of them is surely a misspelling. */
const FAMILIES = ['DB_', 'RATE_LIMIT_', 'REDIS_', 'EMBEDDING_', 'RETENTION_', 'SEARCH_', 'CORS_'];

/** Something in the environment that start-up reports without refusing to start. */
export interface ConfigWarning {
  /** The variable concerned, when there is one. */
  variable?: string;
  /** Its likely intended name, for a misspelling. */
  suggestion?: string;
  message: string;
}

/**
 * Start-up warnings about an environment that loads but is probably not what the operator
 * meant: a variable that looks like one of threadstore's but is not (a misspelling, a wrong
 * case, an unknown member of a family such as RATE_LIMIT_*), which would silently leave the
 * default in force; and the embedded database under NODE_ENV=production. Names only, never
 * values: a misspelled EMBEDDING_API_KEY still holds a secret.
 */
export function configWarnings(
  env: Record<string, string | undefined>,
  config: Pick<Config, 'DATABASE_URL' | 'NODE_ENV'>,
): ConfigWarning[] {
  const known = configKeys();
  const knownSet = new Set(known);
  const warnings: ConfigWarning[] = [];
  for (const name of Object.keys(env).sort()) {
    if (knownSet.has(name) || env[name] === undefined) continue;
    const suggestion = lookalike(name, known);
    if (suggestion === undefined) continue;
    warnings.push({
      variable: name,
      suggestion: suggestion || undefined,
      message: suggestion
        ? `${name} is not a threadstore variable and is ignored; did you mean ${suggestion}?`
        : `${name} is not a threadstore variable and is ignored (see .env.example)`,
    });
  }
  if (!config.DATABASE_URL && config.NODE_ENV === 'production') {
    warnings.push({
      variable: 'DATABASE_URL',
      message:
        'NODE_ENV=production on the EMBEDDED database (DATABASE_URL is unset): one process, ' +
        'one connection, no fleet, no point-in-time backup. Set DATABASE_URL to a PostgreSQL ' +
        'server for production.',
    });
  }
  return warnings;
}

/**
 * The known name `name` probably meant: the closest within a small edit distance (one edit for
 * short names, two for longer), the same name in another case, or '' for an unknown member of a
 * family. Undefined when `name` looks like nothing of threadstore's (PATH, HOME, ...).
 */
function lookalike(name: string, known: string[]): string | undefined {
  const upper = name.toUpperCase();
  let best: { key: string; distance: number } | undefined;
  for (const key of known) {
    if (upper === key) return key;
    const allowed = key.length <= 6 ? 1 : 2;
    const distance = editDistance(upper, key, allowed);
    if (distance <= allowed && (!best || distance < best.distance)) best = { key, distance };
  }
  if (best) return best.key;
  return FAMILIES.some((prefix) => upper.startsWith(prefix)) ? '' : undefined;
}

/**
 * Optimal string alignment distance (insertions, deletions, substitutions and transpositions of
 * neighbours) of `a` and `b`, or `limit + 1` as soon as it must exceed `limit`.
 */
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prev2: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, prev2[j - 2]! + 1);
      }
      row.push(d);
      rowMin = Math.min(rowMin, d);
    }
    if (rowMin > limit) return limit + 1;
    prev2 = prev;
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * Each variable's schema default (undefined where it has none), so documentation can be checked
 * against the schema instead of restating it by hand.
 */
export function configDefaults(): Record<string, unknown> {
  const props = ConfigSchema.properties as Record<string, { default?: unknown }>;
  return Object.fromEntries(Object.keys(props).map((k) => [k, props[k]!.default]));
}
