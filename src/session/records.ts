import { type Static, Type } from '@sinclair/typebox';
import { ProvenanceSchema } from '../core/provenance.js';
import type { BundleSource } from './bundles.js';
import { type Posture, PostureSchema } from './posture.js';

/**
 * What a session leaves behind on each node: its provenance, the stored record, the results
 * handed to the API and the counters. Types and pure helpers only.
 */

/** Where each leg of a session key came from. Travels with the key and into the audit log. */
/** Governed sessions (protocol qkm/v2) only: the agents' ids and the prekey used. */
export const GovernanceProvenanceSchema = Type.Object({
  protocol: Type.Literal('qkm/v2'),
  initiatorAid: Type.String(),
  responderAid: Type.String(),
  prekeyId: Type.String(),
  lastResort: Type.Boolean({
    description:
      "True when the responder's last-resort prekey (not a one-time prekey) was used: no forward secrecy against its compromise until it rotates",
  }),
  peerTrust: Type.Optional(
    Type.Union([Type.Literal('pinned'), Type.Literal('provider')], {
      description:
        "How this node knew the peer node's keys: `pinned` by its administrator, or vouched for by the pinned Provider (not pinned here)",
    }),
  ),
});
export type GovernanceProvenance = Static<typeof GovernanceProvenanceSchema>;

export const SessionProvenanceSchema = Type.Object({
  posture: PostureSchema,
  degraded: Type.Boolean({
    description:
      'True when a stronger compliant posture was skipped because a configured source is failing ' +
      '(quantum entropy unhealthy, QKD link down) — not when it is merely not configured',
  }),
  reason: Type.Optional(
    Type.String({
      description: 'Present when `degraded` or when the policy fell back for compliance reasons',
    }),
  ),
  fallback: Type.Boolean({
    description: 'The policy chose below the best-scoring posture (compliance or availability)',
  }),
  pqc: Type.Object({
    kem: Type.Literal('ML-KEM-768'),
    signature: Type.Literal('ML-DSA-65'),
    kdf: Type.Literal('HKDF-SHA-256'),
    randomness: Type.Union([Type.Literal('quantum'), Type.Literal('os')], {
      description:
        'Source of the encapsulation randomness, r and the nonce: `quantum` (quantum-seeded DRBG) or ' +
        '`os` (node:crypto). On the responder it is what the posture obliges the initiator to use',
    }),
    randomnessOrigin: Type.Union(
      [Type.Literal('local'), Type.Literal('initiator'), Type.Literal('responder')],
      {
        description:
          '`local`: this node drew it; `initiator`: asserted by the initiator in the signed handshake; ' +
          "`responder`: a resumed session's salt, as the responder's answer says",
      },
    ),
    backend: Type.Optional(
      Type.Union([Type.Literal('liboqs-wasm'), Type.Literal('noble')], {
        description:
          "This node's PQC backend (`pqc.backend`): its ML-DSA and ML-KEM decapsulation ran there (absent for resumed sessions: no PQC step)",
      }),
    ),
    kemEncaps: Type.Optional(
      Type.String({
        description:
          'Initiator: the library that encapsulated with `randomness` (`noble (caller randomness)` when the backend cannot take it)',
      }),
    ),
  }),
  qkd: Type.Object({
    used: Type.Boolean(),
    keyIds: Type.Array(Type.String()),
    initiatorKmeId: Type.Optional(Type.String()),
    responderKmeId: Type.Optional(Type.String()),
    reason: Type.Optional(Type.String({ description: 'Why QKD was not used, when it was compliant' })),
  }),
  qrng: Type.Object({
    used: Type.Boolean(),
    degraded: Type.Boolean(),
    reason: Type.Optional(Type.String()),
    /** The EntropyProvider's provenance for the quantum draw (initiator only). */
    entropy: Type.Optional(ProvenanceSchema),
  }),
  governance: Type.Optional(GovernanceProvenanceSchema),
  resumption: Type.Optional(
    Type.Object(
      { tokenId: Type.String(), use: Type.Integer(), kdf: Type.Literal('HKDF-SHA-256') },
      { description: 'Resumed sessions only: the access token they were opened with' },
    ),
  ),
  at: Type.String({ description: 'ISO-8601' }),
});
export type SessionProvenance = Static<typeof SessionProvenanceSchema>;

/** Stored per session and role (namespace `sessions`, key `<role>:<session_id>`). No key bytes. */
export interface SessionRecord {
  session_id: string;
  role: 'initiator' | 'responder';
  /** The other node's id. */
  peer: string;
  /** The agent on this node the session belongs to (initiator: it initiated; responder: it accepted). */
  agent?: string;
  /** The agent on the other node, as the signed handshake names it. */
  peer_agent?: string;
  posture: Posture;
  created: string;
  /** The handshake's signed timestamp, ISO-8601. */
  handshake_at: string;
  provenance: SessionProvenance;
  /** Initiator only: the tag the responder must produce (public: the responder hands it out). */
  expected_confirm?: string;
  confirmed?: boolean;
  confirmed_at?: string;
  /** KeyStore id of K when `keepKeys` is configured. */
  key_id?: string;
  /** Governed sessions: this node's agent's governed id and the other agent's. */
  agent_aid?: string;
  peer_aid?: string;
  /**
   * Initiator of a governed session: KeyStore id of RS ‖ TK (resumption secret, token key),
   * held until the confirm that brings the responder's token opens it.
   */
  resumption_pending_id?: string;
  /** Initiator with `require_confirm`: KeyStore id of K, handed out (once) by a successful confirm. */
  pending_key_id?: string;
}

export interface InitiateRequest {
  /** The authenticated agent initiating the session: the session's owner, the only one that may confirm. */
  agent: string;
  /** The one agent on the peer node that may accept the handshake (named in the signed transcript). */
  responderAgent: string;
  /**
   * The responder's node id: a pinned peer. Optional for a governed session whose bundle source
   * vouches for the responder's node (the Provider); given, it must be that node.
   */
  peer?: string | undefined;
  minPosture?: Posture;
  /** Bound into the transcript (UTF-8, ≤ 1024 bytes) and returned to the responder. */
  context?: string;
  /**
   * Keep K unusable until the responder's tag is confirmed: `initiate` returns no key (empty,
   * `key_pending: true`); K waits in the KeyStore (encrypted, take-once) and `confirm` returns it.
   */
  requireConfirm?: boolean;
  /**
   * A governed session (protocol qkm/v2): the initiating agent's governed id, the responder's,
   * and where the responder's prekey comes from. Absent: the qkm/v1 handshake.
   */
  governed?: { initiatorAid: string; responderAid: string; bundles: BundleSource };
}

export interface AcceptRequest {
  handshake: string;
  /** The authenticated agent accepting (its name on this node). */
  agent: string;
  /** Its governed id, if it has one (required for a governed handshake). */
  agentAid?: string | undefined;
}

/** An access token issued by a responder after a governed handshake (opaque to the agent). */
export interface IssuedToken {
  id: string;
  /** base64url AES-256-GCM-sealed token body, readable only with the session's key. */
  sealed: string;
  expires: string;
  max_uses: number;
}

export interface InitiateResult {
  session_id: string;
  /** 32-byte session key K. Returned once; not stored unless `keepKeys`. Empty when `key_pending`. */
  key: Uint8Array;
  /** `requireConfirm`: K is handed out by `confirm`, not here. */
  key_pending?: boolean;
  /** base64url handshake message for the peer. */
  handshake: string;
  posture: Posture;
  provenance: SessionProvenance;
  /** Present when `keepKeys` is configured. */
  key_id?: string;
  /** The responder's node id (from `peer`, or the Provider's bundle). */
  peer: string;
  /** Where the responder agent's node is reached, when the bundle source said (the Provider). */
  peer_endpoint?: string;
}

export interface AcceptResult {
  session_id: string;
  key: Uint8Array;
  posture: Posture;
  provenance: SessionProvenance;
  /** base64url HMAC-SHA-256 key-confirmation tag for the initiator. */
  confirm: string;
  /** Initiator's node id. */
  peer: string;
  /** The initiating agent, as the signed handshake names it. */
  peer_agent: string;
  context: string;
  key_id?: string;
  /** Governed sessions: the initiating agent's governed id and the access token for it. */
  peer_aid?: string;
  token?: IssuedToken;
}

/**
 * What this node's sessions came to since start, for `/v1/status` and the metrics: where the
 * posture policy fell back, failed closed, or a peer's handshake was turned away.
 */
export interface SessionCounters {
  /** Sessions this node initiated, by the posture agreed. */
  initiated: Record<Posture, number>;
  /** Of those, the ones flagged degraded (a fallback caused by an outage). */
  initiatedDegraded: Record<Posture, number>;
  /** Initiations refused because nothing at or above the minimum was admissible (503). */
  refused: number;
  /** Handshakes this node accepted, by posture. */
  accepted: Record<Posture, number>;
  /** Handshakes turned away, by error code. */
  rejected: Record<string, number>;
  /** Accepted handshakes abandoned before the key was returned (dec_keys failed, …), by code. */
  abandoned: Record<string, number>;
  /**
   * QKD keys released by a KME for a session that never completed: on the initiator when it
   * failed after enc_keys; on the responder for each QKD key id in a handshake it rejected (the
   * initiator's KME released it; nobody will use it) or abandoned after dec_keys.
   */
  qkdKeysWasted: number;
}

export const perPosture = (): Record<Posture, number> => ({ PQC: 0, 'PQC+QRNG': 0, 'QKD+PQC+QRNG': 0 });

export function auditDetails(
  sessionId: string,
  peer: string,
  p: SessionProvenance,
  minimum: Posture,
): Record<string, unknown> {
  return {
    session_id: sessionId,
    peer,
    posture: p.posture,
    minimum,
    degraded: p.degraded,
    ...(p.reason ? { reason: p.reason } : {}),
    randomness: p.pqc.randomness,
    qkd_key_ids: p.qkd.keyIds,
    qrng_degraded: p.qrng.degraded,
  };
}

/** The governed part of a session's audit details (no key material: ids only). */
export function governanceAudit(p: SessionProvenance): Record<string, unknown> {
  const g = p.governance;
  if (!g) return {};
  return {
    protocol: g.protocol,
    initiator_aid: g.initiatorAid,
    responder_aid: g.responderAid,
    prekey_id: g.prekeyId,
    last_resort: g.lastResort,
    ...(g.peerTrust ? { peer_trust: g.peerTrust } : {}),
  };
}
