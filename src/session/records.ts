import type { Provenance } from '../core/provenance.js';
import type { PqcBackendName } from '../pqc/index.js';
import type { Posture } from './posture.js';

/**
 * What a session leaves behind on each node: its provenance, the stored record, the results
 * handed to the API and the counters. Types and pure helpers only.
 */

/** Where each leg of a session key came from. Travels with the key and into the audit log. */
export interface SessionProvenance {
  posture: Posture;
  /**
   * True when a stronger compliant posture was skipped because a configured source is failing
   * (quantum entropy unhealthy, QKD link down) — not when it is merely not configured.
   */
  degraded: boolean;
  /** Present when `degraded` or when the policy fell back for compliance reasons. */
  reason?: string;
  /** The policy chose below the best-scoring posture (compliance or availability). */
  fallback: boolean;
  pqc: {
    kem: 'ML-KEM-768';
    signature: 'ML-DSA-65';
    kdf: 'HKDF-SHA-256';
    /**
     * Source of the encapsulation randomness, r and the nonce: `quantum` (quantum-seeded DRBG) or
     * `os` (node:crypto). On the responder it is what the posture obliges the initiator to use.
     */
    randomness: 'quantum' | 'os';
    /** `local`: this node drew it; `initiator`: asserted by the initiator in the signed handshake. */
    randomnessOrigin: 'local' | 'initiator';
    /** This node's PQC backend (`pqc.backend`): its ML-DSA and ML-KEM decapsulation ran there. */
    backend: PqcBackendName;
    /** Initiator: the library that encapsulated with `randomness` (noble when the backend cannot take m). */
    kemEncaps?: string;
  };
  qkd: {
    used: boolean;
    keyIds: string[];
    initiatorKmeId?: string;
    responderKmeId?: string;
    /** Why QKD was not used, when it was compliant. */
    reason?: string;
  };
  qrng: {
    used: boolean;
    degraded: boolean;
    reason?: string;
    /** The EntropyProvider's provenance for the quantum draw (initiator only). */
    entropy?: Provenance;
  };
  /** ISO-8601. */
  at: string;
}

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
  /** Initiator with `require_confirm`: KeyStore id of K, handed out (once) by a successful confirm. */
  pending_key_id?: string;
}

export interface InitiateRequest {
  /** The authenticated agent initiating the session: the session's owner, the only one that may confirm. */
  agent: string;
  /** The one agent on the peer node that may accept the handshake (named in the signed transcript). */
  responderAgent: string;
  /** Pinned peer's node id. */
  peer: string;
  minPosture?: Posture;
  /** Bound into the transcript (UTF-8, ≤ 1024 bytes) and returned to the responder. */
  context?: string;
  /**
   * Keep K unusable until the responder's tag is confirmed: `initiate` returns no key (empty,
   * `key_pending: true`); K waits in the KeyStore (encrypted, take-once) and `confirm` returns it.
   */
  requireConfirm?: boolean;
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
