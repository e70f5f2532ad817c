/** Byte-string helpers for the DRBG mechanisms (big-endian arithmetic as SP 800-90A uses it). */

/** Concatenation into a fresh buffer. */
export function concatBytes(...parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

/**
 * `dst = (dst + src) mod 2^(8·dst.length)`, both read as big-endian integers, `src` aligned to
 * the right (it may be shorter than `dst`).
 */
export function addInto(dst: Uint8Array, src: Uint8Array): void {
  let carry = 0;
  let j = src.length - 1;
  for (let i = dst.length - 1; i >= 0; i--, j--) {
    const sum = (dst[i] as number) + (j >= 0 ? (src[j] as number) : 0) + carry;
    dst[i] = sum & 0xff;
    carry = sum >>> 8;
    if (j < 0 && carry === 0) break;
  }
}

/**
 * `dst = (dst + n) mod 2^(8·dst.length)` for a non-negative safe integer `n`, big-endian.
 * Used for the CTR_DRBG counter V and the Hash_DRBG reseed_counter addition.
 */
export function addNumberInto(dst: Uint8Array, n: number): void {
  let carry = n;
  for (let i = dst.length - 1; i >= 0 && carry > 0; i--) {
    const sum = (dst[i] as number) + (carry % 256);
    dst[i] = sum & 0xff;
    carry = Math.floor(carry / 256) + (sum >>> 8);
  }
}

/** `a ^= b` over the first b.length bytes of a (b.length ≤ a.length). */
export function xorInto(a: Uint8Array, b: Uint8Array): void {
  for (let i = 0; i < b.length; i++) a[i] = (a[i] as number) ^ (b[i] as number);
}

/** 32-bit big-endian encoding. */
export function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}
