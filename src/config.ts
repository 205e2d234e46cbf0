import { Type as T, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

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
  const problems = [...Value.Errors(ConfigSchema, converted)].map(
    (e) =>
      `  ${e.path.slice(1) || '(root)'}: ${e.message} (got ${JSON.stringify(raw[e.path.slice(1)])})`,
  );
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

/** Names of every variable the configuration reads. */
export function configKeys(): string[] {
  return Object.keys(ConfigSchema.properties);
}

/** `bytes` random bytes as base64url. */
export function randomToken(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString('base64url');
}
