import { VERSION } from './version';

export type Command =
  { kind: 'serve' } | { kind: 'migrate' } | { kind: 'version' } | { kind: 'help' };

export const USAGE = `threadstore ${VERSION}: multi-tenant message store for chat and LLM applications

Usage:
  threadstore [serve]     migrate (unless MIGRATE_ON_START=false), then serve the HTTP API
  threadstore migrate     apply pending database migrations and exit
  threadstore --version   print the version
  threadstore --help      print this help

Configuration comes from the environment (see .env.example): PORT, HOST, DATABASE_URL
(unset: embedded database under DATA_DIR), ADMIN_API_KEY, LOG_LEVEL, ...`;

export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parses argv (without the runtime and script); unknown commands or flags are usage errors. */
export function parseArgs(args: string[]): Command {
  if (args.length === 0) return { kind: 'serve' };
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
