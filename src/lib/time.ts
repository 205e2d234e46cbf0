/**
 * The earliest instant a request may name. JavaScript writes year 0 as "0000-…" and earlier
 * years with a sign ("-000001-…"), and PostgreSQL rejects both: without this bound such a time
 * reached the database and came back as a 500.
 */
const EARLIEST_MS = Date.parse('0001-01-01T00:00:00Z');

/** Whether a time parsed from a request is valid and can be stored and compared in PostgreSQL. */
export function isStorableTime(date: Date): boolean {
  return date.getTime() >= EARLIEST_MS;
}
