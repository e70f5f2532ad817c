import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { sha256 } from '@noble/hashes/sha2.js';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';

/**
 * Secure messages over a qkm session (QSC paper §3.4, eq. 9–12): AES-256-GCM with a fresh
 * 96-bit nonce per message, the sender's ML-DSA-65 signature over a SHA3-256 digest of
 * (header, ciphertext, nonce, aad), and receiver-side replay rejection by nonce.
 *
 * Wire format (every field `u32be length ‖ bytes`, in this order):
 *   header     "QKMS" ‖ 0x01 (version) ‖ direction (0x01 initiator→responder, 0x02 reverse)
 *              ‖ u8 len(session id) ‖ session id (UTF-8)
 *   nonce      12 bytes: 4-byte random prefix ‖ u64be counter
 *   aad        caller's associated data (may be empty)
 *   ciphertext AES-256-GCM(key_dir, nonce, payload, AAD = fields(header, aad)) ‖ 16-byte tag
 *   signature  ML-DSA-65(ctx "qkm/v1 message") over
 *              SHA3-256(fields("qkm/v1 message", header, ciphertext, nonce, aad)), 3309 bytes
 * key_dir = HKDF-SHA-256(IKM = K, salt = empty, info = "qkm/v1 msg i2r" | "qkm/v1 msg r2i" ‖ session id, 32).
 *
 * Why per-direction keys: both agents hold the same K and both send; with one key their nonce
 * spaces would overlap and a GCM nonce reuse breaks confidentiality and authenticity. Why a
 * counter: within one direction a counter can never repeat (random 96-bit nonces would risk a
 * birthday collision after ~2^32 messages). Why a random prefix: a sender that loses its
 * counter (a restart that re-creates the channel from a stored K) starts a fresh nonce space
 * instead of reusing counter values already used.
 */

const MAGIC = new TextEncoder().encode('QKMS');
const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const SIGNATURE_BYTES = 3309;
const LABEL = new TextEncoder().encode('qkm/v1 message');
const DSA_CTX = LABEL;
/** NIST SP 800-38D §8.3 caps invocations per key; we stop a direction well before counters could wrap. */
const MAX_MESSAGES = 2n ** 32n;
const MAX_FIELD = 64 * 1024 * 1024;

export type SecureMessageErrorCode =
  | 'MESSAGE_MALFORMED'
  | 'MESSAGE_WRONG_SESSION'
  | 'MESSAGE_REPLAYED'
  | 'MESSAGE_BAD_SIGNATURE'
  | 'MESSAGE_DECRYPT_FAILED'
  | 'MESSAGE_AAD_MISMATCH'
  | 'CHANNEL_EXHAUSTED';

/** Every rejection of `open` (and `seal` at exhaustion). Messages never contain key or payload bytes. */
export class SecureMessageError extends Error {
  constructor(
    readonly code: SecureMessageErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SecureMessageError';
  }
}

export type Role = 'initiator' | 'responder';

/**
 * One end of a secure channel over a session. Holds the session key (as two per-direction
 * keys), this side's ML-DSA-65 secret key and the peer's public key, and mutable state (the
 * send counter and the set of nonces already accepted). Not safe to share across processes.
 */
export interface SecureChannel {
  readonly sessionId: string;
  readonly role: Role;
  readonly signingSecretKey: Uint8Array;
  readonly peerPublicKey: Uint8Array;
  /** @internal */ readonly sendKey: Uint8Array;
  /** @internal */ readonly recvKey: Uint8Array;
  /** @internal */ readonly sendPrefix: Uint8Array;
  /** @internal */ sendCounter: bigint;
  /** @internal hex nonces accepted so far. */ readonly seen: Set<string>;
  /** Refuse to accept more than this many messages (bounds the replay set), default 2^20. */
  readonly maxReceived: number;
}

export interface SecureChannelOptions {
  sessionId: string;
  /** The 32-byte session key K from `initiate`/`accept`. */
  key: Uint8Array;
  /** Which side of the handshake this agent was on. */
  role: Role;
  signingSecretKey: Uint8Array;
  peerPublicKey: Uint8Array;
  maxReceived?: number;
}

const enc = new TextEncoder();

function directionKey(key: Uint8Array, dir: 'i2r' | 'r2i', sessionId: string): Uint8Array {
  return hkdf(
    sha256,
    key,
    new Uint8Array(0),
    concat(enc.encode(`qkm/v1 msg ${dir}`), enc.encode(sessionId)),
    32,
  );
}

export function createSecureChannel(o: SecureChannelOptions): SecureChannel {
  if (!(o.key instanceof Uint8Array) || o.key.length !== 32) throw new RangeError('key must be 32 bytes');
  const sid = enc.encode(o.sessionId);
  if (typeof o.sessionId !== 'string' || sid.length === 0 || sid.length > 255) {
    throw new RangeError('sessionId must be 1-255 UTF-8 bytes');
  }
  if (o.role !== 'initiator' && o.role !== 'responder')
    throw new TypeError('role must be initiator or responder');
  if (
    !(o.signingSecretKey instanceof Uint8Array) ||
    o.signingSecretKey.length !== ml_dsa65.lengths.secretKey
  ) {
    throw new RangeError('signingSecretKey must be an ML-DSA-65 secret key');
  }
  if (!(o.peerPublicKey instanceof Uint8Array) || o.peerPublicKey.length !== ml_dsa65.lengths.publicKey) {
    throw new RangeError('peerPublicKey must be an ML-DSA-65 public key');
  }
  const i2r = directionKey(o.key, 'i2r', o.sessionId);
  const r2i = directionKey(o.key, 'r2i', o.sessionId);
  return {
    sessionId: o.sessionId,
    role: o.role,
    signingSecretKey: o.signingSecretKey,
    peerPublicKey: o.peerPublicKey,
    sendKey: o.role === 'initiator' ? i2r : r2i,
    recvKey: o.role === 'initiator' ? r2i : i2r,
    sendPrefix: new Uint8Array(randomBytes(4)),
    sendCounter: 0n,
    seen: new Set(),
    maxReceived: o.maxReceived ?? 1 << 20,
  };
}

const dirCode = (sender: Role) => (sender === 'initiator' ? 1 : 2);

function header(sender: Role, sessionId: string): Uint8Array {
  const sid = enc.encode(sessionId);
  return concat(MAGIC, Uint8Array.of(VERSION, dirCode(sender), sid.length), sid);
}

function toBytes(v: Uint8Array | string | undefined, name: string): Uint8Array {
  if (v === undefined) return new Uint8Array(0);
  if (typeof v === 'string') return enc.encode(v);
  if (v instanceof Uint8Array) return v;
  throw new TypeError(`${name} must be bytes or a string`);
}

function signedDigest(h: Uint8Array, ct: Uint8Array, nonce: Uint8Array, aad: Uint8Array): Uint8Array {
  return sha3_256(fields([LABEL, h, ct, nonce, aad]));
}

/** Encrypts and signs `payload`; `aad` travels in clear and is authenticated. */
export function seal(ch: SecureChannel, payload: Uint8Array | string, aad?: Uint8Array | string): Uint8Array {
  const pt = toBytes(payload, 'payload');
  const ad = toBytes(aad, 'aad');
  if (ch.sendCounter >= MAX_MESSAGES)
    throw new SecureMessageError('CHANNEL_EXHAUSTED', 'start a new session');
  const nonce = new Uint8Array(NONCE_BYTES);
  nonce.set(ch.sendPrefix, 0);
  new DataView(nonce.buffer).setBigUint64(4, ch.sendCounter);
  ch.sendCounter++;
  const h = header(ch.role, ch.sessionId);
  const c = createCipheriv('aes-256-gcm', ch.sendKey, nonce, { authTagLength: TAG_BYTES });
  c.setAAD(fields([h, ad]));
  const ct = concat(c.update(pt), c.final(), c.getAuthTag());
  const sig = ml_dsa65.sign(signedDigest(h, ct, nonce, ad), ch.signingSecretKey, { context: DSA_CTX });
  return fields([h, nonce, ad, ct, sig]);
}

export interface OpenedMessage {
  payload: Uint8Array;
  aad: Uint8Array;
}

/**
 * Verifies, decrypts and records a message from the peer. Throws SecureMessageError:
 * MESSAGE_MALFORMED, MESSAGE_WRONG_SESSION (other session or our own direction),
 * MESSAGE_AAD_MISMATCH (when `expectedAad` is given), MESSAGE_REPLAYED,
 * MESSAGE_BAD_SIGNATURE, MESSAGE_DECRYPT_FAILED. Nothing is recorded unless all checks pass.
 */
export function open(
  ch: SecureChannel,
  message: Uint8Array,
  expectedAad?: Uint8Array | string,
): OpenedMessage {
  if (!(message instanceof Uint8Array))
    throw new SecureMessageError('MESSAGE_MALFORMED', 'message must be bytes');
  const parts = splitFields(message);
  if (parts?.length !== 5) throw new SecureMessageError('MESSAGE_MALFORMED', 'bad framing');
  const [h, nonce, ad, ct, sig] = parts as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  const peer: Role = ch.role === 'initiator' ? 'responder' : 'initiator';
  const want = header(peer, ch.sessionId);
  if (h.length < 7 || !equal(h.subarray(0, 4), MAGIC) || h[4] !== VERSION) {
    throw new SecureMessageError('MESSAGE_MALFORMED', 'bad header');
  }
  if (!equal(h, want))
    throw new SecureMessageError('MESSAGE_WRONG_SESSION', 'message is for another session or direction');
  if (nonce.length !== NONCE_BYTES || ct.length < TAG_BYTES || sig.length !== SIGNATURE_BYTES) {
    throw new SecureMessageError('MESSAGE_MALFORMED', 'bad field length');
  }
  if (expectedAad !== undefined && !equal(ad, toBytes(expectedAad, 'expectedAad'))) {
    throw new SecureMessageError('MESSAGE_AAD_MISMATCH', 'associated data differs from what was expected');
  }
  const nonceHex = Buffer.from(nonce).toString('hex');
  if (ch.seen.has(nonceHex))
    throw new SecureMessageError('MESSAGE_REPLAYED', 'nonce already seen in this session');
  if (ch.seen.size >= ch.maxReceived)
    throw new SecureMessageError('CHANNEL_EXHAUSTED', 'start a new session');
  let ok = false;
  try {
    ok = ml_dsa65.verify(sig, signedDigest(h, ct, nonce, ad), ch.peerPublicKey, { context: DSA_CTX });
  } catch {
    ok = false;
  }
  if (!ok) throw new SecureMessageError('MESSAGE_BAD_SIGNATURE', 'signature does not verify');
  let payload: Uint8Array;
  try {
    const d = createDecipheriv('aes-256-gcm', ch.recvKey, nonce, { authTagLength: TAG_BYTES });
    d.setAAD(fields([h, ad]));
    d.setAuthTag(ct.subarray(ct.length - TAG_BYTES));
    payload = concat(d.update(ct.subarray(0, ct.length - TAG_BYTES)), d.final());
  } catch {
    throw new SecureMessageError('MESSAGE_DECRYPT_FAILED', 'authentication failed');
  }
  ch.seen.add(nonceHex);
  return { payload, aad: ad.slice() };
}

function fields(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
  const view = new DataView(out.buffer);
  let off = 0;
  for (const p of parts) {
    view.setUint32(off, p.length);
    out.set(p, off + 4);
    off += 4 + p.length;
  }
  return out;
}

function splitFields(b: Uint8Array): Uint8Array[] | undefined {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: Uint8Array[] = [];
  let off = 0;
  while (off < b.length) {
    if (off + 4 > b.length || out.length >= 5) return undefined;
    const len = view.getUint32(off);
    if (len > MAX_FIELD || off + 4 + len > b.length) return undefined;
    out.push(b.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
