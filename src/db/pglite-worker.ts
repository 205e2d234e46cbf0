// The embedded database's own thread: it owns the PGlite instance and runs what the main thread
// sends (see pglite-client.ts). PGlite executes in WebAssembly on the thread that calls it; on
// the main thread one long query stalled every request, the liveness probe and the request
// timeout with them. Here a long query only delays the queries queued behind it.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Extension, PGlite, type Transaction } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
// Embedded as files so PGlite works inside the compiled binary, which has no node_modules.
import initdbWasmPath from '@electric-sql/pglite/initdb.wasm' with { type: 'file' };
import fsBundlePath from '@electric-sql/pglite/pglite.data' with { type: 'file' };
import pgliteWasmPath from '@electric-sql/pglite/pglite.wasm' with { type: 'file' };
// By path: the package's exports map lists only its JavaScript, which finds the bundle through
// import.meta.url, a path inside the binary that PGlite cannot read (see vectorExtension).
import vectorBundlePath from '../../node_modules/@electric-sql/pglite-pgvector/dist/vector.tar.gz' with { type: 'file' };
import {
  DATABASE_ERROR_FIELDS,
  type WireError,
  type WorkerReply,
  type WorkerRequest,
} from './pglite-protocol';

declare const self: Worker;

/**
 * pgvector's bundle, copied into the data directory while PGlite starts. The data directory
 * rather than a temporary one: it is the one place certain to be writable (a container may
 * well run with a read-only root filesystem).
 */
const VECTOR_BUNDLE_COPY = '.pgvector.tar.gz';

/** Thrown inside PGlite's transaction callback to make it roll back; never leaves this file. */
const ROLL_BACK = Symbol('roll back');

/** A transaction the main thread has begun and not yet ended. */
interface OpenTransaction {
  tx: Transaction;
  /** Lets the transaction callback return (commit) or throw ROLL_BACK. */
  decide(commit: boolean): void;
  /** Settles once COMMIT or ROLLBACK has run; rejects when COMMIT failed. */
  settled: Promise<void>;
}

let pg: PGlite | undefined;
const transactions = new Map<number, OpenTransaction>();

self.onmessage = (event: MessageEvent<WorkerRequest>) => {
  void answer(event.data);
};

async function answer(request: WorkerRequest): Promise<void> {
  let reply: WorkerReply;
  try {
    reply = { id: request.id, ok: true, result: await run(request) };
  } catch (err) {
    reply = { id: request.id, ok: false, error: wireError(err) };
  }
  try {
    postMessage(reply);
  } catch (err) {
    // A result that cannot be cloned: the caller still gets an answer.
    postMessage({ id: request.id, ok: false, error: wireError(err) } satisfies WorkerReply);
  }
}

async function run(request: WorkerRequest): Promise<unknown> {
  switch (request.type) {
    case 'open':
      return open(request.dataDir);
    case 'query': {
      const parsers = Object.fromEntries(request.textTypes.map((oid) => [oid, keepText]));
      const client = request.tx === undefined ? database() : transaction(request.tx).tx;
      const { rows, fields, affectedRows } = await client.query(request.sql, request.params, {
        rowMode: request.rowMode,
        parsers,
      });
      return { rows, fields, affectedRows };
    }
    case 'begin':
      return begin(request.tx);
    case 'end':
      return end(request.tx, request.commit);
    case 'close':
      await pg?.close();
      pg = undefined;
      return null;
  }
}

/** Opens (creating when absent) the database in `dataDir`; returns pgvector's version. */
async function open(dataDir: string): Promise<{ vector: string }> {
  if (pg) throw new Error('the embedded database is already open');
  const bundleCopy = join(dataDir, VECTOR_BUNDLE_COPY);
  let client: PGlite | undefined;
  try {
    const [pgliteWasmModule, initdbWasmModule] = await Promise.all([
      WebAssembly.compile(await Bun.file(pgliteWasmPath).arrayBuffer()),
      WebAssembly.compile(await Bun.file(initdbWasmPath).arrayBuffer()),
      Bun.write(bundleCopy, Bun.file(vectorBundlePath)),
    ]);
    client = await PGlite.create({
      dataDir,
      pgliteWasmModule,
      initdbWasmModule,
      fsBundle: Bun.file(fsBundlePath),
      extensions: { vector: vectorExtension(pathToFileURL(bundleCopy)) },
    });
    const version = await createVectorExtension(client);
    pg = client;
    return { vector: version };
  } catch (err) {
    await client?.close().catch(() => {});
    throw err;
  } finally {
    // PGlite has read the bundle by the time create() settles.
    rmSync(bundleCopy, { force: true });
  }
}

function database(): PGlite {
  if (!pg) throw new Error('the embedded database is not open');
  return pg;
}

function transaction(id: number): OpenTransaction {
  const open = transactions.get(id);
  if (!open) throw new Error(`transaction ${id} is not open`);
  return open;
}

/**
 * Begins a transaction that stays open across messages until `end`. PGlite's own transaction
 * holds its one session exclusively: queries sent outside it wait until it ends.
 */
async function begin(id: number): Promise<null> {
  let decide!: (commit: boolean) => void;
  const decision = new Promise<boolean>((resolve) => (decide = resolve));
  let began!: (tx: Transaction) => void;
  const started = new Promise<Transaction>((resolve) => (began = resolve));
  const settled = database().transaction(async (tx) => {
    began(tx);
    if (!(await decision)) throw ROLL_BACK;
  });
  // `settled` can only settle before `started` when BEGIN itself failed.
  const tx = await Promise.race([started, settled.then(() => started)]);
  transactions.set(id, {
    tx,
    decide,
    settled: settled.catch((err) => {
      if (err !== ROLL_BACK) throw err;
    }),
  });
  return null;
}

/** Commits or rolls back transaction `id`; rejects when COMMIT failed (it was rolled back). */
async function end(id: number, commit: boolean): Promise<null> {
  const open = transaction(id);
  transactions.delete(id);
  open.decide(commit);
  await open.settled;
  return null;
}

/** The parser for a type the caller decodes itself: PGlite hands over the text as it came. */
function keepText(value: string): string {
  return value;
}

/**
 * pgvector as the package defines it, but loaded from `bundle`. Inside the compiled binary the
 * package's own bundle path is under /$bunfs, which PGlite's fs.createReadStream cannot open.
 */
function vectorExtension(bundle: URL): Extension {
  return {
    name: vector.name,
    setup: async (pg, emscriptenOpts) => ({
      ...(await vector.setup(pg, emscriptenOpts)),
      bundlePath: bundle,
    }),
  };
}

/**
 * Creates pgvector in the database, or brings it up to the version of the library just loaded
 * (a newer binary may carry a newer pgvector than the one that created the data directory), and
 * returns its version. Failing here fails start-up: the extension ships inside this program, so
 * a failure is a packaging bug, not a missing server feature to degrade around.
 */
async function createVectorExtension(client: PGlite): Promise<string> {
  await client.exec('create extension if not exists vector; alter extension vector update');
  const { rows } = await client.query<{ extversion: string }>(
    `select extversion from pg_extension where extname = 'vector'`,
  );
  return rows[0]!.extversion;
}

/**
 * What the main thread needs of an error: its message and PostgreSQL's fields (the error
 * mapping reads `code`). Not the query or its parameters, which PGlite attaches and which hold
 * message content.
 */
function wireError(err: unknown): WireError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err), fields: {} };
  const source = err as unknown as Record<string, unknown>;
  const fields: WireError['fields'] = {};
  for (const key of DATABASE_ERROR_FIELDS) {
    const value = source[key];
    if (typeof value === 'string' || typeof value === 'number') fields[key] = value;
  }
  return { name: err.name, message: err.message, fields };
}
