/** Strict Base64 for ETSI 014 `key` fields: RFC 4648 §10 test vectors, junk, and properties. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBase64Strict } from '../../drivers/qkd/etsi014/base64.js';

describe('decodeBase64Strict', () => {
  // RFC 4648 §10 "Test Vectors" (BASE64).
  const rfc4648: Array<[string, string]> = [
    ['', ''],
    ['f', 'Zg=='],
    ['fo', 'Zm8='],
    ['foo', 'Zm9v'],
    ['foob', 'Zm9vYg=='],
    ['fooba', 'Zm9vYmE='],
    ['foobar', 'Zm9vYmFy'],
  ];
  it.each(rfc4648)('RFC 4648 §10: BASE64("%s") = "%s"', (plain, encoded) => {
    expect(Buffer.from(decodeBase64Strict(encoded)!).toString('latin1')).toBe(plain);
  });

  it.each([
    ['missing padding', 'Zg'],
    ['short padding', 'Zg='],
    ['extra padding', 'Zm9v===='],
    ['padding alone', '===='],
    ['three pads', 'Z==='],
    ['non-zero pad bits (xx==)', 'Zh=='],
    ['non-zero pad bits (xxx=)', 'Zm9='],
    ['URL-safe alphabet', 'Zm-_'],
    ['whitespace inside', 'Zm9v\nYmFy'],
    ['leading space', ' Zm9v'],
    ['trailing newline', 'Zm9v\n'],
    ['padding in the middle', 'Zg==Zm9v'],
    ['non-alphabet character', 'Zm9v!mFy'],
    ['a lone character', 'Z'],
    ['non-ASCII', 'Zm9vYmF€'],
  ])('rejects %s', (_name, text) => {
    expect(decodeBase64Strict(text)).toBeUndefined();
  });

  it('round-trips any bytes encoded by Node', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const decoded = decodeBase64Strict(Buffer.from(bytes).toString('base64'));
        expect(decoded).toEqual(bytes);
      }),
    );
  });

  it('accepts only the canonical encoding of what it returns', () => {
    const alphabet = fc.constantFrom(
      ...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n'.split(''),
    );
    fc.assert(
      fc.property(fc.string({ unit: alphabet, maxLength: 24 }), (text) => {
        const decoded = decodeBase64Strict(text);
        if (decoded !== undefined) expect(Buffer.from(decoded).toString('base64')).toBe(text);
      }),
      { numRuns: 2000 },
    );
  });

  it('returns a fresh array, not a view into the shared Buffer pool', () => {
    const decoded = decodeBase64Strict('Zm9vYmFy')!;
    expect(decoded.constructor).toBe(Uint8Array);
    expect(decoded.byteOffset).toBe(0);
    expect(decoded.buffer.byteLength).toBe(6);
  });
});
