// Messages between the main thread (pglite-client.ts) and the embedded database's worker
// (pglite-worker.ts). Everything here crosses a structured clone: data only, no functions.

/** A request to the worker; its reply carries the same `id`. */
export type WorkerRequest =
  | { id: number; type: 'open'; dataDir: string }
  | {
      id: number;
      type: 'query';
      sql: string;
      params: unknown[];
      rowMode: 'array' | 'object';
      /** Types left as PostgreSQL's text, for the main thread to decode (see `parsers`). */
      textTypes: number[];
      /** The transaction to run in; outside any transaction when absent. */
      tx?: number;
    }
  | { id: number; type: 'begin'; tx: number }
  | { id: number; type: 'end'; tx: number; commit: boolean }
  | { id: number; type: 'close' };

/** The worker's answer to the request with the same `id`. */
export type WorkerReply =
  { id: number; ok: true; result: unknown } | { id: number; ok: false; error: WireError };

/** An error as it crosses from the worker: PostgreSQL's fields, never the query's parameters. */
export interface WireError {
  name: string;
  message: string;
  fields: Partial<Record<(typeof DATABASE_ERROR_FIELDS)[number], string | number>>;
}

/** The fields of a PostgreSQL error (pg-protocol's DatabaseError) kept across the thread. */
export const DATABASE_ERROR_FIELDS = [
  'code',
  'severity',
  'detail',
  'hint',
  'position',
  'internalPosition',
  'internalQuery',
  'where',
  'schema',
  'table',
  'column',
  'dataType',
  'constraint',
  'routine',
] as const;

/** The shape of a query result, as PGlite returns it. */
export interface WireResults {
  rows: unknown[];
  fields: { name: string; dataTypeID: number }[];
  affectedRows?: number;
}
