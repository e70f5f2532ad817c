/**
 * Strict standard Base64 (RFC 4648 §4), as ETSI 014 §6.3 requires for `key`.
 *
 * `Buffer.from(s, 'base64')` is lenient: it skips characters outside the alphabet, accepts the
 * URL-safe alphabet, missing padding and non-zero pad bits, so two different strings can decode
 * to the same key and a garbled key decodes to something shorter or different without an error.
 * A KME that sends such text is broken, and the key it meant is unknown — reject it.
 */

/** Whole quanta of 4, then at most one padded final quantum; nothing else (no whitespace). */
const CANONICAL_SHAPE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Letters that leave the unused low bits zero in the last character before the padding. */
const ZERO_LOW_4 = 'AQgw'; // xx== : the 2nd character carries 4 unused bits
const ZERO_LOW_2 = 'AEIMQUYcgkosw048'; // xxx= : the 3rd character carries 2 unused bits

/**
 * Decodes canonical standard Base64 into a fresh `Uint8Array` (not a view into Node's shared
 * Buffer pool, so the caller may wipe it). Returns `undefined` for anything non-canonical:
 * characters outside the alphabet, whitespace, missing or extra padding, non-zero pad bits.
 * The empty string decodes to an empty array.
 */
export function decodeBase64Strict(text: string): Uint8Array | undefined {
  if (!CANONICAL_SHAPE.test(text)) return undefined;
  if (text.endsWith('==')) {
    if (!ZERO_LOW_4.includes(text.charAt(text.length - 3))) return undefined;
  } else if (text.endsWith('=')) {
    if (!ZERO_LOW_2.includes(text.charAt(text.length - 2))) return undefined;
  }
  const pooled = Buffer.from(text, 'base64');
  const out = new Uint8Array(pooled.length);
  out.set(pooled);
  pooled.fill(0);
  return out;
}
