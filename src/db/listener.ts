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
  let closed = false;
  let listening = false;
  let attempt: Promise<void> | null = null;
  let retryTimer: ReturnType<typeof setTimeout> | null = null;
  let failures = 0;

  // postgres.js reads `onnotify` from its options without declaring it in its types.
  const notifications = {
    onnotify(name: string, payload: string) {
      if (name === channel && !closed) handlers.onNotify(payload);
    },
  };
  const conn = postgres(url, {
    max: 1,
    // The one connection stays open (no idle timeout by default, no lifetime): each reopening
    // costs subscribers a flush of what they cached.
    max_lifetime: null,
    connect_timeout: config.DB_CONNECT_TIMEOUT_MS / 1000,
    fetch_types: false,
    onnotice: () => {},
    connection: { application_name: 'threadstore-listen' },
    ...notifications,
    onclose() {
      if (closed) return;
      if (listening) {
        listening = false;
        logger.warn({ channel }, 'LISTEN connection lost; reconnecting');
        handlers.onState(false);
      }
      schedule(RETRY_MIN_MS);
    },
  });

  const quoted = `"${channel.replace(/"/g, '""')}"`;
  const establish = async () => {
    try {
      await conn.unsafe(`listen ${quoted}`);
      if (closed) return;
      if (failures > 0) logger.info({ channel, attempts: failures + 1 }, 'LISTEN restored');
      failures = 0;
      listening = true;
      handlers.onState(true);
    } catch (err) {
      if (closed) return;
      failures++;
      // Logged once per outage, not at every attempt.
      if (failures === 1) logger.warn({ err, channel }, 'LISTEN failed; retrying');
      schedule(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** failures));
    }
  };

  function schedule(delayMs: number) {
    if (closed || retryTimer || attempt) return;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      attempt = establish().finally(() => {
        attempt = null;
      });
    }, delayMs);
    retryTimer.unref?.();
  }

  attempt = establish().finally(() => {
    attempt = null;
  });

  return {
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      await attempt?.catch(() => {});
      await conn.end({ timeout: 1 });
    },
  };
}
