import type { Database } from './types';

/** The driver under a drizzle database or transaction: postgres.js (`unsafe`) or PGlite (`query`). */
interface DriverClient {
  unsafe?: (text: string, params: unknown[], options?: { prepare?: boolean }) => Promise<unknown>;
  query?: (text: string, params: unknown[]) => Promise<{ rows: unknown[] }>;
}

/**
 * One statement with positional parameters ($1, $2, …), sent straight to the driver of `db`
 * (a database or a transaction of either driver), rows returned as the driver decodes them.
 * For the hottest statements: drizzle's `sql` builder and its execute path cost more server CPU
 * than the driver's own work (a single-message insert: 0.16–0.29 ms through drizzle against
 * 0.11–0.17 ms straight to postgres.js, 32 concurrent writers). With postgres.js the
 * statement is prepared once per connection unless `prepare` is false (for statement texts
 * with many shapes, such as batch inserts).
 */
export async function rawQuery<T>(
  db: Database,
  text: string,
  params: unknown[],
  { prepare = true }: { prepare?: boolean } = {},
): Promise<T[]> {
  const client = (db as unknown as { session: { client: DriverClient } }).session.client;
  if (client.unsafe) return (await client.unsafe(text, params, { prepare })) as T[];
  return (await client.query!(text, params)).rows as T[];
}

/** postgres.js returns an array of rows, PGlite an object with `rows`. */
export function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  return ((result as { rows?: T[] }).rows ?? []) as T[];
}
