/**
 * deriveKeys computes HKDF-SHA-256 with OpenSSL's HMAC (single-block Expand, L = 32). It must be
 * byte-for-byte RFC 5869 HKDF as an independent implementation computes it (@noble/hashes), for
 * any ML-KEM secret, any number of QKD keys, any salt and transcript hash.
 */
import { expand, extract } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes } from '@noble/hashes/utils.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deriveKeys } from '../../src/session/transcript.js';

const te = new TextEncoder();

function reference(ss: Uint8Array, qkd: Uint8Array[], r: Uint8Array, th: Uint8Array) {
  const prk = extract(sha256, concatBytes(ss, ...qkd), r);
  const key = expand(sha256, prk, concatBytes(te.encode('qkm/v1'), th), 32);
  const confirmKey = expand(sha256, prk, concatBytes(te.encode('qkm/v1 confirm-key'), th), 32);
  const confirmTag = hmac(sha256, confirmKey, concatBytes(te.encode('qkm/v1 confirm'), th));
  return { key, confirmKey, confirmTag };
}

describe('deriveKeys', () => {
  it('equals RFC 5869 HKDF-SHA-256 from an independent implementation', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 3 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        (ss, qkd, r, th) => {
          const got = deriveKeys(ss, qkd, r, th);
          const want = reference(ss, qkd, r, th);
          expect(Buffer.from(got.key).toString('hex')).toBe(Buffer.from(want.key).toString('hex'));
          expect(Buffer.from(got.confirmKey).toString('hex')).toBe(
            Buffer.from(want.confirmKey).toString('hex'),
          );
          expect(Buffer.from(got.confirmTag).toString('hex')).toBe(
            Buffer.from(want.confirmTag).toString('hex'),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('leaves its inputs untouched and returns plain Uint8Arrays', () => {
    const ss = new Uint8Array(32).fill(7);
    const out = deriveKeys(ss, [new Uint8Array(32).fill(9)], new Uint8Array(32), new Uint8Array(32));
    expect(ss.every((b) => b === 7)).toBe(true);
    expect(Object.getPrototypeOf(out.key)).toBe(Uint8Array.prototype);
    expect(out.key).toHaveLength(32);
  });
});
