import { type SQL, sql } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import type { CursorCodec, CursorPosition } from './cursor';

/**
 * Keyset pagination over (sortKey, id): the page resumes strictly after the last row seen, so
 * no row is repeated or skipped, whatever is inserted meanwhile. Never OFFSET.
 */
export interface KeysetPage {
  order: 'asc' | 'desc';
  limit: number;
  cursor?: string;
  /** Binds cursors to the query they came from (endpoint and filters). */
  scope: string;
}

/** The WHERE fragment that starts a page after `after`, or undefined on the first page. */
export function afterPosition(
  sortCol: AnyPgColumn,
  idCol: AnyPgColumn,
  after: CursorPosition | undefined,
  order: 'asc' | 'desc',
  sortValue: (k: string) => unknown,
  /** The id to compare with, when not the cursor's own (a placeholder in a prepared query). */
  idValue: unknown = after?.i,
): SQL | undefined {
  if (!after) return undefined;
  const k = sortValue(after.k);
  return order === 'asc'
    ? sql`(${sortCol}, ${idCol}) > (${k}, ${idValue})`
    : sql`(${sortCol}, ${idCol}) < (${k}, ${idValue})`;
}

/** Cuts the extra row fetched to learn whether another page exists, and encodes its cursor. */
export function pageOf<R>(
  rows: R[],
  page: KeysetPage,
  tenantId: string,
  cursors: CursorCodec,
  position: (row: R) => CursorPosition,
): { items: R[]; nextCursor: string | null } {
  if (rows.length <= page.limit) return { items: rows, nextCursor: null };
  const items = rows.slice(0, page.limit);
  const last = items[items.length - 1]!;
  return { items, nextCursor: cursors.encode(tenantId, page.scope, position(last)) };
}
