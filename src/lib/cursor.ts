import { errors } from './errors';
import { safeEqual } from '../auth/keys';

/** Position of the last row of a page: keyset pagination resumes strictly after it. */
export interface CursorPosition {
  /** Sort key of the last row (ISO timestamp, or a conversation id). */
  k: string;
  /** Tie-breaker id of the last row. */
  i: string;
}

const invalid = errors.invalidCursor;

/**
 * Opaque, signed cursors. The HMAC covers the tenant and the kind of listing, so a cursor
 * from another tenant or another endpoint, or a hand-edited one, is rejected as a 400.
 */
export class CursorCodec {
  constructor(private readonly secret: string) {}

  encode(tenantId: string, scope: string, pos: CursorPosition): string {
    const payload = Buffer.from(JSON.stringify(pos)).toString('base64url');
    return `${payload}.${this.sign(tenantId, scope, payload)}`;
  }

  decode(tenantId: string, scope: string, cursor: string): CursorPosition {
    const dot = cursor.indexOf('.');
    if (dot <= 0 || cursor.length > 1024) throw invalid();
    const payload = cursor.slice(0, dot);
    const mac = cursor.slice(dot + 1);
    const expected = this.sign(tenantId, scope, payload);
    if (!safeEqual(mac, expected)) throw invalid();
    try {
      const pos = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as CursorPosition;
      if (typeof pos?.k !== 'string' || typeof pos?.i !== 'string') throw invalid();
      return pos;
    } catch {
      throw invalid();
    }
  }

  private sign(tenantId: string, scope: string, payload: string): string {
    return new Bun.CryptoHasher('sha256', this.secret)
      .update(`${tenantId}\n${scope}\n${payload}`)
      .digest('base64url');
  }
}
