import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { KeyMetadata } from './interface.js';

/**
 * Encryption at rest: AES-256-GCM (NIST SP 800-38D) on node:crypto (OpenSSL).
 *
 * Two layers. The key-encryption key (KEK, the 0600 file) wraps one random 256-bit *data key*
 * per store; the data key seals each key's material. Why not seal with the KEK directly:
 * - KEK rotation rewraps one 60-byte record instead of re-encrypting every key;
 * - a wrong or replaced KEK is detected when the store opens (the wrap does not authenticate),
 *   with a clear error, instead of as a tag failure on the first take;
 * - the KEK file's bytes are used for one GCM operation per open, nothing else.
 *
 * Every sealed value is `version (1 byte) ‖ nonce (12 bytes, random) ‖ ciphertext ‖ tag (16 bytes)`.
 * The version byte is authenticated (it is the first byte of the associated data) and leaves room
 * for rotation or a new layout; an unknown version is refused, never guessed at.
 * Random 96-bit nonces keep the SP 800-38D §8.3 bound of 2³² seals per data key; at 1000 keys/s
 * that is over 130 years, and rotation (a new data key, new version) resets it.
 *
 * Key material is bound to its record: the associated data is a label plus the canonical JSON of
 * the key's immutable metadata (id, size, purpose, created, expires, owner, label, provenance). A
 * ciphertext copied onto another record, or a record whose expiry or provenance was edited in the
 * store, fails authentication instead of decrypting.
 */

export const SEAL_VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + NONCE_BYTES;
export const DATA_KEY_BYTES = 32;

const KEY_LABEL = 'qkm/key-material/v1\0';
const DATA_KEY_LABEL = 'qkm/data-key/v1\0';

/** Why a sealed value would not open. */
export class SealOpenError extends Error {
  readonly reason: 'version' | 'length' | 'auth';
  constructor(reason: 'version' | 'length' | 'auth') {
    super(`sealed value does not open (${reason})`);
    this.name = 'SealOpenError';
    this.reason = reason;
  }
}

/** The immutable part of a key's metadata: what its ciphertext is bound to. */
export type KeyBinding = Omit<KeyMetadata, 'state' | 'closedAt'>;

/** Picks the immutable fields; state and closedAt change over a key's life and are not bound. */
export function keyBinding(meta: KeyBinding): KeyBinding {
  const { id, size, purpose, created, expires, owner, label, provenance } = meta;
  return { id, size, purpose, created, expires, owner, label, provenance };
}

/** Seals key material under the store's data key, bound to the key's immutable metadata. */
export function sealKeyMaterial(dataKey: Uint8Array, material: Uint8Array, meta: KeyBinding): Uint8Array {
  return seal(dataKey, material, keyAad(meta));
}

/** Opens key material; throws `SealOpenError` if it was altered, moved or sealed under another key. */
export function openKeyMaterial(dataKey: Uint8Array, sealed: Uint8Array, meta: KeyBinding): Uint8Array {
  return open(dataKey, sealed, keyAad(meta));
}

/** Wraps a store's data key under the KEK. */
export function wrapDataKey(kek: Uint8Array, dataKey: Uint8Array): Uint8Array {
  return seal(kek, dataKey, aad(DATA_KEY_LABEL, ''));
}

/** Unwraps a store's data key; throws `SealOpenError` under the wrong KEK. */
export function unwrapDataKey(kek: Uint8Array, wrapped: Uint8Array): Uint8Array {
  const key = open(kek, wrapped, aad(DATA_KEY_LABEL, ''));
  if (key.length !== DATA_KEY_BYTES) {
    key.fill(0);
    throw new SealOpenError('length');
  }
  return key;
}

/**
 * Raw AES-256-GCM with a caller-chosen nonce, returning `ciphertext ‖ tag`. Exposed only so the
 * tests can check it against published vectors; product code seals with fresh random nonces.
 */
export function gcmEncrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  ad: Uint8Array,
): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(ad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

function seal(key: Uint8Array, plaintext: Uint8Array, adBody: Uint8Array): Uint8Array {
  const nonce = randomBytes(NONCE_BYTES);
  const version = Uint8Array.of(SEAL_VERSION);
  const body = gcmEncrypt(key, nonce, plaintext, Buffer.concat([version, adBody]));
  return Buffer.concat([version, nonce, body]);
}

function open(key: Uint8Array, sealed: Uint8Array, adBody: Uint8Array): Uint8Array {
  if (sealed.length < HEADER_BYTES + TAG_BYTES) throw new SealOpenError('length');
  if (sealed[0] !== SEAL_VERSION) throw new SealOpenError('version');
  const nonce = sealed.subarray(1, HEADER_BYTES);
  const body = sealed.subarray(HEADER_BYTES, sealed.length - TAG_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.concat([sealed.subarray(0, 1), adBody]));
  decipher.setAuthTag(tag);
  const out = decipher.update(body);
  try {
    decipher.final();
  } catch {
    // OpenSSL has already written the unauthenticated plaintext into `out`; wipe it.
    out.fill(0);
    throw new SealOpenError('auth');
  }
  // A plain Uint8Array the caller owns outright (Buffers may sit in a shared pool slab).
  const plain = Uint8Array.from(out);
  out.fill(0);
  return plain;
}

function keyAad(meta: KeyBinding): Buffer {
  return aad(KEY_LABEL, canonicalJson(keyBinding(meta)));
}

function aad(label: string, body: string): Buffer {
  return Buffer.from(label + body, 'utf8');
}

/**
 * JSON with object keys sorted at every level, after a JSON round trip — so the bytes depend only
 * on what the store persists (undefined fields dropped, dates as strings), not on key order or on
 * how the caller built the object.
 */
export function canonicalJson(value: unknown): string {
  const plain: unknown = JSON.parse(JSON.stringify(value) ?? 'null');
  return JSON.stringify(sortKeys(plain));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}
