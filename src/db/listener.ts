import postgres from 'postgres';
import type { Config } from '../config';
import type { Logger } from '../logger';

/** What a subscription to a NOTIFY channel reports. */
export interface ChannelHandlers {
  /** A notification's payload, as soon as it arrives. */
  onNotify(payload: string): void;
  /**
   * `true` each time LISTEN is in place (at first and after every reconnection), `false` when its
   * connection is lost. Notifications sent while it was down are lost: the subscriber must assume
   * it missed some when it hears `true` again.
   */
  onState(listening: boolean): void;
  /**
   * Every notification committed before `at` (a `Date.now()` reading) has been passed to
   * `onNotify`. Reported when LISTEN takes effect and after each answered heartbeat.
   */
  onHeard(at: number): void;
}

/** Stops a subscription and closes its connection. */
export interface Subscription {
  close(): Promise<void>;
}

/** First wait before LISTEN is tried again after its connection was lost or refused. */
const RETRY_MIN_MS = 100;
/** Longest wait between attempts: while down, every change waits on the fallback bound instead. */
const RETRY_MAX_MS = 2000;
/**
 * A query on the listening connection this often. PostgreSQL sends the notifications a session
 * has pending before answering its query, so an answer proves that every change committed before
 * the query was sent has been heard; a connection that silently stopped delivering (a network
 * partition, a hung server) is noticed within a heartbeat instead of TCP keepalive's minutes.
 */
const HEARTBEAT_INTERVAL_MS = 250;
/** A heartbeat (or LISTEN) unanswered this long: the connection is dropped and opened again. */
const HEARTBEAT_TIMEOUT_MS = 3000;

/**
 * Listens on `channel` over a PostgreSQL connection of its own, outside the request pool (and its
 * gate, so it never takes a permit from requests) and outside DB_STATEMENT_TIMEOUT_MS.
 *
 * Not postgres.js's `sql.listen`: when its connection closes, that tries LISTEN again once and,
 * if the server is still away, drops the subscription for good; nor does it say when it is down.
 * Here LISTEN is retried until it succeeds, and every loss and recovery is reported.
 */
export function listenPostgres(
  url: string,
  config: Config,
  logger: Logger,
  channel: string,
  handlers: ChannelHandlers,
): Subscription {
  const quoted = `"${channel.replace(/"/g, '""')}"`;
  let closed = false;
  /** The connection of the current attempt; each attempt gets a client of its own. */
  let current: postgres.Sql | null = null;
  let retryTimer: ReturnType<typeof setTimeout> | null = null;
  /** Attempts failed since LISTEN last worked. */
  let failures = 0;
  let lost = false;

  function connect() {
    retryTimer = null;
    if (closed) return;
    let up = false;
    let heartbeat: ReturnType<typeof setTimeout> | null = null;
    // postgres.js reads `onnotify` from its options without declaring it in its types.
    const notifications = {
      onnotify(name: string, payload: string) {
        if (name === channel && current === conn) handlers.onNotify(payload);
      },
    };
    const conn: postgres.Sql = postgres(url, {
      max: 1,
      // The one connection stays open (no idle timeout by default, no lifetime): each reopening
      // costs subscribers a flush of what they cached.
      max_lifetime: null,
      connect_timeout: config.DB_CONNECT_TIMEOUT_MS / 1000,
      fetch_types: false,
      onnotice: () => {},
      connection: { application_name: 'threadstore-listen' },
      ...notifications,
      onclose: () => fail(),
    });
    current = conn;

    /** Ends this attempt (once, whichever failure comes first) and schedules the next. */
    const fail = (err?: unknown) => {
      if (current !== conn) return;
      current = null;
      if (heartbeat) clearTimeout(heartbeat);
      void conn.end({ timeout: 0 }).catch(() => {});
      if (up) {
        lost = true;
        logger.warn({ err, channel }, 'LISTEN connection lost; reconnecting');
        handlers.onState(false);
      } else if (++failures === 1) {
        // Logged once per outage, not at every attempt.
        logger.warn({ err, channel }, 'LISTEN failed; retrying');
      }
      if (closed) return;
      const delay = up ? RETRY_MIN_MS : Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** failures);
      retryTimer = setTimeout(connect, delay);
      retryTimer.unref?.();
    };

    const beat = async () => {
      const sent = Date.now();
      try {
        await withTimeout(conn`select 1`, HEARTBEAT_TIMEOUT_MS);
      } catch (err) {
        fail(err);
        return;
      }
      if (current !== conn) return;
      handlers.onHeard(sent);
      heartbeat = setTimeout(beat, HEARTBEAT_INTERVAL_MS);
      heartbeat.unref?.();
    };

    const sent = Date.now();
    withTimeout(conn.unsafe(`listen ${quoted}`), HEARTBEAT_TIMEOUT_MS).then(() => {
      if (current !== conn) return;
      if (lost || failures > 0) logger.info({ channel, attempts: failures + 1 }, 'LISTEN restored');
      up = true;
      lost = false;
      failures = 0;
      handlers.onState(true);
      handlers.onHeard(sent);
      heartbeat = setTimeout(beat, HEARTBEAT_INTERVAL_MS);
      heartbeat.unref?.();
    }, fail);
  }

  connect();

  return {
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      const conn = current;
      current = null;
      await conn?.end({ timeout: 1 });
    },
  };
}

/** Rejects when `p` has not settled within `ms`. */
function withTimeout<T>(p: PromiseLike<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
