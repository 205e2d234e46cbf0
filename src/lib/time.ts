/**
 * The earliest and latest instants a request may name, in UTC: years 0001 to 9999. JavaScript
 * writes years outside them with a sign ("-000001-…", "+010000-…") or as "0000-…", and
 * PostgreSQL rejects all three: without these bounds such a time reached the database and came
 * back as a 500. The bounds apply after the offset, so "9999-12-31T23:59:59-23:59" (year 10000
 * in UTC) is refused while its fields look fine.
 */
const EARLIEST_MS = Date.parse('0001-01-01T00:00:00Z');
const LATEST_MS = Date.parse('9999-12-31T23:59:59.999Z');
const RFC3339_PARTS = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2}))?/;

/**
 * Whether an RFC 3339 time from a request names a real calendar time: JavaScript rolls
 * 2024-02-30 over to 1 March and 24:00 to the next day without a word, so the fields are
 * checked as written.
 */
function isCalendarTime(text: string): boolean {
  const m = RFC3339_PARTS.exec(text);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1).map((x) => Number(x ?? 0)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return (
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59
  );
}

/**
 * A time from a request as a Date, or null when it is not a real calendar time or cannot be
 * stored and compared in PostgreSQL (outside years 0001–9999 UTC). The schema has already
 * checked the RFC 3339 form. Every route that takes a time reads it through here.
 */
export function parseRequestTime(text: string): Date | null {
  const date = new Date(text);
  const ms = date.getTime();
  if (!isCalendarTime(text) || !(ms >= EARLIEST_MS && ms <= LATEST_MS)) return null;
  return date;
}

/** Rejects when `p` has not settled within `ms`; `p` itself keeps running. */
export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
