/**
 * Audit log types (QSC Algorithm 9): every security event becomes a hash-chained record; batches
 * are sealed with the node's ML-DSA-65 key. Types only.
 */

/** JSON values allowed in `details` (no bytes: the log never holds key material). */
export type AuditValue = string | number | boolean | null | AuditValue[] | { [k: string]: AuditValue };

export interface AuditEvent {
  /** Dotted event name, e.g. `session.initiated`, `peer.pinned`, `identity.created`. */
  type: string;
  /** Who caused it: an agent token name, `cli`, `system`, or a peer node id. */
  actor: string;
  /** Non-secret facts. Never key bytes, seeds, tokens or entropy output. */
  details?: Record<string, unknown>;
}

export interface AuditRecord {
  /** Record format version, 1. */
  v: 1;
  /** 1, 2, 3, … without gaps. */
  seq: number;
  /** 128-bit event id, lowercase hex, drawn from the EntropyProvider. */
  id: string;
  /** `quantum` when the id came from a quantum-seeded DRBG, `os` otherwise (degraded). */
  id_source: 'quantum' | 'os';
  /** ISO-8601. */
  at: string;
  type: string;
  actor: string;
  details: Record<string, AuditValue>;
  /** `hash` of the previous record; 64 zeros for seq 1. */
  prev_hash: string;
  /** Lowercase hex SHA3-256 of the canonical JSON (RFC 8785) of this record without `hash`. */
  hash: string;
}

/**
 * A seal is itself a chained record of type `audit.seal` whose details are
 * `{ through_seq, through_hash, signer, signature }`: an ML-DSA-65 signature (ctx
 * "qkm/v1 audit-seal", base64url) over `"qkm/v1 audit-seal" ‖ u64(through_seq) ‖ through_hash bytes`.
 */
export const SEAL_TYPE = 'audit.seal';

/**
 * Written by AuditLog on open when records follow the last valid seal (`{from_seq, through_seq,
 * count, chain_ok, reason?}`): they were never signed, so later seals cover but do not vouch for them.
 */
export const UNSEALED_TAIL_TYPE = 'audit.unsealed_tail_found';

/** Where other subsystems send events. `AuditLog` implements it. */
export interface AuditSink {
  append(event: AuditEvent): Promise<AuditRecord>;
}

export type AuditVerifyResult =
  | {
      ok: true;
      count: number;
      /** Highest seq covered by a valid seal (0 if none). */
      sealedThrough: number;
      /** Records after the last seal: chained but not yet signed. */
      unsealed: number;
      /**
       * Ranges that an `audit.unsealed_tail_found` record says were found unsealed when the
       * log was opened: later seals cover them, but do not vouch for them. Absent when none.
       */
      unattested?: Array<{ from_seq: number; through_seq: number }>;
    }
  | { ok: false; seq: number; reason: string };
