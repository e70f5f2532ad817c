/**
 * The one binary encoding every signed qkm structure uses: a fixed sequence of fields, each
 * `u32 big-endian length ‖ bytes`. Integers are written as fixed-width big-endian byte strings
 * inside a field, strings as UTF-8, lists as a field whose content is itself a sequence of
 * length-prefixed items. There are no optional fields, tags or padding, so every value has
 * exactly one encoding and a decoder that consumes every byte (and nothing more) is strict by
 * construction — the property a signature over "the canonical encoding" needs.
 */

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Upper bound for one field, so a hostile length prefix cannot make us allocate. */
export const MAX_FIELD_BYTES = 1 << 20;

export class EncodingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EncodingError';
  }
}

export function u8(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xff) throw new RangeError('u8 out of range');
  return Uint8Array.of(n);
}

export function u64(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError('u64 out of range');
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

export function readU8(field: Uint8Array, name: string): number {
  if (field.length !== 1) throw new EncodingError(`${name}: expected 1 byte`);
  return field[0]!;
}

export function readU64(field: Uint8Array, name: string): number {
  if (field.length !== 8) throw new EncodingError(`${name}: expected 8 bytes`);
  const v = new DataView(field.buffer, field.byteOffset, 8).getBigUint64(0);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new EncodingError(`${name}: out of range`);
  return Number(v);
}

export function str(s: string): Uint8Array {
  return utf8.encode(s);
}

export function readStr(field: Uint8Array, name: string): string {
  try {
    return utf8Strict.decode(field);
  } catch {
    throw new EncodingError(`${name}: not UTF-8`);
  }
}

/** `u32be(len(f)) ‖ f` for each field, concatenated. */
export function encodeFields(fields: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const f of fields) {
    if (f.length > MAX_FIELD_BYTES) throw new RangeError('field too long');
    total += 4 + f.length;
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let off = 0;
  for (const f of fields) {
    view.setUint32(off, f.length);
    out.set(f, off + 4);
    off += 4 + f.length;
  }
  return out;
}

/**
 * Splits `bytes` into exactly `count` length-prefixed fields; throws EncodingError on a short
 * read, an over-long length or trailing bytes. `count` undefined: as many as there are.
 */
export function decodeFields(bytes: Uint8Array, count?: number): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Uint8Array[] = [];
  let off = 0;
  while (off < bytes.length) {
    if (count !== undefined && fields.length === count) throw new EncodingError('trailing bytes');
    if (off + 4 > bytes.length) throw new EncodingError('truncated length prefix');
    const len = view.getUint32(off);
    if (len > MAX_FIELD_BYTES || off + 4 + len > bytes.length) throw new EncodingError('truncated field');
    fields.push(bytes.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  if (count !== undefined && fields.length !== count) {
    throw new EncodingError(`expected ${count} fields, got ${fields.length}`);
  }
  return fields;
}

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** RFC 4648 §5 base64url without padding. */
export function toBase64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/**
 * Strict base64url decode: only the URL-safe alphabet, no padding, and the text must be the
 * canonical encoding of the result (no stray trailing bits), so one message has one spelling.
 */
export function fromBase64url(text: string, name = 'value'): Uint8Array {
  if (typeof text !== 'string' || !B64URL.test(text) || text.length % 4 === 1) {
    throw new EncodingError(`${name}: not base64url`);
  }
  const buf = Buffer.from(text, 'base64url');
  if (buf.toString('base64url') !== text) throw new EncodingError(`${name}: non-canonical base64url`);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function fromHex(hex: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/.test(hex)) throw new EncodingError('not lowercase hex');
  return new Uint8Array(Buffer.from(hex, 'hex'));
}
