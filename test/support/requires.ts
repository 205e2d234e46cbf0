// Suites that need something only .ci/run installs (pgvector today, Redis later). Locally they
// skip, loudly, so a missing piece is visible in the output instead of silently shrinking the
// run; under CI=true they fail, because there a skip would hide a broken install step.
import { describe } from 'bun:test';
import postgres from 'postgres';

/** How to get pgvector into the PostgreSQL server the tests start (see .ci/run). */
export const PGVECTOR_INSTALL =
  'sudo bash .ci/install-pgvector.sh (or set DATABASE_URL to a server with pgvector)';

/** Where requireOrSkip() looks and speaks; injectable so its CI behaviour can be tested. */
export interface RequireOptions {
  /** What is missing, for the message; defaults to "<name> is not available". */
  missing?: string;
  /** Defaults to process.env; only `CI` is read. */
  env?: Record<string, string | undefined>;
  /** Receives the skip banner; defaults to writing it to stderr. */
  warn?: (banner: string) => void;
}

/** Whether this is a CI run, where a missing requirement fails instead of skipping. */
export function isCi(env: Record<string, string | undefined> = process.env): boolean {
  return env.CI === 'true';
}

/**
 * Returns `describe` when `available`, otherwise `describe.skip` after printing a banner to
 * stderr. Under `CI=true` a missing requirement throws instead, at load time, so the test file
 * (and the run) fails.
 *
 * @example
 * const describeVector = await requirePgvector();
 * describeVector('semantic search', () => { ... });
 */
export function requireOrSkip(
  name: string,
  available: boolean,
  howToGet: string,
  options: RequireOptions = {},
): typeof describe {
  if (available) return describe;
  const missing = options.missing ?? `${name} is not available`;
  if (isCi(options.env)) {
    throw new Error(
      `${name} suites cannot run: ${missing}. CI=true, so this is a failure rather than a skip. ` +
        `Install: ${howToGet}.`,
    );
  }
  const warn = options.warn ?? ((banner: string) => process.stderr.write(banner));
  warn(
    `\n!!! SKIPPED: ${name} suites — ${missing}. Install: ${howToGet}. ` +
      `(CI=true makes this a failure.)\n\n`,
  );
  return describe.skip;
}

/** Whether the server at `url` can `CREATE EXTENSION vector`. Connection errors are thrown. */
export async function hasPgvector(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: 10, onnotice: () => {} });
  try {
    const rows = await sql`select 1 from pg_available_extensions where name = 'vector'`;
    return rows.length > 0;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * `describe` for suites that need pgvector in the test PostgreSQL (TEST_DATABASE_URL, set by
 * test/setup.ts), `describe.skip` when it is missing locally; throws under CI=true.
 */
export async function requirePgvector(
  url = process.env.TEST_DATABASE_URL,
  options: Omit<RequireOptions, 'missing'> = {},
): Promise<typeof describe> {
  if (!url) throw new Error('TEST_DATABASE_URL is not set: is test/setup.ts preloaded?');
  const available = await hasPgvector(url);
  return requireOrSkip('pgvector', available, PGVECTOR_INSTALL, {
    ...options,
    missing: 'the test PostgreSQL has no "vector" extension',
  });
}
