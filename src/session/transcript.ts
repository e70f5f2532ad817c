import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { signTagged, verifyTagged } from '../pqc/domain.js';
import { ML_DSA_65_LENGTHS, ML_KEM_768_LENGTHS } from '../pqc/index.js';
import { DSA_CONTEXT } from './identity.js';
import {
  EncodingError,
  decodeFields,
  encodeFields,
  fromBase64url,
  readStr,
  readU64,
  readU8,
  str,
  toBase64url,
  toHex,
  u64,
  u8,
} from './encoding.js';
import { canonicalAid } from '../governance/aid.js';
import { POSTURE_CODE, type Posture, postureFromCode, postureHasQkd, postureHasQrng } from './posture.js';

/**
 * The qkm/v1 handshake: pure functions only (no I/O), so the known-answer vectors in
 * test/vectors/handshake-kat.json exercise exactly the code the service runs.
 * The construction is specified in the README, "Session protocol (qkm/v1)" §4.
 */

/**
 * 2: the body names the initiating and the intended responder agent, and carries the initiator's
 * degraded / fallback flags and the origin of its randomness (issue #11, items 4 and 6).
 * 3: same body; the signature is in the domain-tagged form (src/pqc/domain.ts) instead of under
 * the FIPS 204 context "qkm/v1 handshake" (issue #13). A v2 handshake is refused by version, so
 * a responder never spends a (slow) legacy verification on one.
 */
export const HANDSHAKE_VERSION = 3;
/** "QKMH": first field of every handshake body, so a body cannot be mistaken for other signed data. */
export const HANDSHAKE_MAGIC = str('QKMH');
export const KDF_LABEL = str('qkm/v1');
export const CONFIRM_KEY_LABEL = str('qkm/v1 confirm-key');
export const CONFIRM_TAG_LABEL = str('qkm/v1 confirm');
/**
 * Protocol qkm/v2, governed agents (issue #12): the body also names both agents' governed
 * ids and carries the responder's one-time (or last-resort) prekey id and the ML-KEM ciphertext
 * encapsulated to it; K mixes both ML-KEM secrets under the qkm/v2 labels. 4, not 3: version 3
 * is the plain body with the domain-tagged signature (issue #13), which governed bodies carry too;
 * the version byte alone says which body follows.
 */
export const GOVERNED_HANDSHAKE_VERSION = 4;
export const KDF_LABEL_V2 = str('qkm/v2');
export const CONFIRM_KEY_LABEL_V2 = str('qkm/v2 confirm-key');
export const CONFIRM_TAG_LABEL_V2 = str('qkm/v2 confirm');
/** `prekey kind` codes of a governed body. */
export const PREKEY_KIND_CODE = { otk: 0, 'last-resort': 1 } as const;
export const R_BYTES = 32;
export const NONCE_BYTES = 16;
export const KEY_BYTES = 32;
/** QKD key size requested from the KME, bits. */
export const QKD_KEY_BITS = 256;
export const MAX_CONTEXT_BYTES = 1024;
export const MAX_QKD_KEYS = 8;
/** A v2 body has exactly this many fields; a governed (v3) body five more. */
const BODY_FIELDS = 19;
const GOVERNED_BODY_FIELDS = BODY_FIELDS + 5;
/** Agent names as the registry allows them (src/agents/registry.ts). */
const AGENT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** `flags` bits. */
export const FLAG_DEGRADED = 0x01;
export const FLAG_FALLBACK = 0x02;
/** `randomness` codes: where the initiator drew m, r and the nonce. */
export const RANDOMNESS_CODE = { os: 0, quantum: 1 } as const;

/** Everything the initiator signs; field order is the wire order. */
export interface HandshakeBody {
  version: number;
  posture: Posture;
  initiatorNodeId: string;
  responderNodeId: string;
  /** ML-KEM-768 ciphertext, 1088 bytes. */
  kemCiphertext: Uint8Array;
  /** ETSI 014 key ids (UUIDs), in order; empty unless the posture has QKD. */
  qkdKeyIds: string[];
  /** KME / SAE ids of both ends; empty strings unless the posture has QKD. */
  initiatorKmeId: string;
  responderKmeId: string;
  initiatorSaeId: string;
  responderSaeId: string;
  /** HKDF salt, 32 bytes. */
  r: Uint8Array;
  /** Initiator's clock, epoch milliseconds. */
  timestamp: number;
  nonce: Uint8Array;
  /** Caller-supplied binding (UTF-8 of the API's `context`), ≤ 1024 bytes, may be empty. */
  context: Uint8Array;
  /** The agent (on the initiator node) that initiated the session; only it may confirm. */
  initiatorAgent: string;
  /** The only agent on the responder node that may accept the handshake. */
  responderAgent: string;
  /** The initiator's own verdict: a stronger posture was skipped for an outage / it fell back. */
  degraded: boolean;
  fallback: boolean;
  /** Where the initiator drew m, r and the nonce. */
  randomness: 'quantum' | 'os';
  /** Version 3 (protocol qkm/v2) only: the governed part, encoded after the v2 fields. */
  governed?: GovernedFields;
}

/** What a governed handshake adds (field order is the wire order). */
export interface GovernedFields {
  /** Canonical governed ids `user@domain:name` of the initiating and the responding agent. */
  initiatorAid: string;
  responderAid: string;
  /** Id of the responder's signed prekey the second ciphertext is encapsulated to. */
  prekeyId: string;
  /** ML-KEM-768 ciphertext to that prekey, 1088 bytes. */
  prekeyCiphertext: Uint8Array;
  /** `otk` (single use, destroyed on use) or `last-resort` (flagged in provenance). */
  prekeyKind: 'otk' | 'last-resort';
}

export function encodeBody(b: HandshakeBody): Uint8Array {
  return encodeFields([
    HANDSHAKE_MAGIC,
    u8(b.version),
    u8(POSTURE_CODE[b.posture]),
    str(b.initiatorNodeId),
    str(b.responderNodeId),
    b.kemCiphertext,
    encodeFields(b.qkdKeyIds.map(str)),
    str(b.initiatorKmeId),
    str(b.responderKmeId),
    str(b.initiatorSaeId),
    str(b.responderSaeId),
    b.r,
    u64(b.timestamp),
    b.nonce,
    b.context,
    str(b.initiatorAgent),
    str(b.responderAgent),
    u8((b.degraded ? FLAG_DEGRADED : 0) | (b.fallback ? FLAG_FALLBACK : 0)),
    u8(RANDOMNESS_CODE[b.randomness]),
    // Encoded as given (the version byte is not checked against them here: decodeBody does).
    ...(b.governed ? governedFields(b.governed) : []),
  ]);
}

function governedFields(g: GovernedFields): Uint8Array[] {
  return [
    str(g.initiatorAid),
    str(g.responderAid),
    str(g.prekeyId),
    g.prekeyCiphertext,
    u8(PREKEY_KIND_CODE[g.prekeyKind]),
  ];
}

export class HandshakeDecodeError extends Error {
  constructor(
    readonly code: 'HANDSHAKE_MALFORMED' | 'HANDSHAKE_VERSION',
    message: string,
  ) {
    super(message);
    this.name = 'HandshakeDecodeError';
  }
}

/** Strict decode: exact field count, exact lengths, known version and posture. */
export function decodeBody(bytes: Uint8Array): HandshakeBody {
  let f: Uint8Array[];
  try {
    f = decodeFields(bytes);
    if (f.length !== BODY_FIELDS && f.length !== GOVERNED_BODY_FIELDS)
      throw new EncodingError(`expected ${BODY_FIELDS} or ${GOVERNED_BODY_FIELDS} fields, got ${f.length}`);
  } catch (e) {
    throw new HandshakeDecodeError('HANDSHAKE_MALFORMED', `handshake body: ${(e as Error).message}`);
  }
  const bad = (why: string): never => {
    throw new HandshakeDecodeError('HANDSHAKE_MALFORMED', `handshake body: ${why}`);
  };
  try {
    if (toHex(f[0]!) !== toHex(HANDSHAKE_MAGIC)) bad('bad magic');
    const version = readU8(f[1]!, 'version');
    if (version !== HANDSHAKE_VERSION && version !== GOVERNED_HANDSHAKE_VERSION) {
      throw new HandshakeDecodeError('HANDSHAKE_VERSION', `handshake version ${version} is not supported`);
    }
    // A version byte that does not describe the body (v2 fields under 3, or the reverse) is a
    // version error: the body is not a handshake of the version it claims.
    if (f.length !== (version === GOVERNED_HANDSHAKE_VERSION ? GOVERNED_BODY_FIELDS : BODY_FIELDS)) {
      throw new HandshakeDecodeError(
        'HANDSHAKE_VERSION',
        `a version ${version} handshake body has ${version === GOVERNED_HANDSHAKE_VERSION ? GOVERNED_BODY_FIELDS : BODY_FIELDS} fields, not ${f.length}`,
      );
    }
    const posture = postureFromCode(readU8(f[2]!, 'posture'));
    if (!posture) return bad('unknown posture');
    const body: HandshakeBody = {
      version,
      posture,
      initiatorNodeId: readStr(f[3]!, 'initiator'),
      responderNodeId: readStr(f[4]!, 'responder'),
      kemCiphertext: f[5]!.slice(),
      qkdKeyIds: decodeFields(f[6]!).map((x, i) => readStr(x, `qkd key id ${i}`)),
      initiatorKmeId: readStr(f[7]!, 'initiator kme'),
      responderKmeId: readStr(f[8]!, 'responder kme'),
      initiatorSaeId: readStr(f[9]!, 'initiator sae'),
      responderSaeId: readStr(f[10]!, 'responder sae'),
      r: f[11]!.slice(),
      timestamp: readU64(f[12]!, 'timestamp'),
      nonce: f[13]!.slice(),
      context: f[14]!.slice(),
      initiatorAgent: readStr(f[15]!, 'initiator agent'),
      responderAgent: readStr(f[16]!, 'responder agent'),
      degraded: false,
      fallback: false,
      randomness: 'os',
    };
    const flags = readU8(f[17]!, 'flags');
    if (flags & ~(FLAG_DEGRADED | FLAG_FALLBACK)) bad('unknown flags');
    body.degraded = (flags & FLAG_DEGRADED) !== 0;
    body.fallback = (flags & FLAG_FALLBACK) !== 0;
    const rnd = readU8(f[18]!, 'randomness');
    if (rnd === RANDOMNESS_CODE.quantum) body.randomness = 'quantum';
    else if (rnd !== RANDOMNESS_CODE.os) bad('unknown randomness code');
    if (version === GOVERNED_HANDSHAKE_VERSION) {
      const kind = readU8(f[23]!, 'prekey kind');
      if (kind !== PREKEY_KIND_CODE.otk && kind !== PREKEY_KIND_CODE['last-resort'])
        bad('unknown prekey kind');
      body.governed = {
        initiatorAid: readStr(f[19]!, 'initiator aid'),
        responderAid: readStr(f[20]!, 'responder aid'),
        prekeyId: readStr(f[21]!, 'prekey id'),
        prekeyCiphertext: f[22]!.slice(),
        prekeyKind: kind === PREKEY_KIND_CODE.otk ? 'otk' : 'last-resort',
      };
      const g = body.governed;
      if (!isCanonicalAid(g.initiatorAid) || !isCanonicalAid(g.responderAid)) bad('bad governed agent id');
      if (g.prekeyId.length < 1 || g.prekeyId.length > 128) bad('bad prekey id');
      if (g.prekeyCiphertext.length !== ML_KEM_768_LENGTHS.cipherText)
        bad('prekey ciphertext has the wrong length');
    }
    if (!AGENT_NAME_RE.test(body.initiatorAgent) || !AGENT_NAME_RE.test(body.responderAgent)) {
      bad('bad agent name');
    }
    // A QRNG posture obliges quantum randomness; an initiator claiming otherwise is malformed.
    if (postureHasQrng(posture) && body.randomness !== 'quantum') bad('QRNG posture with os randomness');
    const nodeIdRe = /^[0-9a-f]{32}$/;
    if (!nodeIdRe.test(body.initiatorNodeId) || !nodeIdRe.test(body.responderNodeId)) bad('bad node id');
    if (body.kemCiphertext.length !== ML_KEM_768_LENGTHS.cipherText)
      bad('KEM ciphertext has the wrong length');
    if (body.r.length !== R_BYTES) bad('r has the wrong length');
    if (body.nonce.length !== NONCE_BYTES) bad('nonce has the wrong length');
    if (body.context.length > MAX_CONTEXT_BYTES) bad('context too long');
    readStr(body.context, 'context');
    const qkd = postureHasQkd(posture);
    if (qkd) {
      if (body.qkdKeyIds.length < 1 || body.qkdKeyIds.length > MAX_QKD_KEYS)
        bad('QKD posture needs 1-8 key ids');
      if (body.qkdKeyIds.some((k) => k.length < 1 || k.length > 128)) bad('bad QKD key id');
      if (!body.initiatorKmeId || !body.responderKmeId || !body.initiatorSaeId || !body.responderSaeId) {
        bad('QKD posture needs KME and SAE ids');
      }
    } else if (
      body.qkdKeyIds.length ||
      body.initiatorKmeId ||
      body.responderKmeId ||
      body.initiatorSaeId ||
      body.responderSaeId
    ) {
      bad('QKD fields present in a posture without QKD');
    }
    return body;
  } catch (e) {
    if (e instanceof HandshakeDecodeError) throw e;
    if (e instanceof EncodingError) bad(e.message);
    throw e;
  }
}

/** Wire message: `u32(len body) ‖ body ‖ u32(len sig) ‖ sig`, base64url without padding. */
export function encodeMessage(body: Uint8Array, signature: Uint8Array): string {
  return toBase64url(encodeFields([body, signature]));
}

export function decodeMessage(text: unknown): { body: Uint8Array; signature: Uint8Array } {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64 * 1024) {
    throw new HandshakeDecodeError('HANDSHAKE_MALFORMED', 'handshake must be a base64url string');
  }
  try {
    const [body, signature] = decodeFields(fromBase64url(text, 'handshake'), 2) as [Uint8Array, Uint8Array];
    if (signature.length !== ML_DSA_65_LENGTHS.signature) {
      throw new HandshakeDecodeError('HANDSHAKE_MALFORMED', 'signature has the wrong length');
    }
    return { body, signature };
  } catch (e) {
    if (e instanceof HandshakeDecodeError) throw e;
    throw new HandshakeDecodeError('HANDSHAKE_MALFORMED', (e as Error).message);
  }
}

/** SHA3-256 of the encoded body (OpenSSL's: a tenth of the time of the JavaScript one, same digest). */
export function transcriptHash(body: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha3-256').update(body).digest());
}

/** ML-DSA-65 signature, tag "qkm/v1 handshake" (tagged form). `deterministic` for known-answer vectors only. */
export function signBody(body: Uint8Array, secretKey: Uint8Array, deterministic = false): Uint8Array {
  return signTagged(DSA_CONTEXT.handshake, body, secretKey, { deterministic });
}

/** Tagged form only (the version check already refused pre-v3 handshakes). Never throws. */
export function verifyBody(signature: Uint8Array, body: Uint8Array, publicKey: Uint8Array): boolean {
  return verifyTagged(DSA_CONTEXT.handshake, signature, body, publicKey);
}

export interface DerivedKeys {
  /** The session key handed to the agent. qkm itself never uses it as a key. */
  key: Uint8Array;
  /** Key-confirmation key: same PRK, different HKDF-Expand info, so independent of `key`. */
  confirmKey: Uint8Array;
  /** HMAC-SHA-256(confirmKey, "qkm/v1 confirm" ‖ th). */
  confirmTag: Uint8Array;
}

/**
 * PRK = HKDF-Extract(salt = r, IKM = ss_mlkem ‖ k_qkd)            (RFC 5869 §2.2)
 * K   = HKDF-Expand(PRK, "qkm/v1" ‖ th, 32)                       — i.e. HKDF-SHA-256 as specified
 * Kc  = HKDF-Expand(PRK, "qkm/v1 confirm-key" ‖ th, 32)
 * tag = HMAC-SHA-256(Kc, "qkm/v1 confirm" ‖ th)
 * The approved (ML-KEM) secret comes first in the IKM (SP 800-56C Rev 2 §2, Z′ = Z ‖ T).
 */
export function deriveKeys(
  ssMlkem: Uint8Array,
  qkdKeys: readonly Uint8Array[],
  r: Uint8Array,
  th: Uint8Array,
): DerivedKeys {
  return derive([ssMlkem], qkdKeys, r, th, V1_LABELS);
}

/**
 * qkm/v2 (governed, body version 3): both ML-KEM secrets, the node key's first, then the
 * prekey's, then the QKD keys:
 * PRK = HKDF-Extract(salt = r, IKM = ss_node ‖ ss_prekey ‖ k_qkd)
 * K   = HKDF-Expand(PRK, "qkm/v2" ‖ th, 32); Kc = HKDF-Expand(PRK, "qkm/v2 confirm-key" ‖ th, 32)
 * tag = HMAC-SHA-256(Kc, "qkm/v2 confirm" ‖ th)
 * Either ML-KEM secret alone keeps K secret: the node's long-term key against a compromised
 * prekey, the destroyed one-time prekey against a later compromise of the node (forward secrecy).
 */
export function deriveGovernedKeys(
  ssNode: Uint8Array,
  ssPrekey: Uint8Array,
  qkdKeys: readonly Uint8Array[],
  r: Uint8Array,
  th: Uint8Array,
): DerivedKeys {
  return derive([ssNode, ssPrekey], qkdKeys, r, th, V2_LABELS);
}

interface Labels {
  key: Uint8Array;
  confirmKey: Uint8Array;
  confirmTag: Uint8Array;
}
const V1_LABELS: Labels = { key: KDF_LABEL, confirmKey: CONFIRM_KEY_LABEL, confirmTag: CONFIRM_TAG_LABEL };
const V2_LABELS: Labels = {
  key: KDF_LABEL_V2,
  confirmKey: CONFIRM_KEY_LABEL_V2,
  confirmTag: CONFIRM_TAG_LABEL_V2,
};

function derive(
  secrets: readonly Uint8Array[],
  qkdKeys: readonly Uint8Array[],
  r: Uint8Array,
  th: Uint8Array,
  labels: Labels,
): DerivedKeys {
  // HMAC from OpenSSL (node:crypto), as RFC 5869 writes HKDF: with L = 32 = HashLen, Expand is
  // the single block T(1) = HMAC(PRK, info ‖ 0x01). Same bytes as @noble/hashes' hkdf (the
  // known-answer vectors check it), a fraction of the time.
  const prk = hmacSha256(r, ...secrets, ...qkdKeys);
  const key = hmacSha256(prk, labels.key, th, HKDF_BLOCK_1);
  const confirmKey = hmacSha256(prk, labels.confirmKey, th, HKDF_BLOCK_1);
  const confirmTag = hmacSha256(confirmKey, labels.confirmTag, th);
  prk.fill(0);
  return { key, confirmKey, confirmTag };
}

const HKDF_BLOCK_1 = Uint8Array.of(1);

/** HMAC-SHA-256(key, parts…) into a fresh array; the intermediate Buffer is wiped. */
function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  const digest = h.digest();
  const out = new Uint8Array(digest);
  digest.fill(0);
  return out;
}

/** Both sides name the session after the transcript: lowercase hex of th[0..16). */
export function sessionIdOf(th: Uint8Array): string {
  return toHex(th.subarray(0, 16));
}

function isCanonicalAid(s: string): boolean {
  try {
    return canonicalAid(s) === s;
  } catch {
    return false;
  }
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
