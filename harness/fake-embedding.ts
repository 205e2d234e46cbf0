// Deterministic, dependency-free text vectors that behave enough like real embeddings for tests:
// texts sharing content words (crudely stemmed: "refund", "refunds", "refunded") point in similar
// directions, unrelated texts are nearly orthogonal. Signed feature hashing: each content word,
// and the first letters of longer words, adds ±weight to a few hashed dimensions; the sum is
// scaled to unit length, so cosine similarity is a dot product, as with OpenAI's vectors.

/** Words too common to say what a text is about. */
const STOP_WORDS = new Set(
  (
    'a an and are as at be been but by can could do does did for from had has have how i if in ' +
    'into is it its me my no not of on or our please so than that the their them then there ' +
    'these they this to us was we were what when where which who why will with would you your'
  ).split(' '),
);
/** Dimensions each feature touches: fewer collisions decide a similarity than with one. */
const SLOTS_PER_FEATURE = 2;
/** Words longer than this also add their first letters, so "refund" and "refundable" meet. */
const PREFIX_LENGTH = 4;
/** A shared stem counts for less than the same word. */
const PREFIX_WEIGHT = 0.5;

/** Lowercased words and numbers, accents removed. */
function words(text: string): string[] {
  return (
    text
      .normalize('NFKD')
      .replace(/\p{M}/gu, '')
      .toLowerCase()
      .match(/[\p{L}\p{N}]+/gu) ?? []
  );
}

/** Drops a plural or verb ending, so "refunds", "refunded" and "refund" are one word. */
function stem(word: string): string {
  if (word.length > 5 && word.endsWith('ing')) return word.slice(0, -3);
  if (word.length > 4 && word.endsWith('ed')) return word.slice(0, -2);
  if (word.length > 3 && word.endsWith('s') && !word.endsWith('ss')) return word.slice(0, -1);
  return word;
}

/** The token count reported in `usage`: every word, stop words included, at least 1 per input. */
export function tokenCount(text: string): number {
  return Math.max(1, words(text).length);
}

/** FNV-1a, then murmur3's finaliser so that every bit (the sign bit too) depends on every byte. */
function hash(feature: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < feature.length; i++) {
    h ^= feature.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function addFeature(vector: number[], feature: string, weight: number): void {
  for (let slot = 0; slot < SLOTS_PER_FEATURE; slot++) {
    const h = hash(`${slot}:${feature}`);
    const sign = h & 1 ? -1 : 1;
    const index = (h >>> 1) % vector.length;
    vector[index] = vector[index]! + sign * weight;
  }
}

/**
 * The unit vector of length `dimensions` that the fake embedding server answers for `text`.
 * Deterministic across runs and machines. A text without content words (empty, or stop words
 * only) gets the same fixed vector as every other such text.
 */
export function embedText(text: string, dimensions = 64): number[] {
  if (!Number.isInteger(dimensions) || dimensions < 1) {
    throw new RangeError(`dimensions must be a positive integer, got ${dimensions}`);
  }
  const vector = new Array<number>(dimensions).fill(0);
  for (const word of words(text)) {
    if (STOP_WORDS.has(word)) continue;
    addFeature(vector, `w:${stem(word)}`, 1);
    if (word.length > PREFIX_LENGTH) {
      addFeature(vector, `p:${word.slice(0, PREFIX_LENGTH)}`, PREFIX_WEIGHT);
    }
  }
  const norm = Math.hypot(...vector);
  // Hypot of a few thousand numbers is fine; an all-zero sum (no content words, or features
  // that cancelled out) gets a fixed direction instead of a zero vector, which has no cosine.
  if (norm === 0) return vector.fill(1 / Math.sqrt(dimensions));
  return vector.map((x) => x / norm);
}

/** Cosine similarity of two vectors of the same length (the dot product, for unit vectors). */
export function cosineSimilarity(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} and ${b.length}`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! ** 2;
    nb += b[i]! ** 2;
  }
  return dot / Math.sqrt(na * nb);
}
