import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { sha256 } from '@noble/hashes/sha2.js';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';

/**
 * Secure messages over a qkm session (QSC paper §3.4, eq. 9–12): AES-256-GCM, the sender's
 * ML-DSA-65 signature over a SHA3-256 digest of (header, ciphertext, nonce, aad), and
 * receiver-side replay rejection. Format version 2 (README, "Secure messages").
 *
 * Each end of a channel has a random 16-byte **channel id**, chosen when the channel object is
 * created and told to the peer (in the agent-key announcement, MAC'd with K). A message names
 * both ids; its key is derived from K, the direction, the session id and both ids:
 *   key = HKDF-SHA-256(IKM = K, salt = sender channel id ‖ receiver channel id,
 *                      info = "qkm/v2 msg i2r" | "qkm/v2 msg r2i" ‖ session id, 32)
 *   nonce = 0x00000000 ‖ u64be(counter from 0)
 * Wire format (every field `u32be length ‖ bytes`, in this order):
 *   header     "QKMS" ‖ 0x02 ‖ direction (0x01 initiator→responder, 0x02 reverse)
 *              ‖ u8 len(session id) ‖ session id (UTF-8) ‖ sender channel id ‖ receiver channel id
 *   nonce      12 bytes, as above
 *   aad        caller's associated data (may be empty)
 *   ciphertext AES-256-GCM(key, nonce, payload, AAD = fields(header, aad)) ‖ 16-byte tag
 *   signature  ML-DSA-65(ctx "qkm/v1 message") over
 *              SHA3-256(fields("qkm/v1 message", header, ciphertext, nonce, aad)), 3309 bytes
 *
 * Nonces (SP 800-38D §8.2.1, deterministic construction): the key is fresh for every sender
 * channel object (a new channel id), so the invocation counter starts at 0 under a key that has
 * never been used and never repeats under it — re-creating a channel (same K) gives a new key,
 * not a reused nonce space. Replays: the receiver accepts each counter once per sender channel;
 * a receiver that is re-created has a new channel id, so messages bound to its old id (sealed
 * before) no longer open at all — a replay across a restart is rejected without persistent state.
 */

const MAGIC = new TextEncoder().encode('QKMS');
const VERSION = 2;
/** Bytes of a channel id. */
export const CHANNEL_ID_BYTES = 16;
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
  | 'MESSAGE_WRONG_CHANNEL'
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
  /** This end's channel id (random, 16 bytes): the peer binds what it sends here to it. */
  readonly channelId: Uint8Array;
  /** The peer end's channel id, from its announcement. */
  readonly peerChannelId: Uint8Array;
  /** @internal */ readonly sendKey: Uint8Array;
  /** @internal */ readonly recvKey: Uint8Array;
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
  /** The peer end's channel id (16 bytes, from its announcement). */
  peerChannelId: Uint8Array;
  /** This end's channel id; default: 16 fresh random bytes. Never reuse one for a new channel object. */
  channelId?: Uint8Array;
  maxReceived?: number;
}

const enc = new TextEncoder();

/** The message key of one direction between two channel ends (see the header comment). */
export function messageKey(
  key: Uint8Array,
  dir: 'i2r' | 'r2i',
  sessionId: string,
  senderChannelId: Uint8Array,
  receiverChannelId: Uint8Array,
): Uint8Array {
  return hkdf(
    sha256,
    key,
    concat(senderChannelId, receiverChannelId),
    concat(enc.encode(`qkm/v2 msg ${dir}`), enc.encode(sessionId)),
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
  const isId = (v: unknown) => v instanceof Uint8Array && v.length === CHANNEL_ID_BYTES;
  if (!isId(o.peerChannelId)) throw new RangeError('peerChannelId must be 16 bytes');
  if (o.channelId !== undefined && !isId(o.channelId)) throw new RangeError('channelId must be 16 bytes');
  const own = o.channelId ? o.channelId.slice() : new Uint8Array(randomBytes(CHANNEL_ID_BYTES));
  const peerId = o.peerChannelId.slice();
  const out: 'i2r' | 'r2i' = o.role === 'initiator' ? 'i2r' : 'r2i';
  const back: 'i2r' | 'r2i' = o.role === 'initiator' ? 'r2i' : 'i2r';
  return {
    sessionId: o.sessionId,
    role: o.role,
    signingSecretKey: o.signingSecretKey,
    peerPublicKey: o.peerPublicKey,
    channelId: own,
    peerChannelId: peerId,
    sendKey: messageKey(o.key, out, o.sessionId, own, peerId),
    recvKey: messageKey(o.key, back, o.sessionId, peerId, own),
    sendCounter: 0n,
    seen: new Set(),
    maxReceived: o.maxReceived ?? 1 << 20,
  };
}

const dirCode = (sender: Role) => (sender === 'initiator' ? 1 : 2);

function header(sender: Role, sessionId: string, senderId: Uint8Array, receiverId: Uint8Array): Uint8Array {
  const sid = enc.encode(sessionId);
  return concat(MAGIC, Uint8Array.of(VERSION, dirCode(sender), sid.length), sid, senderId, receiverId);
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
  const nonce = new Uint8Array(NONCE_BYTES); // fixed field 0x00000000 ‖ invocation counter
  new DataView(nonce.buffer).setBigUint64(4, ch.sendCounter);
  ch.sendCounter++;
  const h = header(ch.role, ch.sessionId, ch.channelId, ch.peerChannelId);
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
  const want = header(peer, ch.sessionId, ch.peerChannelId, ch.channelId);
  if (h.length < 7 || !equal(h.subarray(0, 4), MAGIC) || h[4] !== VERSION) {
    throw new SecureMessageError('MESSAGE_MALFORMED', 'bad header');
  }
  const channels = 2 * CHANNEL_ID_BYTES;
  if (
    h.length !== want.length ||
    !equal(h.subarray(0, h.length - channels), want.subarray(0, want.length - channels))
  )
    throw new SecureMessageError('MESSAGE_WRONG_SESSION', 'message is for another session or direction');
  if (!equal(h, want)) {
    // Same session and direction, other channel ends: sealed for an earlier incarnation of this
    // receiver (a replay across a re-creation) or by a sender end this one was not opened with.
    throw new SecureMessageError('MESSAGE_WRONG_CHANNEL', 'message is bound to another channel (epoch)');
  }
  if (nonce.length !== NONCE_BYTES || ct.length < TAG_BYTES || sig.length !== SIGNATURE_BYTES) {
    throw new SecureMessageError('MESSAGE_MALFORMED', 'bad field length');
  }
  if (expectedAad !== undefined && !equal(ad, toBytes(expectedAad, 'expectedAad'))) {
    throw new SecureMessageError('MESSAGE_AAD_MISMATCH', 'associated data differs from what was expected');
  }
  const nonceHex = Buffer.from(nonce).toString('hex');
  if (ch.seen.has(nonceHex))
    throw new SecureMessageError('MESSAGE_REPLAYED', 'nonce already seen on this channel');
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
