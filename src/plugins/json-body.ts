import { Elysia } from 'elysia';
import { errors } from '../lib/errors';
import { routePathOf } from '../lib/path';

/** Deeper JSON than this is refused before validation (metadata allows depth 5 anyway). */
const MAX_JSON_DEPTH = 32;

/**
 * The only body parser: JSON, read with a byte cap. Anything but `application/json` is 415
 * (which also stops cross-site `text/plain` form posts), over-size bodies are 413 whether or
 * not Content-Length was sent, broken JSON is 400, and strings PostgreSQL cannot store or that
 * are not well-formed Unicode (NUL, lone surrogates) are 422. Elysia's own parsers never run.
 */
export interface JsonBodyOptions {
  /**
   * Routes (registered paths) that check their body's strings themselves and get only the
   * nesting checked here: MCP answers a tool's bad arguments as a tool error, not as an HTTP
   * error (passed in by app.ts).
   */
  ownStringChecks?: readonly string[];
}

export function jsonBody(maxBytes: number, { ownStringChecks = [] }: JsonBodyOptions = {}) {
  const selfChecked = new Set(ownStringChecks);
  return new Elysia({ name: 'json-body' }).onParse(
    { as: 'global' },
    async function parseJsonBody({ request }) {
      const declared = Number(request.headers.get('content-length') ?? '0');
      if (declared > maxBytes) throw tooLarge(maxBytes);
      const text = await readCapped(request, maxBytes);
      if (text.length === 0) return undefined;
      if (!isJsonUtf8(request.headers.get('content-type'))) {
        throw errors.unsupportedMediaType();
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        throw errors.malformedJson();
      }
      // A route that checks its strings itself (MCP: checkJsonStrings) gets only the nesting
      // checked here.
      checkStrings(value, !selfChecked.has(routePathOf(request.url)));
      return value;
    },
  );
}

const tooLarge = (maxBytes: number) =>
  errors.payloadTooLarge(`The request body is larger than ${maxBytes} bytes`, {
    max_bytes: maxBytes,
  });

/**
 * `application/json` in any letter case, with no charset or with UTF-8 (the only encoding
 * JSON has, RFC 8259); a body declared in another charset would be misread, so it is 415.
 */
function isJsonUtf8(header: string | null): boolean {
  if (!header) return false;
  if (header === 'application/json') return true;
  const [type, ...params] = header.split(';');
  if (type!.trim().toLowerCase() !== 'application/json') return false;
  return params.every((param) => {
    const [name, value = ''] = param.split('=');
    if (name!.trim().toLowerCase() !== 'charset') return true;
    return /^"?utf-8"?$/i.test(value.trim());
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The body as text, never more than `maxBytes`. With a Content-Length (already checked against
 * the cap) the body is read in one go: the server reads no more than the declared length, and
 * the length is checked again in case it was not declared honestly. Without one (chunked), the
 * stream is counted as it arrives and cut off at the cap, so a huge body is never buffered.
 */
async function readCapped(request: Request, maxBytes: number): Promise<string> {
  if (!request.body) return '';
  let bytes: Uint8Array;
  if (request.headers.has('content-length')) {
    bytes = new Uint8Array(await request.arrayBuffer());
    if (bytes.byteLength > maxBytes) throw tooLarge(maxBytes);
  } else {
    bytes = await readStream(request.body, maxBytes);
  }
  try {
    return utf8.decode(bytes);
  } catch {
    throw errors.malformedJson('The request body is not valid UTF-8');
  }
}

async function readStream(body: ReadableStream<Uint8Array>, maxBytes: number) {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** Throws 422 for a string PostgreSQL cannot store or that is not well-formed Unicode. */
export function checkJsonStrings(value: unknown): void {
  checkStrings(value, true);
}

/**
 * Refuses NUL and lone surrogates anywhere in the value (keys included) when `strings`, and
 * nesting deeper than MAX_JSON_DEPTH. The walk allocates nothing while all is well; the JSON
 * Pointer of the offending value is put together only on the way back from a failure.
 */
function checkStrings(value: unknown, strings: boolean): void {
  const problem = findProblem(value, 0, strings);
  if (!problem) return;
  const path = problem.path
    .reverse()
    .map((p) => `/${p}`)
    .join('');
  throw errors.validationFailed(problem.message, { path });
}

interface Problem {
  message: string;
  /** Path segments, innermost first. */
  path: (string | number)[];
}

function findProblem(value: unknown, depth: number, strings: boolean): Problem | null {
  if (depth > MAX_JSON_DEPTH) {
    return { message: `JSON nesting deeper than ${MAX_JSON_DEPTH} levels`, path: [] };
  }
  if (typeof value === 'string') return strings ? stringProblem(value) : null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const inner = findProblem(value[i], depth + 1, strings);
      if (inner) {
        inner.path.push(i);
        return inner;
      }
    }
  } else if (value !== null && typeof value === 'object') {
    for (const key in value) {
      const inner =
        (strings ? stringProblem(key) : null) ??
        findProblem((value as Record<string, unknown>)[key], depth + 1, strings);
      if (inner) {
        inner.path.push(key);
        return inner;
      }
    }
  }
  return null;
}

function stringProblem(s: string): Problem | null {
  if (s.includes('\u0000')) {
    return { message: 'Strings may not contain NUL (\\u0000) characters', path: [] };
  }
  if (!s.isWellFormed()) {
    return { message: 'Strings must be well-formed Unicode (no lone surrogates)', path: [] };
  }
  return null;
}
