import { randomBytes } from 'node:crypto';
import type { QkdKey } from '../../drivers/qkd/interface.js';
import { QkmError, isQkmError } from '../core/errors.js';
import type { Provenance } from '../core/provenance.js';
import { mlKem768Encapsulate, pqcInfo } from '../pqc/index.js';
import type { SessionContext } from './context.js';
import { str, toBase64url } from './encoding.js';
import type { PostureDecision } from './policy.js';
import { canonicalAid } from '../governance/aid.js';
import { type SignedPrekey, verifyPrekey } from '../governance/prekeys.js';
import { deriveResumptionSecret, deriveTokenKey } from '../governance/resumption.js';
import type { Peer } from './peers.js';
import { type Posture, isPosture, postureHasQkd, postureHasQrng } from './posture.js';
import { UNREACHABLE_KME, fetchQkdKeys, wipeWhenArrived } from './qkd-leg.js';
import {
  type InitiateRequest,
  type InitiateResult,
  type SessionProvenance,
  auditDetails,
  governanceAudit,
} from './records.js';
import {
  GOVERNED_HANDSHAKE_VERSION,
  HANDSHAKE_VERSION,
  type HandshakeBody,
  MAX_CONTEXT_BYTES,
  NONCE_BYTES,
  R_BYTES,
  deriveGovernedKeys,
  deriveKeys,
  encodeBody,
  encodeMessage,
  sessionIdOf,
  signBody,
  transcriptHash,
} from './transcript.js';

/**
 * The initiator's side of a session: choose the posture, draw the randomness, encapsulate to the
 * pinned peer, sign the transcript, derive K, write the records, release the handshake.
 */

export async function initiate(ctx: SessionContext, req: InitiateRequest): Promise<InitiateResult> {
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
  const me = ctx.o.identity;
  // Governed (qkm/v2): the responder's prekey first — the source may vouch for its node — and
  // checked here against the node's identity key whatever the source.
  const gov = req.governed ? await governedPrekey(ctx, req.governed, req.peer) : undefined;
  if (gov?.peer === undefined && req.peer === undefined)
    throw new QkmError(
      'INVALID_PARAMETER',
      'peer is required (only a governed session whose responder bundle comes from the Provider can omit it)',
    );
  const peer = gov?.peer ?? (await ctx.o.peers.require(req.peer!));
  if (gov) verifyGovernedPrekey(ctx, gov, peer);
  const mBytes = gov ? 64 : 32;
  const decision = await ctx.o.policy.decide(peer, req.minPosture);
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
      const e = await ctx.o.entropy.getEntropy(mBytes + R_BYTES + NONCE_BYTES, { require: 'quantum' });
      // m: 32 bytes per encapsulation (the node key's, then the prekey's).
      m = e.bytes.slice(0, mBytes);
      r = e.bytes.slice(mBytes, mBytes + R_BYTES);
      nonce = e.bytes.slice(mBytes + R_BYTES);
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
      ({ m, r, nonce } = osRandomness(mBytes));
    }
  } else {
    ({ m, r, nonce } = osRandomness(mBytes));
  }

  // 2. QKD: the enc_keys request goes out now, after everything that could still fail the
  // handshake (the posture and the randomness are settled), so a failure burns no QKD key; its
  // round trip to the KME overlaps the encapsulation below.
  // With a fallback permitted, a KME that cannot serve now is neither retried nor waited for
  // long (see fetchQkdKeys): the session falls back, visibly, rather than keep the agent waiting.
  const qkdRequest = postureHasQkd(posture)
    ? fetchQkdKeys(ctx, peer, decision.minimum !== 'QKD+PQC+QRNG')
    : undefined;
  if (qkdRequest) {
    qkdRequest.catch(() => undefined); // observed below
    // One turn of the event loop puts the request on the wire before the CPU-bound step.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  // 3. The PQ step: ML-KEM-768 encapsulation to the pinned key (FIPS 203 §7.2, m = explicit randomness).
  // Governed: a second encapsulation, to the responder agent's prekey (m[32..64)).
  let encapsulated: { cipherText: Uint8Array; sharedSecret: Uint8Array };
  let toPrekey: { cipherText: Uint8Array; sharedSecret: Uint8Array } | undefined;
  try {
    // m given (the posture's randomness): noble when the backend cannot take it (src/pqc).
    encapsulated = mlKem768Encapsulate(peer.kemPublicKey, m.subarray(0, 32));
    if (gov) toPrekey = mlKem768Encapsulate(gov.publicKey, m.subarray(32, 64));
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
      ctx.o.policy.qkdFailed(peer, answered ? undefined : `KME did not answer enc_keys (${kind ?? 'error'})`);
      const now = answered
        ? await ctx.o.policy.availability('QKD+PQC+QRNG', peer, { fresh: true })
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
  const timestamp = ctx.clock();
  const body: HandshakeBody = {
    version: gov ? GOVERNED_HANDSHAKE_VERSION : HANDSHAKE_VERSION,
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
    ...(gov && toPrekey
      ? {
          governed: {
            initiatorAid: gov.initiatorAid,
            responderAid: gov.responderAid,
            prekeyId: gov.prekey.id,
            prekeyCiphertext: toPrekey.cipherText,
            prekeyKind: gov.prekey.kind,
          },
        }
      : {}),
  };
  const bodyBytes = encodeBody(body);
  // K and the session id depend on the body only, not on the signature, so the keys are derived
  // and the records written before the ML-DSA signature, which is computed once the records'
  // writes are on their way.
  const th = transcriptHash(bodyBytes);
  const keys = toPrekey
    ? deriveGovernedKeys(
        sharedSecret,
        toPrekey.sharedSecret,
        qkdKeys.map((k) => k.key),
        r,
        th,
      )
    : deriveKeys(
        sharedSecret,
        qkdKeys.map((k) => k.key),
        r,
        th,
      );
  sharedSecret.fill(0);
  toPrekey?.sharedSecret.fill(0);
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
    ...(gov
      ? {
          governance: {
            protocol: 'qkm/v2' as const,
            initiatorAid: gov.initiatorAid,
            responderAid: gov.responderAid,
            prekeyId: gov.prekey.id,
            lastResort: gov.prekey.kind === 'last-resort',
            peerTrust: peer.trust ?? ('pinned' as const),
          },
        }
      : {}),
    at,
  };
  const created = new Date(ctx.clock()).toISOString();
  const recorded = ctx.o.audit.append({
    type: 'session.initiated',
    actor: req.agent,
    details: {
      ...auditDetails(sessionId, peer.nodeId, provenance, decision.minimum),
      node: me.nodeId,
      agent: req.agent,
      peer_agent: req.responderAgent,
      ...governanceAudit(provenance),
    },
  });
  // Governed: RS ‖ TK wait (encrypted) for the confirm that brings the responder's token.
  const resumption = gov ? resumptionSecrets(keys.key, th) : undefined;
  const persisted = (async () => {
    const govFields = resumption
      ? {
          agent_aid: gov!.initiatorAid,
          peer_aid: gov!.responderAid,
          resumption_pending_id: await ctx.keys.holdSecret(
            resumption,
            `resumption secret of session ${sessionId} (until confirmed)`,
            provenance,
            at,
          ),
        }
      : {};
    resumption?.fill(0);
    if (req.requireConfirm) {
      const pendingKeyId = await ctx.keys.hold(keys.key, sessionId, provenance, at);
      await ctx.sessions.put(`initiator:${sessionId}`, {
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
        ...govFields,
      });
      return undefined;
    }
    const keyId = await ctx.keys.keep(keys.key, sessionId, 'initiator', provenance, at);
    await ctx.sessions.put(`initiator:${sessionId}`, {
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
      ...govFields,
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
    if (qkd) ctx.tally.qkdKeysWasted += body.qkdKeyIds.length;
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
    peer: peer.nodeId,
    ...(gov?.endpoint ? { peer_endpoint: gov.endpoint } : {}),
  };
}

/** Agent names as the registry allows them (src/agents/registry.ts). */
const AGENT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function osRandomness(mBytes: number): { m: Uint8Array; r: Uint8Array; nonce: Uint8Array } {
  return {
    m: new Uint8Array(randomBytes(mBytes)),
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

interface GovernedPrekey {
  initiatorAid: string;
  responderAid: string;
  prekey: SignedPrekey;
  /** Set by verifyGovernedPrekey. */
  publicKey: Uint8Array;
  peer?: Peer;
  endpoint?: string;
}

async function governedPrekey(
  ctx: SessionContext,
  g: NonNullable<InitiateRequest['governed']>,
  peerId: string | undefined,
): Promise<GovernedPrekey> {
  if (!ctx.o.governance)
    throw new QkmError('INVALID_PARAMETER', 'this node has no governed agents (governance not configured)');
  const initiatorAid = canonicalAid(g.initiatorAid);
  const responderAid = canonicalAid(g.responderAid);
  const b = await g.bundles.bundle({ responderAid, initiatorAid, peer: peerId });
  return {
    initiatorAid,
    responderAid,
    prekey: b.prekey,
    publicKey: new Uint8Array(0),
    ...(b.peer ? { peer: b.peer } : {}),
    ...(b.endpoint ? { endpoint: b.endpoint } : {}),
  };
}

/** Signature by the responder node, binding to the responder agent, expiry (PREKEY_*). */
function verifyGovernedPrekey(ctx: SessionContext, g: GovernedPrekey, peer: Peer): void {
  const { prekey, publicKey } = verifyPrekey(
    g.prekey,
    peer.dsaPublicKey,
    { aid: g.responderAid, nodeId: peer.nodeId },
    ctx.clock(),
  );
  g.prekey = prekey;
  g.publicKey = publicKey;
}

/** RS ‖ TK of a governed session (src/governance/resumption.ts). */
function resumptionSecrets(key: Uint8Array, th: Uint8Array): Uint8Array {
  const rs = deriveResumptionSecret(key, th);
  const tk = deriveTokenKey(key, th);
  const out = new Uint8Array(64);
  out.set(rs, 0);
  out.set(tk, 32);
  rs.fill(0);
  tk.fill(0);
  return out;
}
