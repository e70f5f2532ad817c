import { shake256 } from '@noble/hashes/sha3.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { fakeProvenance } from './fakes.js';
import { fromHex, toHex } from '../../src/session/encoding.js';
import {
  BUNDLE_VERSION,
  type IdentityBundle,
  type NodeIdentity,
  identityFromSeed,
} from '../../src/session/identity.js';
import { type Posture, postureHasQkd } from '../../src/session/posture.js';
import {
  HANDSHAKE_VERSION,
  type HandshakeBody,
  deriveKeys,
  encodeBody,
  encodeMessage,
  sessionIdOf,
  signBody,
  transcriptHash,
} from '../../src/session/transcript.js';

/**
 * Known-answer vectors for the qkm/v1 handshake (test/vectors/handshake-kat.json). Inputs are
 * fixed byte strings (chosen as SHAKE256("qkm kat " ‖ label), but recorded in full so nobody
 * needs to know that); outputs are what this implementation computes. Signatures use FIPS 204
 * deterministic ML-DSA (rnd = 0^32) — for the vectors only; the service signs hedged — in the
 * domain-tagged form (src/pqc/domain.ts, since handshake v3 / bundle v2).
 *
 * Regenerate (only when the protocol version changes):
 *   npx tsx test/session/kat.ts > test/vectors/handshake-kat.json
 */

export interface KatParty {
  identity_seed: string;
  region: string;
  sae_id?: string;
  kme_id?: string;
  created: string;
}

export interface KatVector {
  posture: Posture;
  inputs: {
    initiator: KatParty;
    responder: KatParty;
    kem_randomness_m: string;
    r: string;
    nonce: string;
    timestamp_ms: number;
    context_utf8: string;
    qkd_keys: Array<{ key_id: string; key: string }>;
    initiator_agent: string;
    responder_agent: string;
    degraded: boolean;
    fallback: boolean;
    randomness: 'quantum' | 'os';
  };
  expected: {
    initiator_node_id: string;
    responder_node_id: string;
    initiator_bundle: IdentityBundle;
    responder_bundle: IdentityBundle;
    kem_ciphertext: string;
    ss_mlkem: string;
    body: string;
    transcript_hash: string;
    key: string;
    confirm_key: string;
    confirm_tag: string;
    session_id: string;
    signature_deterministic: string;
    handshake: string;
  };
}

export const fixed = (label: string, n: number) =>
  shake256(new TextEncoder().encode(`qkm kat ${label}`), { dkLen: n });

export function katIdentity(p: KatParty): NodeIdentity {
  return identityFromSeed(
    fromHex(p.identity_seed),
    {
      region: p.region,
      ...(p.sae_id ? { saeId: p.sae_id } : {}),
      ...(p.kme_id ? { kmeId: p.kme_id } : {}),
      created: p.created,
    },
    fakeProvenance(true),
    { deterministic: true },
  );
}

/** Computes every expected value from the inputs. */
export function computeKat(posture: Posture, inputs: KatVector['inputs']): KatVector['expected'] {
  const a = katIdentity(inputs.initiator);
  const b = katIdentity(inputs.responder);
  const { cipherText, sharedSecret } = ml_kem768.encapsulate(
    b.kem.publicKey,
    fromHex(inputs.kem_randomness_m),
  );
  const qkd = postureHasQkd(posture);
  const body: HandshakeBody = {
    version: HANDSHAKE_VERSION,
    posture,
    initiatorNodeId: a.nodeId,
    responderNodeId: b.nodeId,
    kemCiphertext: cipherText,
    qkdKeyIds: inputs.qkd_keys.map((k) => k.key_id),
    initiatorKmeId: qkd ? a.kmeId! : '',
    responderKmeId: qkd ? b.kmeId! : '',
    initiatorSaeId: qkd ? a.saeId! : '',
    responderSaeId: qkd ? b.saeId! : '',
    r: fromHex(inputs.r),
    timestamp: inputs.timestamp_ms,
    nonce: fromHex(inputs.nonce),
    context: new TextEncoder().encode(inputs.context_utf8),
    initiatorAgent: inputs.initiator_agent,
    responderAgent: inputs.responder_agent,
    degraded: inputs.degraded,
    fallback: inputs.fallback,
    randomness: inputs.randomness,
  };
  const bodyBytes = encodeBody(body);
  const th = transcriptHash(bodyBytes);
  const keys = deriveKeys(
    sharedSecret,
    inputs.qkd_keys.map((k) => fromHex(k.key)),
    body.r,
    th,
  );
  const sig = signBody(bodyBytes, a.signing.secretKey, true);
  return {
    initiator_node_id: a.nodeId,
    responder_node_id: b.nodeId,
    initiator_bundle: a.bundle,
    responder_bundle: b.bundle,
    kem_ciphertext: toHex(cipherText),
    ss_mlkem: toHex(sharedSecret),
    body: toHex(bodyBytes),
    transcript_hash: toHex(th),
    key: toHex(keys.key),
    confirm_key: toHex(keys.confirmKey),
    confirm_tag: toHex(keys.confirmTag),
    session_id: sessionIdOf(th),
    signature_deterministic: toHex(sig),
    handshake: encodeMessage(bodyBytes, sig),
  };
}

export function katInputs(posture: Posture): KatVector['inputs'] {
  const qkd = postureHasQkd(posture);
  return {
    initiator: {
      identity_seed: toHex(fixed('initiator identity seed', 96)),
      region: 'EU',
      sae_id: 'SAE_ALICE',
      kme_id: 'KME_ALICE',
      created: '2026-01-01T00:00:00.000Z',
    },
    responder: {
      identity_seed: toHex(fixed('responder identity seed', 96)),
      region: 'EU',
      sae_id: 'SAE_BOB',
      kme_id: 'KME_BOB',
      created: '2026-01-01T00:00:00.000Z',
    },
    kem_randomness_m: toHex(fixed(`${posture} m`, 32)),
    r: toHex(fixed(`${posture} r`, 32)),
    nonce: toHex(fixed(`${posture} nonce`, 16)),
    timestamp_ms: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
    context_utf8: posture === 'PQC' ? '' : `demo job ${posture}`,
    qkd_keys: qkd
      ? [{ key_id: '7f3c1d2e-5a4b-4c3d-8e9f-0a1b2c3d4e5f', key: toHex(fixed('qkd key', 32)) }]
      : [],
    initiator_agent: 'alice-agent',
    responder_agent: 'bob-agent',
    // The PQC vector is a fallback for an outage (flags 0x03): both flag bits get a vector.
    degraded: posture === 'PQC',
    fallback: posture === 'PQC',
    randomness: posture === 'PQC' ? 'os' : 'quantum',
  };
}

export function generateKatFile(): object {
  const postures: Posture[] = ['PQC', 'PQC+QRNG', 'QKD+PQC+QRNG'];
  return {
    description:
      `qkm/v1 hybrid handshake known-answer vectors (handshake body version ${HANDSHAKE_VERSION}, identity bundle version ${BUNDLE_VERSION}). Hex unless noted; handshake is base64url. ` +
      'Signatures: ML-DSA-65 deterministic (FIPS 204, rnd = 0^32), empty FIPS 204 context, over u8(len tag) || tag || message, ' +
      'tag "qkm/v1 handshake" over the body (bundles: "qkm/v1 identity-bundle" over the bundle signing bytes). ' +
      'identity_seed = ML-DSA-65 keygen seed (32 bytes) || ML-KEM-768 keygen seed d||z (64 bytes). See README "Session protocol".',
    source:
      'generated by test/session/kat.ts (qkm); regenerated for issue #13, a deliberate protocol change: handshake v2 -> v3 and bundle v1 -> v2, ' +
      'signatures moved from the FIPS 204 context string to the domain-tagged form (src/pqc/domain.ts) so that liboqs can make and check them. ' +
      'Every value that depends on a signature or on the version byte changed; KEM, HKDF and confirm derivations are as before.',
    version: HANDSHAKE_VERSION,
    vectors: postures.map((posture) => {
      const inputs = katInputs(posture);
      return { posture, inputs, expected: computeKat(posture, inputs) };
    }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(generateKatFile(), null, 2)}\n`);
}
