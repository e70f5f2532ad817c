import { randomBytes, randomUUID } from 'node:crypto';
import type { QkdKey, QkdKeySource } from '../../drivers/qkd/interface.js';
import type { AuditSink } from '../audit/types.js';
import { QkmError, isQkmError } from '../core/errors.js';
import type { Provenance } from '../core/provenance.js';
import type { EntropyProvider } from '../entropy/types.js';
import { type PqcBackendName, mlKem768Decapsulate, mlKem768Encapsulate, pqcInfo } from '../pqc/index.js';
import type { RecordStore, StorageBackend } from '../store/interface.js';
import { fromBase64url, readStr, str, toBase64url, toHex } from './encoding.js';
import type { NodeIdentity } from './identity.js';
import type { Peer, PeerRegistry } from './peers.js';
import type { PostureDecision, PosturePolicy } from './policy.js';
import { type Posture, isPosture, postureAtLeast, postureHasQkd, postureHasQrng } from './posture.js';
import { RejectionAudit } from './rejection-audit.js';
import { ReplayCache } from './replay.js';
import {
  HANDSHAKE_VERSION,
  type HandshakeBody,
  HandshakeDecodeError,
  KEY_BYTES,
  MAX_CONTEXT_BYTES,
  NONCE_BYTES,
  QKD_KEY_BITS,
  R_BYTES,
  constantTimeEqual,
  decodeBody,
  decodeMessage,
  deriveKeys,
  encodeBody,
  encodeMessage,
  sessionIdOf,
  signBody,
  transcriptHash,
  verifyBody,
} from './transcript.js';

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

const perPosture = (): Record<Posture, number> => ({ PQC: 0, 'PQC+QRNG': 0, 'QKD+PQC+QRNG': 0 });

export interface SessionServiceOptions {
  identity: NodeIdentity;
  peers: PeerRegistry;
  policy: PosturePolicy;
  entropy: EntropyProvider;
  qkd?: QkdKeySource | undefined;
  store: StorageBackend;
  audit: AuditSink;
  /** Epoch ms; default Date.now. */
  clock?: () => number;
  /** Accepted |now − timestamp|, ms (default 120 000). */
  windowMs?: number;
  /** Keep K in the KeyStore (purpose `session`, take-once) for this long; default: not kept. */
  keepKeys?: { ttlSeconds: number };
  /** Deadline for each KME call, ms (default 5000). */
  qkdTimeoutMs?: number;
  /**
   * Deadline for enc_keys when the session may fall back (the minimum does not need QKD), ms
   * (default 1000, never more than `qkdTimeoutMs`): the agent gets its PQC+QRNG session this long
   * after a KME stopped answering, not after the full KME deadline.
   */
  qkdFallbackTimeoutMs?: number;
}

export const DEFAULT_QKD_TIMEOUT_MS = 5000;
export const DEFAULT_QKD_FALLBACK_TIMEOUT_MS = 1000;

export const DEFAULT_WINDOW_MS = 120_000;
/** How long a `requireConfirm` key waits for its confirm (unless `keepKeys` says otherwise), s. */
export const DEFAULT_CONFIRM_HOLD_SECONDS = 600;

/** What checkHandshake hands to complete(): an authenticated, admitted handshake. */
interface CheckedHandshake {
  body: HandshakeBody;
  bodyBytes: Uint8Array;
  peer: Peer;
  /** The replay entry's synced write. */
  admission: Promise<void>;
}

/** FIPS 203 implicit rejection: a forged ciphertext yields an unrelated secret, caught by confirm. */
function tryDecapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array | undefined {
  try {
    return mlKem768Decapsulate(cipherText, secretKey);
  } catch {
    return undefined;
  }
}

/**
 * For a QKD key request whose keys are no longer wanted (the handshake failed after it was sent):
 * keys the KME hands out anyway are wiped when they arrive.
 */
function wipeWhenArrived(request: Promise<QkdKey[]> | undefined): void {
  request?.then(
    (keys) => {
      for (const k of keys) k.key.fill(0);
    },
    () => undefined,
  );
}

/**
 * The hybrid session-key service: `initiate` on the node whose agent starts a session, `accept`
 * on the peer's node, `confirm` back on the initiator. Construction: README, "Session protocol (qkm/v1)".
 */
export class SessionService {
  private readonly sessions: RecordStore<SessionRecord>;
  private readonly replay: ReplayCache;
  private readonly rejections: RejectionAudit;
  /** Errors that abandoned a session after its acceptance record was written (audited as such). */
  private readonly abandoned = new WeakSet<object>();
  private readonly tally: SessionCounters = {
    initiated: perPosture(),
    initiatedDegraded: perPosture(),
    refused: 0,
    accepted: perPosture(),
    rejected: {},
    abandoned: {},
    qkdKeysWasted: 0,
  };
  private readonly clock: () => number;
  private readonly windowMs: number;

  constructor(private readonly o: SessionServiceOptions) {
    this.sessions = o.store.records<SessionRecord>('sessions');
    this.clock = o.clock ?? Date.now;
    this.windowMs = o.windowMs ?? DEFAULT_WINDOW_MS;
    this.replay = new ReplayCache(o.store, { windowMs: this.windowMs });
    this.rejections = new RejectionAudit(o.audit, { clock: this.clock });
    if (o.qkd && o.identity.saeId && o.qkd.saeId !== o.identity.saeId) {
      throw new QkmError('INVALID_PARAMETER', 'the QKD key source SAE id differs from the identity bundle');
    }
  }

  /** Records counts of suppressed rejection records now (before the audit log closes). */
  flushAudit(): void {
    this.rejections.flush();
  }

  /** A copy of the counters since start. */
  counters(): SessionCounters {
    const t = this.tally;
    return {
      initiated: { ...t.initiated },
      initiatedDegraded: { ...t.initiatedDegraded },
      refused: t.refused,
      accepted: { ...t.accepted },
      rejected: { ...t.rejected },
      abandoned: { ...t.abandoned },
      qkdKeysWasted: t.qkdKeysWasted,
    };
  }

  /** Starts a session with a pinned peer. Throws PEER_NOT_FOUND, POSTURE_UNAVAILABLE, INVALID_PARAMETER. */
  async initiate(req: InitiateRequest): Promise<InitiateResult> {
    let result: InitiateResult;
    try {
      result = await this.initiateOnce(req);
    } catch (err) {
      if (isQkmError(err, 'POSTURE_UNAVAILABLE')) this.tally.refused++;
      throw err;
    }
    this.tally.initiated[result.posture]++;
    if (result.provenance.degraded) this.tally.initiatedDegraded[result.posture]++;
    return result;
  }

  private async initiateOnce(req: InitiateRequest): Promise<InitiateResult> {
    if (req.minPosture !== undefined && !isPosture(req.minPosture)) {
      throw new QkmError('INVALID_PARAMETER', 'min_posture must be PQC, PQC+QRNG or QKD+PQC+QRNG');
    }
    const context = str(req.context ?? '');
    if (typeof (req.context ?? '') !== 'string' || context.length > MAX_CONTEXT_BYTES) {
      throw new QkmError(
        'INVALID_PARAMETER',
        `context must be a string of at most ${MAX_CONTEXT_BYTES} UTF-8 bytes`,
      );
    }
    for (const [name, v] of [
      ['agent', req.agent],
      ['responder_agent', req.responderAgent],
    ] as const) {
      if (typeof v !== 'string' || !AGENT_NAME_RE.test(v)) {
        throw new QkmError('INVALID_PARAMETER', `${name} must be an agent name (1-64 of A-Z a-z 0-9 . _ -)`);
      }
    }
    const me = this.o.identity;
    const peer = await this.o.peers.require(req.peer);
    const decision = await this.o.policy.decide(peer, req.minPosture);
    let posture = decision.posture;
    const notes: string[] = [];
    let degraded = false;
    if (decision.fallback) {
      notes.push(decision.reason!);
      degraded = unavailableAbove(decision);
    }

    // 1. Randomness: quantum in QRNG postures (fail over to PQC only if the minimum allows).
    let m: Uint8Array;
    let r: Uint8Array;
    let nonce: Uint8Array;
    let randomness: 'quantum' | 'os' = 'os';
    let entropyProv: Provenance | undefined;
    if (postureHasQrng(posture)) {
      try {
        const e = await this.o.entropy.getEntropy(32 + R_BYTES + NONCE_BYTES, { require: 'quantum' });
        m = e.bytes.slice(0, 32);
        r = e.bytes.slice(32, 32 + R_BYTES);
        nonce = e.bytes.slice(32 + R_BYTES);
        e.bytes.fill(0);
        randomness = 'quantum';
        entropyProv = e.provenance;
      } catch (err) {
        if (!isQkmError(err, 'QUANTUM_ENTROPY_UNAVAILABLE')) throw err;
        if (decision.minimum !== 'PQC') {
          throw new QkmError(
            'POSTURE_UNAVAILABLE',
            `quantum entropy became unavailable and the minimum is ${decision.minimum}`,
          );
        }
        posture = 'PQC';
        degraded = true;
        notes.push('quantum entropy became unavailable during the handshake; fell back to PQC');
        ({ m, r, nonce } = osRandomness());
      }
    } else {
      ({ m, r, nonce } = osRandomness());
    }

    // 2. QKD: the enc_keys request goes out now, after everything that could still fail the
    // handshake (the posture and the randomness are settled), so a failure burns no QKD key; its
    // round trip to the KME overlaps the encapsulation below.
    // With a fallback permitted, a KME that cannot serve now is neither retried nor waited for
    // long (see fetchQkdKeys): the session falls back, visibly, rather than keep the agent waiting.
    const qkdRequest = postureHasQkd(posture)
      ? this.fetchQkdKeys(peer, decision.minimum !== 'QKD+PQC+QRNG')
      : undefined;
    if (qkdRequest) {
      qkdRequest.catch(() => undefined); // observed below
      // One turn of the event loop puts the request on the wire before the CPU-bound step.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }

    // 3. The PQ step: ML-KEM-768 encapsulation to the pinned key (FIPS 203 §7.2, m = explicit randomness).
    let encapsulated: { cipherText: Uint8Array; sharedSecret: Uint8Array };
    try {
      encapsulated = mlKem768Encapsulate(peer.kemPublicKey, m); // m given: noble on liboqs (src/pqc)
    } catch (err) {
      wipeWhenArrived(qkdRequest);
      throw err;
    } finally {
      m.fill(0);
    }
    const { cipherText, sharedSecret } = encapsulated;

    let qkdKeys: QkdKey[] = [];
    let qkdReason: string | undefined;
    if (qkdRequest) {
      try {
        qkdKeys = await qkdRequest;
      } catch (err) {
        // The policy may have reused a recent "link up" answer: forget it. When the KME did
        // answer, ask it now so the reason says what is wrong with the link (failure path only).
        // An unreachable or slow KME is not asked again — its kind is the reason — and the policy
        // takes the failure as its answer, so the next sessions do not wait for it either.
        const kind = (err as { kind?: string }).kind;
        const answered = kind !== undefined && !UNREACHABLE_KME.has(kind);
        this.o.policy.qkdFailed(
          peer,
          answered ? undefined : `KME did not answer enc_keys (${kind ?? 'error'})`,
        );
        const now = answered
          ? await this.o.policy.availability('QKD+PQC+QRNG', peer, { fresh: true })
          : undefined;
        const why =
          `QKD key request failed (${kind ?? (err as Error).name})` + (now && !now.ok ? `: ${now.why}` : '');
        if (decision.minimum === 'QKD+PQC+QRNG') {
          throw new QkmError('POSTURE_UNAVAILABLE', `${why} and the minimum is ${decision.minimum}`);
        }
        posture = 'PQC+QRNG';
        degraded = true;
        qkdReason = why;
        notes.push(`${why}; fell back to PQC+QRNG`);
      }
    } else {
      qkdReason = decision.table.find((row) => row.posture === 'QKD+PQC+QRNG')?.why;
    }

    // 4. Transcript, signature, keys.
    const qkd = postureHasQkd(posture);
    const fallback = decision.fallback || posture !== decision.posture;
    const timestamp = this.clock();
    const body: HandshakeBody = {
      version: HANDSHAKE_VERSION,
      posture,
      initiatorNodeId: me.nodeId,
      responderNodeId: peer.nodeId,
      kemCiphertext: cipherText,
      qkdKeyIds: qkdKeys.map((k) => k.keyId),
      initiatorKmeId: qkd ? (me.kmeId ?? '') : '',
      responderKmeId: qkd ? (peer.kmeId ?? '') : '',
      initiatorSaeId: qkd ? (me.saeId ?? '') : '',
      responderSaeId: qkd ? (peer.saeId ?? '') : '',
      r,
      timestamp,
      nonce,
      context,
      initiatorAgent: req.agent,
      responderAgent: req.responderAgent,
      degraded,
      fallback,
      randomness,
    };
    const bodyBytes = encodeBody(body);
    // K and the session id depend on the body only, not on the signature, so the keys are derived
    // and the records written before the ML-DSA signature, which is computed once the records'
    // writes are on their way.
    const th = transcriptHash(bodyBytes);
    const keys = deriveKeys(
      sharedSecret,
      qkdKeys.map((k) => k.key),
      r,
      th,
    );
    sharedSecret.fill(0);
    for (const k of qkdKeys) k.key.fill(0);
    keys.confirmKey.fill(0);
    const sessionId = sessionIdOf(th);
    const at = new Date(timestamp).toISOString();
    const provenance: SessionProvenance = {
      posture,
      degraded,
      ...(notes.length ? { reason: notes.join('; ') } : {}),
      fallback,
      pqc: {
        kem: 'ML-KEM-768',
        signature: 'ML-DSA-65',
        kdf: 'HKDF-SHA-256',
        randomness,
        randomnessOrigin: 'local',
        backend: pqcInfo().backend,
        kemEncaps: pqcInfo().kemEncaps,
      },
      qkd: {
        used: qkd,
        keyIds: body.qkdKeyIds,
        ...(qkd ? { initiatorKmeId: body.initiatorKmeId, responderKmeId: body.responderKmeId } : {}),
        ...(!qkd && qkdReason ? { reason: qkdReason } : {}),
      },
      qrng: qrngLeg(posture, randomness, decision, entropyProv, notes),
      at,
    };
    const created = new Date(this.clock()).toISOString();
    const recorded = this.o.audit.append({
      type: 'session.initiated',
      actor: req.agent,
      details: {
        ...auditDetails(sessionId, peer.nodeId, provenance, decision.minimum),
        node: me.nodeId,
        agent: req.agent,
        peer_agent: req.responderAgent,
      },
    });
    const persisted = (async () => {
      if (req.requireConfirm) {
        const pendingKeyId = await this.hold(keys.key, sessionId, provenance, at);
        await this.sessions.put(`initiator:${sessionId}`, {
          session_id: sessionId,
          role: 'initiator',
          peer: peer.nodeId,
          agent: req.agent,
          peer_agent: req.responderAgent,
          posture,
          created,
          handshake_at: at,
          provenance,
          expected_confirm: toBase64url(keys.confirmTag),
          confirmed: false,
          pending_key_id: pendingKeyId,
        });
        return undefined;
      }
      const keyId = await this.keep(keys.key, sessionId, 'initiator', provenance, at);
      await this.sessions.put(`initiator:${sessionId}`, {
        session_id: sessionId,
        role: 'initiator',
        peer: peer.nodeId,
        agent: req.agent,
        peer_agent: req.responderAgent,
        posture,
        created,
        handshake_at: at,
        provenance,
        expected_confirm: toBase64url(keys.confirmTag),
        confirmed: false,
        ...(keyId ? { key_id: keyId } : {}),
      });
      return keyId;
    })();
    // Observed below; this only keeps a failure from being reported as unhandled meanwhile.
    persisted.catch(() => undefined);
    recorded.catch(() => undefined);
    // One turn of the event loop first hands the synced writes (session record, audit record) to
    // the storage thread, so their fsyncs overlap the signature. The handshake (the only thing
    // that lets a peer use the session) is released only after both records are durable.
    let signature: Uint8Array;
    let keyId: string | undefined;
    try {
      await new Promise<void>((resolve) => setImmediate(resolve));
      signature = signBody(bodyBytes, me.signing.secretKey);
      [keyId] = await Promise.all([persisted, recorded]);
    } catch (err) {
      // No handshake leaves this node, so K is never used: wipe it (and the QKD key it consumed
      // on the KME is lost — counted).
      keys.key.fill(0);
      if (qkd) this.tally.qkdKeysWasted += body.qkdKeyIds.length;
      throw err;
    }
    if (req.requireConfirm) keys.key.fill(0); // held (encrypted) in the KeyStore until confirmed
    return {
      session_id: sessionId,
      key: req.requireConfirm ? new Uint8Array(0) : keys.key,
      ...(req.requireConfirm ? { key_pending: true } : {}),
      handshake: encodeMessage(bodyBytes, signature),
      posture,
      provenance,
      ...(keyId ? { key_id: keyId } : {}),
    };
  }

  /**
   * Accepts a peer's handshake. Every check runs before any KME call, replay entry or record (the
   * decapsulation may run alongside the signature check, its result wiped unless all pass), in
   * this order: decode (HANDSHAKE_MALFORMED), version (HANDSHAKE_VERSION), recipient
   * (HANDSHAKE_WRONG_RECIPIENT), pinned initiator (HANDSHAKE_UNKNOWN_PEER), signature
   * (HANDSHAKE_BAD_SIGNATURE), KME/SAE ids vs the bundles, timestamp window (HANDSHAKE_STALE),
   * minimum posture (POSTURE_BELOW_MINIMUM), this node's jurisdiction rules for QKD with the
   * initiator's region (POSTURE_NOT_PERMITTED), QKD configured (QKD_UNAVAILABLE), replay cache
   * (HANDSHAKE_REPLAYED). Then, overlapping: dec_keys, decapsulation and the replay entry's fsync;
   * reported in the order store failure, HANDSHAKE_DECAPSULATION, dec_keys (QKD_UNAVAILABLE).
   */
  async accept(req: { handshake: string; agent: string }): Promise<AcceptResult> {
    let initiator: string | undefined;
    let qkdKeyCount = 0;
    try {
      const checked = await this.checkHandshake(req.handshake, req.agent, (id, keyCount) => {
        initiator = id;
        qkdKeyCount = keyCount;
      });
      const result = await this.complete(checked);
      this.tally.accepted[result.posture]++;
      return result;
    } catch (err) {
      const code = isQkmError(err) ? err.code : 'INTERNAL';
      // The initiator's KME released these keys when the handshake was made. Counted when this
      // authenticated handshake can never be accepted here (its rejection is final) or was
      // abandoned; not for a forged copy, a replay or another agent, which leave the genuine
      // handshake acceptable.
      if (FINAL_REJECTIONS.has(code) || this.abandoned.has(err as object)) {
        this.tally.qkdKeysWasted += qkdKeyCount;
      }
      // An abandoned session has its own record already (see complete()).
      if (err instanceof Object && this.abandoned.has(err)) {
        this.tally.abandoned[code] = (this.tally.abandoned[code] ?? 0) + 1;
        throw err;
      }
      this.tally.rejected[code] = (this.tally.rejected[code] ?? 0) + 1;
      // Bounded per code and minute: junk at the rate limit must not become an fsync per request.
      await this.rejections.record(initiator ?? 'unknown', code, isQkmError(err) ? err.message : 'error');
      throw err;
    }
  }

  private async checkHandshake(
    text: string,
    agent: string,
    seen: (initiator: string, qkdKeyCount: number) => void,
  ): Promise<CheckedHandshake> {
    const me = this.o.identity;
    let body: HandshakeBody;
    let bodyBytes: Uint8Array;
    let signature: Uint8Array;
    try {
      ({ body: bodyBytes, signature } = decodeMessage(text));
      body = decodeBody(bodyBytes);
    } catch (e) {
      if (e instanceof HandshakeDecodeError) throw new QkmError(e.code, e.message);
      throw e;
    }
    seen(body.initiatorNodeId, body.qkdKeyIds.length);
    if (body.responderNodeId !== me.nodeId) {
      throw new QkmError('HANDSHAKE_WRONG_RECIPIENT', 'the handshake is addressed to another node');
    }
    const peer = await this.o.peers.get(body.initiatorNodeId);
    if (!peer)
      throw new QkmError('HANDSHAKE_UNKNOWN_PEER', `initiator ${body.initiatorNodeId} is not pinned`);
    // Verified before anything else is spent on the handshake (no speculative decapsulation:
    // with liboqs a verification takes ≈ 0.1–0.3 ms, src/pqc).
    const verdict = verifyBody(signature, bodyBytes, peer.dsaPublicKey);
    const { durable } = await this.checkVerified(body, peer, verdict, agent);
    return { body, bodyBytes, peer, admission: durable };
  }

  /** The checks after the signature's verdict; ends with the replay cache's admission. */
  private async checkVerified(
    body: HandshakeBody,
    peer: Peer,
    signatureValid: boolean,
    agent: string,
  ): Promise<{ durable: Promise<void> }> {
    const me = this.o.identity;
    if (!signatureValid) {
      throw new QkmError(
        'HANDSHAKE_BAD_SIGNATURE',
        'the handshake signature does not verify against the pinned peer',
      );
    }
    // Checked before the replay entry, so a wrong agent cannot burn the intended one's handshake.
    if (body.responderAgent !== agent) {
      throw new QkmError('HANDSHAKE_WRONG_AGENT', 'the handshake names another agent as its responder');
    }
    if (postureHasQkd(body.posture)) {
      if (body.initiatorSaeId !== peer.saeId || body.initiatorKmeId !== peer.kmeId) {
        throw new QkmError(
          'HANDSHAKE_MALFORMED',
          "the initiator's SAE/KME ids differ from its pinned bundle",
        );
      }
      if (body.responderSaeId !== me.saeId || body.responderKmeId !== me.kmeId) {
        throw new QkmError('HANDSHAKE_WRONG_RECIPIENT', "the responder's SAE/KME ids are not this node's");
      }
    }
    const now = this.clock();
    if (Math.abs(now - body.timestamp) > this.windowMs) {
      throw new QkmError('HANDSHAKE_STALE', `the handshake timestamp is outside ±${this.windowMs / 1000} s`);
    }
    const min = this.o.policy.minimumFor(peer);
    if (!postureAtLeast(body.posture, min)) {
      throw new QkmError(
        'POSTURE_BELOW_MINIMUM',
        `offered ${body.posture}, the minimum for this peer is ${min}`,
      );
    }
    if (postureHasQkd(body.posture)) {
      const c = this.o.policy.qkdCompliance(peer.region);
      if (!c.ok) throw new QkmError('POSTURE_NOT_PERMITTED', `offered ${body.posture}: ${c.why}`);
    }
    if (postureHasQkd(body.posture) && !this.o.qkd) {
      throw new QkmError('QKD_UNAVAILABLE', 'the handshake uses QKD but this node has no QKD key source');
    }
    const admission = await this.replay.reserve(body.initiatorNodeId, toHex(body.nonce), body.timestamp, now);
    if (!admission.admitted) {
      throw new QkmError('HANDSHAKE_REPLAYED', 'this handshake was already accepted');
    }
    // Observed in complete(); this only keeps a failure from being reported as unhandled meanwhile.
    admission.durable.catch(() => undefined);
    return admission;
  }

  /**
   * `admission` is the replay-cache entry's synced write, started by checkHandshake: it runs
   * while the ciphertext is decapsulated, and must have succeeded before the session is accepted.
   * dec_keys does not wait for it: the in-memory mirror has already admitted this nonce once (the
   * store's lock makes this process its only writer), and should the process die before the entry
   * is durable, a replay after the restart still gets no key: the KME hands each key out once.
   */
  private async complete({ body, bodyBytes, peer, admission }: CheckedHandshake): Promise<AcceptResult> {
    const me = this.o.identity;
    // dec_keys goes out first (the handshake is authenticated and admitted by now), so the KME
    // round trip overlaps the decapsulation and the synced writes below. Should anything below
    // fail, keys that arrive anyway are wiped; the KME has already released them either way.
    const qkdRequest = postureHasQkd(body.posture)
      ? this.o.qkd!.getKeysById(body.initiatorSaeId, body.qkdKeyIds, {
          timeoutMs: this.o.qkdTimeoutMs ?? DEFAULT_QKD_TIMEOUT_MS,
        })
      : undefined;
    qkdRequest?.catch(() => undefined); // observed below
    // Everything the session's records say follows from the (verified) body alone.
    const th = transcriptHash(bodyBytes);
    const sessionId = sessionIdOf(th);
    const qkd = postureHasQkd(body.posture);
    const at = new Date(body.timestamp).toISOString();
    // degraded / fallback / randomness are the initiator's signed word (v2 body), reported as
    // such; the minimum this node applies to the posture was checked in checkVerified.
    const provenance: SessionProvenance = {
      posture: body.posture,
      degraded: body.degraded,
      ...(body.degraded || body.fallback
        ? { reason: `the initiator reports ${body.degraded ? 'a degraded' : 'a fallback'} posture` }
        : {}),
      fallback: body.fallback,
      pqc: {
        kem: 'ML-KEM-768',
        signature: 'ML-DSA-65',
        kdf: 'HKDF-SHA-256',
        randomness: body.randomness,
        randomnessOrigin: 'initiator',
        backend: pqcInfo().backend,
      },
      qkd: {
        used: qkd,
        keyIds: body.qkdKeyIds,
        ...(qkd ? { initiatorKmeId: body.initiatorKmeId, responderKmeId: body.responderKmeId } : {}),
      },
      qrng: { used: postureHasQrng(body.posture), degraded: false },
      at,
    };
    // The session record and the audit record are written concurrently: the store commits
    // concurrent synced writes together, so the caller waits for about one fsync, not two.
    const writeRecords = (keyId: string | undefined): Promise<unknown> =>
      Promise.all([
        this.sessions.put(`responder:${sessionId}`, {
          session_id: sessionId,
          role: 'responder',
          peer: peer.nodeId,
          agent: body.responderAgent,
          peer_agent: body.initiatorAgent,
          posture: body.posture,
          created: new Date(this.clock()).toISOString(),
          handshake_at: at,
          provenance,
          ...(keyId ? { key_id: keyId } : {}),
        }),
        this.o.audit.append({
          type: 'session.accepted',
          actor: body.responderAgent,
          details: {
            ...auditDetails(sessionId, peer.nodeId, provenance, this.o.policy.minimumFor(peer)),
            agent: body.responderAgent,
            peer_agent: body.initiatorAgent,
          },
        }),
      ]);
    // The records are written now, while dec_keys and the decapsulation run, so their fsync is
    // off the critical path. What can still fail after this point (the replay entry's write,
    // dec_keys, a mismatching KME answer, the decapsulation — infallible for a well-formed
    // ciphertext) then abandons the session: its record is deleted and `session.abandoned`
    // follows `session.accepted` in the audit trail. When the key is kept, the record names its
    // key id, known only at the end, so nothing is written early.
    const early = this.o.keepKeys ? undefined : writeRecords(undefined);
    early?.catch(() => undefined); // observed below
    // One turn of the event loop puts the KME request on the wire and hands the synced writes to
    // the storage thread before the CPU-bound step.
    await new Promise<void>((resolve) => setImmediate(resolve));
    let ss: Uint8Array | undefined;
    let qkdKeys: QkdKey[] = [];
    const abandon = async (err: unknown): Promise<never> => {
      ss?.fill(0);
      for (const k of qkdKeys) k.key.fill(0);
      wipeWhenArrived(qkdRequest);
      if (early) {
        const written = await early.then(
          () => true,
          () => false,
        );
        await this.sessions.del(`responder:${sessionId}`).catch(() => undefined);
        if (written && err instanceof Object) {
          // Never suppressed: only an authenticated, admitted handshake gets this far.
          await this.o.audit
            .append({
              type: 'session.abandoned',
              actor: body.responderAgent,
              details: {
                session_id: sessionId,
                code: isQkmError(err) ? err.code : 'INTERNAL',
                reason: isQkmError(err) ? err.message : 'error',
              },
            })
            .catch(() => undefined);
          this.abandoned.add(err);
        }
      }
      throw err;
    };
    // A failure is reported after the admission below has settled, so a store failure still wins.
    ss = tryDecapsulate(body.kemCiphertext, me.kem.secretKey);
    try {
      await admission;
    } catch (err) {
      return await abandon(err);
    }
    if (ss === undefined) {
      return await abandon(
        new QkmError('HANDSHAKE_DECAPSULATION', 'the KEM ciphertext does not decapsulate'),
      );
    }
    if (qkdRequest) {
      try {
        qkdKeys = await qkdRequest;
      } catch (err) {
        return await abandon(
          new QkmError('QKD_UNAVAILABLE', `dec_keys failed (${(err as { kind?: string }).kind ?? 'error'})`),
        );
      }
      const ok =
        qkdKeys.length === body.qkdKeyIds.length &&
        qkdKeys.every((k, i) => k.keyId === body.qkdKeyIds[i] && k.key.length === QKD_KEY_BITS / 8);
      if (!ok) {
        return await abandon(
          new QkmError('QKD_UNAVAILABLE', 'the KME returned keys that do not match the handshake'),
        );
      }
    }
    const keys = deriveKeys(
      ss,
      qkdKeys.map((k) => k.key),
      body.r,
      th,
    );
    ss.fill(0);
    for (const k of qkdKeys) k.key.fill(0);
    keys.confirmKey.fill(0);
    let keyId: string | undefined;
    try {
      if (early) {
        await early;
      } else {
        keyId = await this.keep(keys.key, sessionId, 'responder', provenance, at);
        await writeRecords(keyId);
      }
    } catch (err) {
      keys.key.fill(0);
      if (early) return await abandon(err);
      throw err;
    }
    return {
      session_id: sessionId,
      key: keys.key,
      posture: body.posture,
      provenance,
      confirm: toBase64url(keys.confirmTag),
      peer: peer.nodeId,
      peer_agent: body.initiatorAgent,
      context: readStr(body.context, 'context'),
      ...(keyId ? { key_id: keyId } : {}),
    };
  }

  /**
   * Initiator side: checks the responder's key-confirmation tag (base64url or bytes) in constant
   * time. Throws SESSION_NOT_FOUND, CONFIRM_MISMATCH. Idempotent once confirmed.
   */
  async confirm(
    sessionId: string,
    tag: string | Uint8Array,
    agent: string,
  ): Promise<{ session_id: string; confirmed: true; key?: Uint8Array }> {
    const key = `initiator:${sessionId}`;
    const rec = typeof sessionId === 'string' ? await this.sessions.get(key) : undefined;
    // Another agent's session answers as a missing one: no agent learns which sessions exist.
    // Records written before handshake v2 name no agent and can no longer be confirmed.
    if (!rec || rec.expected_confirm === undefined || rec.agent !== agent) {
      throw new QkmError('SESSION_NOT_FOUND', 'no session initiated by this node has that id');
    }
    let got: Uint8Array;
    try {
      got = typeof tag === 'string' ? fromBase64url(tag, 'confirm') : tag;
    } catch {
      got = new Uint8Array(0);
    }
    if (!constantTimeEqual(got, fromBase64url(rec.expected_confirm))) {
      await this.o.audit.append({
        type: 'session.confirm_failed',
        actor: agent,
        details: { session_id: sessionId, peer: rec.peer },
      });
      throw new QkmError('CONFIRM_MISMATCH', 'the key-confirmation tag does not match');
    }
    let held: Uint8Array | undefined;
    if (rec.pending_key_id) {
      // Take-once: a second confirm (or a race) gets no key.
      held = await this.o.store.keys.take(rec.pending_key_id, new Date(this.clock())).then(
        (k) => k.material,
        () => undefined,
      );
    }
    if (!rec.confirmed || rec.pending_key_id) {
      const { pending_key_id: _taken, ...rest } = rec;
      await this.sessions.put(key, {
        ...rest,
        confirmed: true,
        confirmed_at: rec.confirmed_at ?? new Date(this.clock()).toISOString(),
      });
    }
    if (!rec.confirmed) {
      await this.o.audit.append({
        type: 'session.confirmed',
        actor: agent,
        details: { session_id: sessionId, peer: rec.peer, peer_agent: rec.peer_agent },
      });
    }
    return { session_id: sessionId, confirmed: true, ...(held ? { key: held } : {}) };
  }

  /** Stored metadata for a session id (one record per role this node played). */
  async get(sessionId: string): Promise<SessionRecord[]> {
    const out: SessionRecord[] = [];
    for (const role of ['initiator', 'responder'] as const) {
      const r = await this.sessions.get(`${role}:${sessionId}`);
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * enc_keys for one key. When the session may fall back, a KME that cannot serve at once is not
   * retried and is waited for only up to the fallback deadline; with a QKD minimum the driver's
   * retries and the full deadline apply, since the alternative is a refusal.
   */
  private async fetchQkdKeys(peer: Peer, mayFallBack: boolean): Promise<QkdKey[]> {
    const full = this.o.qkdTimeoutMs ?? DEFAULT_QKD_TIMEOUT_MS;
    const keys = await this.o.qkd!.getKeys(
      peer.saeId!,
      { number: 1, size: QKD_KEY_BITS },
      mayFallBack
        ? {
            timeoutMs: Math.min(full, this.o.qkdFallbackTimeoutMs ?? DEFAULT_QKD_FALLBACK_TIMEOUT_MS),
            retries: 0,
          }
        : { timeoutMs: full },
    );
    if (keys.length !== 1 || keys[0]!.key.length !== QKD_KEY_BITS / 8 || !keys[0]!.keyId) {
      const err = new Error('KME returned an unexpected key set') as Error & { kind: string };
      err.kind = 'protocol';
      throw err;
    }
    return keys;
  }

  /** `requireConfirm`: K into the KeyStore (take-once) until the confirm hands it out. */
  private async hold(
    key: Uint8Array,
    sessionId: string,
    provenance: SessionProvenance,
    at: string,
  ): Promise<string> {
    const id = randomUUID();
    const created = new Date(this.clock());
    const ttl = this.o.keepKeys?.ttlSeconds ?? DEFAULT_CONFIRM_HOLD_SECONDS;
    await this.o.store.keys.put({
      meta: {
        id,
        size: KEY_BYTES,
        purpose: 'session',
        created: created.toISOString(),
        expires: new Date(created.getTime() + ttl * 1000).toISOString(),
        label: `session ${sessionId} (initiator, until confirmed)`,
        provenance: keyProvenance(provenance, at),
      },
      material: key,
    });
    return id;
  }

  private async keep(
    key: Uint8Array,
    sessionId: string,
    role: string,
    provenance: SessionProvenance,
    at: string,
  ): Promise<string | undefined> {
    if (!this.o.keepKeys) return undefined;
    const id = randomUUID();
    const created = new Date(this.clock());
    await this.o.store.keys.put({
      meta: {
        id,
        size: KEY_BYTES,
        purpose: 'session',
        created: created.toISOString(),
        expires: new Date(created.getTime() + this.o.keepKeys.ttlSeconds * 1000).toISOString(),
        label: `session ${sessionId} (${role})`,
        provenance: keyProvenance(provenance, at),
      },
      material: key,
    });
    return id;
  }
}

/** Rejections of an authenticated handshake that any later attempt would meet again. */
const FINAL_REJECTIONS = new Set([
  'HANDSHAKE_STALE',
  'POSTURE_BELOW_MINIMUM',
  'POSTURE_NOT_PERMITTED',
  'QKD_UNAVAILABLE',
]);

/** Agent names as the registry allows them (src/core/agents.ts). */
const AGENT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** QKD error kinds for which the KME gave no answer: a status re-check would only wait again. */
const UNREACHABLE_KME = new Set(['network', 'timeout', 'gateway-timeout', 'tls', 'canceled']);

function osRandomness(): { m: Uint8Array; r: Uint8Array; nonce: Uint8Array } {
  return {
    m: new Uint8Array(randomBytes(32)),
    r: new Uint8Array(randomBytes(R_BYTES)),
    nonce: new Uint8Array(randomBytes(NONCE_BYTES)),
  };
}

/** True when some posture scoring above the chosen one was skipped because of an outage. */
function unavailableAbove(d: PostureDecision): boolean {
  const chosen = d.table.find((r) => r.posture === d.posture)!;
  return d.table.some((r) => r.score > chosen.score && r.outage);
}

function qrngLeg(
  posture: Posture,
  randomness: 'quantum' | 'os',
  d: PostureDecision,
  entropy: Provenance | undefined,
  notes: string[],
): SessionProvenance['qrng'] {
  if (postureHasQrng(posture) && randomness === 'quantum') {
    return { used: true, degraded: false, ...(entropy ? { entropy } : {}) };
  }
  const row = d.table.find((r) => r.posture === 'PQC+QRNG')!;
  if (!row.compliant) return { used: false, degraded: false, reason: row.why };
  const midHandshake = notes.find((n) => n.startsWith('quantum entropy'));
  if (midHandshake) return { used: false, degraded: true, reason: midHandshake };
  if (!row.available) return { used: false, degraded: true, reason: row.why };
  return { used: false, degraded: false, reason: 'policy chose PQC' };
}

function auditDetails(
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

/** A KeyStore Provenance for a kept session key (the store's type is entropy-shaped). */
function keyProvenance(p: SessionProvenance, at: string): Provenance {
  const e = p.qrng.entropy;
  return {
    seedOrigin: p.pqc.randomness,
    sources: e?.sources ?? [],
    entropyCredited: e?.entropyCredited ?? 0,
    drbg: e?.drbg ?? {
      name: 'HKDF-SHA-256 (hybrid session key)',
      instance: 'session',
      reseedCounter: 0,
      seededAt: at,
      predictionResistance: false,
    },
    degraded: p.degraded,
    ...(p.reason ? { reason: p.reason } : {}),
    at,
  };
}
