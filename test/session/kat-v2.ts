import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { signTagged } from '../../src/pqc/domain.js';
import { PREKEY_CONTEXT, type SignedPrekey, prekeySigningBytes } from '../../src/governance/prekeys.js';
import {
  type TokenBody,
  agentKeyHash,
  deriveResumptionSecret,
  deriveTokenKey,
  resumeProof,
  resumeTranscript,
  resumedKey,
  sealTokenBody,
} from '../../src/governance/resumption.js';
import { fromHex, toBase64url, toHex } from '../../src/session/encoding.js';
import type { Posture } from '../../src/session/posture.js';
import { encodeAnswer, encodeResume, resumedSessionId } from '../../src/session/resume.js';
import {
  GOVERNED_HANDSHAKE_VERSION,
  type HandshakeBody,
  deriveGovernedKeys,
  encodeBody,
  encodeMessage,
  sessionIdOf,
  signBody,
  transcriptHash,
} from '../../src/session/transcript.js';
import { type KatParty, fixed, katIdentity } from './kat.js';

/**
 * Known-answer vectors for protocol qkm/v2 (test/vectors/governed-kat.json): a governed
 * handshake (body version 4, the responder agent's one-time prekey) and a resumption with the
 * access token it yields. Inputs are fixed byte strings (SHAKE256("qkm kat " ‖ label), recorded
 * in full); outputs are what this implementation computes. ML-DSA signatures (handshake and
 * prekey) are FIPS 204 deterministic (rnd = 0^32) — for the vectors only.
 *
 * Regenerate (only when the protocol changes):
 *   npx tsx test/session/kat-v2.ts > test/vectors/governed-kat.json
 */

export interface GovernedKatInputs {
  initiator: KatParty;
  responder: KatParty;
  posture: Posture;
  initiator_agent: string;
  responder_agent: string;
  initiator_aid: string;
  responder_aid: string;
  prekey: { id: string; kind: 'otk' | 'last-resort'; seed: string; created: string; expires: string };
  /** 64 bytes: m for the node-key encapsulation ‖ m for the prekey encapsulation. */
  kem_randomness_m: string;
  r: string;
  nonce: string;
  timestamp_ms: number;
  context_utf8: string;
  randomness: 'quantum' | 'os';
  token: { id: string; issued: string; expires: string; max_uses: number; iv: string };
  resume: { nonce: string; salt: string; use: number; randomness: 'quantum' | 'os' };
}

export interface GovernedKatExpected {
  initiator_node_id: string;
  responder_node_id: string;
  prekey: SignedPrekey;
  kem_ciphertext: string;
  ss_node: string;
  prekey_ciphertext: string;
  ss_prekey: string;
  body: string;
  transcript_hash: string;
  key: string;
  confirm_key: string;
  confirm_tag: string;
  session_id: string;
  signature_deterministic: string;
  handshake: string;
  resumption_secret: string;
  token_key: string;
  initiator_key_hash: string;
  token_body: TokenBody;
  token_sealed: string;
  resume_proof: string;
  resume_message: string;
  resume_transcript: string;
  resumed_key: string;
  resume_confirm: string;
  resume_answer: string;
  resumed_session_id: string;
}

export function governedInputs(): GovernedKatInputs {
  return {
    initiator: {
      identity_seed: toHex(fixed('initiator identity seed', 96)),
      region: 'EU',
      created: '2026-01-01T00:00:00.000Z',
    },
    responder: {
      identity_seed: toHex(fixed('responder identity seed', 96)),
      region: 'EU',
      created: '2026-01-01T00:00:00.000Z',
    },
    posture: 'PQC+QRNG',
    initiator_agent: 'alice',
    responder_agent: 'calendar',
    initiator_aid: 'alice@example.com:mail',
    responder_aid: 'bob@example.com:calendar',
    prekey: {
      id: '3b0c2f6e-9d41-4f7a-8a52-6c1e0d9b7a34',
      kind: 'otk',
      seed: toHex(fixed('prekey seed', 64)),
      created: '2026-01-01T00:00:00.000Z',
      expires: '2026-01-31T00:00:00.000Z',
    },
    kem_randomness_m: toHex(fixed('governed m', 64)),
    r: toHex(fixed('governed r', 32)),
    nonce: toHex(fixed('governed nonce', 16)),
    timestamp_ms: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
    context_utf8: 'governed demo',
    randomness: 'quantum',
    token: {
      id: '9a7e4c21-0b5d-4e3f-9c8a-1d2e3f4a5b6c',
      issued: '2026-01-02T03:04:06.000Z',
      expires: '2026-01-09T03:04:06.000Z',
      max_uses: 100,
      iv: toHex(fixed('token iv', 12)),
    },
    resume: {
      nonce: toHex(fixed('resume nonce', 32)),
      salt: toHex(fixed('resume salt', 32)),
      use: 1,
      randomness: 'quantum',
    },
  };
}

export function computeGovernedKat(i: GovernedKatInputs): GovernedKatExpected {
  const a = katIdentity(i.initiator);
  const b = katIdentity(i.responder);
  // The responder's signed prekey (what GET /v1/prekeys/:aid hands out).
  const otk = ml_kem768.keygen(fromHex(i.prekey.seed));
  const unsigned = {
    kind: i.prekey.kind,
    id: i.prekey.id,
    aid: i.responder_aid,
    node_id: b.nodeId,
    ml_kem_768_public_key: toBase64url(otk.publicKey),
    created: i.prekey.created,
    expires: i.prekey.expires,
  };
  const prekeySig = signTagged(PREKEY_CONTEXT, prekeySigningBytes(unsigned), b.signing.secretKey, {
    deterministic: true,
  });
  const prekey: SignedPrekey = { v: 2, ...unsigned, signature: toBase64url(prekeySig) };
  const m = fromHex(i.kem_randomness_m);
  const toNode = ml_kem768.encapsulate(b.kem.publicKey, m.subarray(0, 32));
  const toPrekey = ml_kem768.encapsulate(otk.publicKey, m.subarray(32, 64));
  const body: HandshakeBody = {
    version: GOVERNED_HANDSHAKE_VERSION,
    posture: i.posture,
    initiatorNodeId: a.nodeId,
    responderNodeId: b.nodeId,
    kemCiphertext: toNode.cipherText,
    qkdKeyIds: [],
    initiatorKmeId: '',
    responderKmeId: '',
    initiatorSaeId: '',
    responderSaeId: '',
    r: fromHex(i.r),
    timestamp: i.timestamp_ms,
    nonce: fromHex(i.nonce),
    context: new TextEncoder().encode(i.context_utf8),
    initiatorAgent: i.initiator_agent,
    responderAgent: i.responder_agent,
    degraded: false,
    fallback: false,
    randomness: i.randomness,
    governed: {
      initiatorAid: i.initiator_aid,
      responderAid: i.responder_aid,
      prekeyId: i.prekey.id,
      prekeyCiphertext: toPrekey.cipherText,
      prekeyKind: i.prekey.kind,
    },
  };
  const bodyBytes = encodeBody(body);
  const th = transcriptHash(bodyBytes);
  const keys = deriveGovernedKeys(toNode.sharedSecret, toPrekey.sharedSecret, [], body.r, th);
  const sig = signBody(bodyBytes, a.signing.secretKey, true);
  // The access token the responder issues, and a first resumption with it.
  const rs = deriveResumptionSecret(keys.key, th);
  const tk = deriveTokenKey(keys.key, th);
  const initiator = agentKeyHash(a.signing.publicKey, i.initiator_agent);
  const tokenBody: TokenBody = {
    id: i.token.id,
    initiator,
    responder: i.responder_aid,
    issued: i.token.issued,
    expires: i.token.expires,
    maxUses: i.token.max_uses,
  };
  const nonce = fromHex(i.resume.nonce);
  const salt = fromHex(i.resume.salt);
  const proof = resumeProof(rs, i.token.id, initiator, nonce);
  const t = { id: i.token.id, initiator, responder: i.responder_aid, nonce, salt, use: i.resume.use };
  const resumed = resumedKey(rs, t);
  return {
    initiator_node_id: a.nodeId,
    responder_node_id: b.nodeId,
    prekey,
    kem_ciphertext: toHex(toNode.cipherText),
    ss_node: toHex(toNode.sharedSecret),
    prekey_ciphertext: toHex(toPrekey.cipherText),
    ss_prekey: toHex(toPrekey.sharedSecret),
    body: toHex(bodyBytes),
    transcript_hash: toHex(th),
    key: toHex(keys.key),
    confirm_key: toHex(keys.confirmKey),
    confirm_tag: toHex(keys.confirmTag),
    session_id: sessionIdOf(th),
    signature_deterministic: toHex(sig),
    handshake: encodeMessage(bodyBytes, sig),
    resumption_secret: toHex(rs),
    token_key: toHex(tk),
    initiator_key_hash: initiator,
    token_body: tokenBody,
    token_sealed: sealTokenBody(tk, tokenBody, fromHex(i.token.iv)),
    resume_proof: toHex(proof),
    resume_message: encodeResume({
      tokenId: i.token.id,
      initiatorNodeId: a.nodeId,
      initiatorAgent: i.initiator_agent,
      responderNodeId: b.nodeId,
      nonce,
      proof,
    }),
    resume_transcript: toHex(resumeTranscript(t)),
    resumed_key: toHex(resumed.key),
    resume_confirm: toHex(resumed.confirm),
    resume_answer: encodeAnswer({
      tokenId: i.token.id,
      salt,
      use: i.resume.use,
      randomness: i.resume.randomness,
      confirm: resumed.confirm,
    }),
    resumed_session_id: resumedSessionId(resumeTranscript(t)),
  };
}

export function generateGovernedKatFile(): object {
  const inputs = governedInputs();
  return {
    description:
      `qkm/v2 governed handshake (body version ${GOVERNED_HANDSHAKE_VERSION}) and token resumption known-answer vectors. Hex unless noted; ` +
      'handshake, prekey keys/signatures, token_sealed, resume_message and resume_answer are base64url. ML-DSA-65 ' +
      'deterministic (FIPS 204, rnd = 0^32), empty FIPS 204 context over u8(len tag) || tag || message: handshake tag "qkm/v1 handshake", prekey tag "qkm/v2 prekey". ' +
      'identity_seed = ML-DSA-65 keygen seed (32 bytes) || ML-KEM-768 keygen seed d||z (64 bytes); prekey.seed = ' +
      'ML-KEM-768 keygen seed d||z. See README "Session protocol (qkm/v2)".',
    source:
      'generated by test/session/kat-v2.ts (qkm); regenerated for issue #13, a deliberate protocol change: governed body version 3 -> 4, ' +
      'handshake and prekey signatures moved from the FIPS 204 context string to the domain-tagged form (src/pqc/domain.ts) so that liboqs can make and check them.',
    version: GOVERNED_HANDSHAKE_VERSION,
    vectors: [{ inputs, expected: computeGovernedKat(inputs) }],
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(generateGovernedKatFile(), null, 2)}\n`);
}
