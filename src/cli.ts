import { VERSION } from './version';

/** Which probe `threadstore healthcheck` asks: liveness by default, readiness with --ready. */
export type HealthProbe = 'livez' | 'readyz';

/** What the command line asked for. */
export type Command =
  | { kind: 'serve' }
  | { kind: 'migrate' }
  | { kind: 'healthcheck'; probe: HealthProbe }
  | { kind: 'reindex-embeddings' }
  | { kind: 'retention-run' }
  | { kind: 'export'; tenantId: string }
  | { kind: 'version' }
  | { kind: 'help' };

export const USAGE = `threadstore ${VERSION}: multi-tenant message store for chat and LLM applications

Usage:
  threadstore [serve]      migrate (unless MIGRATE_ON_START=false), then serve the HTTP API
  threadstore migrate      apply pending database migrations and exit
  threadstore healthcheck [--ready]
                           exit 0 if the server on PORT answers /livez 200 (with --ready:
                           /readyz 200, the database reachable and migrated); else exit 1
  threadstore embeddings reindex
                           drop stored vectors and queue every message to be embedded again
                           with EMBEDDING_MODEL and EMBEDDING_DIMENSIONS
  threadstore retention run
                           apply every tenant's retention policy once; print the result as
                           JSON; exit 0 when the run completed or was skipped because another
                           instance holds the lock (stderr says which), 1 when it failed or
                           stopped before the end (RETENTION_RUN_TIMEOUT_MS): run it again
  threadstore export --tenant ID
                           write all of a tenant's data to stdout as NDJSON (as
                           GET /v1/admin/tenants/ID/export does); exit 1 if there is no such tenant
  threadstore --version    print the version
  threadstore --help       print this help

Exit codes: 0 success, 1 failure (configuration, database, a failed or incomplete run),
2 command-line misuse.

Configuration comes from the environment (see .env.example): PORT, HOST, DATABASE_URL
(unset: embedded database under DATA_DIR), ADMIN_API_KEY, LOG_LEVEL, ...`;

/** A command line that names no known command or flag; the entry point exits 2 on it. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parses argv (without the runtime and script); unknown commands or flags are usage errors. */
export function parseArgs(args: string[]): Command {
  if (args.length === 0) return { kind: 'serve' };
  if (args[0] === 'embeddings') {
    if (args[1] === 'reindex' && args.length === 2) return { kind: 'reindex-embeddings' };
    throw new UsageError(`unknown embeddings command: ${args.slice(1).join(' ') || '(none)'}`);
  }
  if (args[0] === 'export') return parseExport(args.slice(1));
  if (args[0] === 'retention') {
    if (args[1] === 'run' && args.length === 2) return { kind: 'retention-run' };
    throw new UsageError(`unknown retention command: ${args.slice(1).join(' ') || '(none)'}`);
  }
  if (args[0] === 'healthcheck') {
    if (args.length === 1) return { kind: 'healthcheck', probe: 'livez' };
    if (args[1] === '--ready' && args.length === 2) return { kind: 'healthcheck', probe: 'readyz' };
    throw new UsageError(`unknown healthcheck flag: ${args.slice(1).join(' ')}`);
  }
  if (args.length > 1) throw new UsageError(`unexpected argument: ${args[1]}`);
  switch (args[0]) {
    case 'serve':
      return { kind: 'serve' };
    case 'migrate':
      return { kind: 'migrate' };
    case '--version':
    case '-v':
    case 'version':
      return { kind: 'version' };
    case '--help':
    case '-h':
    case 'help':
      return { kind: 'help' };
    default:
      throw new UsageError(`unknown command or flag: ${args[0]}`);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `export --tenant ID` or `export --tenant=ID`, and nothing else. */
function parseExport(args: string[]): Command {
  const [flag, value, ...rest] = args;
  let tenantId: string | undefined;
  if (flag === '--tenant' && rest.length === 0) tenantId = value;
  else if (flag?.startsWith('--tenant=') && value === undefined) tenantId = flag.slice(9);
  else throw new UsageError('export needs exactly --tenant ID');
  if (!tenantId || !UUID.test(tenantId))
    throw new UsageError(`--tenant must be a tenant id (a UUID), not: ${tenantId ?? '(none)'}`);
  return { kind: 'export', tenantId: tenantId.toLowerCase() };
}

/** How long the health probe waits for an answer before calling the server unhealthy. */
const HEALTHCHECK_TIMEOUT_MS = 3000;

/**
 * `threadstore healthcheck [--ready]`: GETs /livez (or /readyz) of the server this configuration
 * describes and reports whether it answered 200. The binary probes itself because the runtime
 * image has no curl.
 */
export async function healthcheck(
  port: number,
  host: string,
  probe: HealthProbe = 'livez',
): Promise<boolean> {
  // A wildcard bind is reachable on loopback; a specific address only on itself.
  const target = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const authority = target.includes(':') ? `[${target}]` : target;
  try {
    const res = await fetch(`http://${authority}:${port}/${probe}`, {
      signal: AbortSignal.timeout(HEALTHCHECK_TIMEOUT_MS),
    });
    return res.status === 200;
  } catch {
    return false;
  }
}
