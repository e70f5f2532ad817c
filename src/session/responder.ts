import type { QkdKey } from '../../drivers/qkd/interface.js';
import { QkmError, isQkmError } from '../core/errors.js';
import { pqcInfo } from '../pqc/index.js';
import type { SessionContext } from './context.js';
import { readStr, toBase64url } from './encoding.js';
import { postureHasQkd, postureHasQrng } from './posture.js';
import { DEFAULT_QKD_TIMEOUT_MS } from './context.js';
import { wipeWhenArrived } from './qkd-leg.js';
import { agentKeyHash } from '../governance/resumption.js';
import type { Peer } from './peers.js';
import {
  type AcceptRequest,
  type AcceptResult,
  type IssuedToken,
  type SessionProvenance,
  auditDetails,
  governanceAudit,
} from './records.js';
import { keyProvenance } from './session-keys.js';
import { type CheckedHandshake, checkHandshake, tryDecapsulate } from './responder-checks.js';
import {
  type DerivedKeys,
  type GovernedFields,
  type HandshakeBody,
  QKD_KEY_BITS,
  deriveGovernedKeys,
  deriveKeys,
  sessionIdOf,
  transcriptHash,
} from './transcript.js';

/** The responder's side of a session: accept a checked handshake, derive K, answer with a tag. */

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
export async function accept(ctx: SessionContext, req: AcceptRequest): Promise<AcceptResult> {
  let initiator: string | undefined;
  let qkdKeyCount = 0;
  try {
    const checked = await checkHandshake(ctx, req.handshake, req.agent, req.agentAid, (id, keyCount) => {
      initiator = id;
      qkdKeyCount = keyCount;
    });
    const result = await complete(ctx, checked);
    ctx.tally.accepted[result.posture]++;
    return result;
  } catch (err) {
    const code = isQkmError(err) ? err.code : 'INTERNAL';
    // The initiator's KME released these keys when the handshake was made. Counted when this
    // authenticated handshake can never be accepted here (its rejection is final) or was
    // abandoned; not for a forged copy, a replay or another agent, which leave the genuine
    // handshake acceptable.
    if (FINAL_REJECTIONS.has(code) || ctx.abandoned.has(err as object)) {
      ctx.tally.qkdKeysWasted += qkdKeyCount;
    }
    // An abandoned session has its own record already (see complete()).
    if (err instanceof Object && ctx.abandoned.has(err)) {
      ctx.tally.abandoned[code] = (ctx.tally.abandoned[code] ?? 0) + 1;
      throw err;
    }
    ctx.tally.rejected[code] = (ctx.tally.rejected[code] ?? 0) + 1;
    // Bounded per code and minute: junk at the rate limit must not become an fsync per request.
    await ctx.rejections.record(initiator ?? 'unknown', code, isQkmError(err) ? err.message : 'error');
    throw err;
  }
}

/**
 * `admission` is the replay-cache entry's synced write, started by checkHandshake: it runs
 * while the ciphertext is decapsulated, and must have succeeded before the session is accepted.
 * dec_keys does not wait for it: the in-memory mirror has already admitted this nonce once (the
 * store's lock makes this process its only writer), and should the process die before the entry
 * is durable, a replay after the restart still gets no key: the KME hands each key out once.
 */
async function complete(
  ctx: SessionContext,
  { body, bodyBytes, peer, admission, agent }: CheckedHandshake,
): Promise<AcceptResult> {
  const me = ctx.o.identity;
  // Governed: one unit of the initiator's budget, then the prekey's secret taken (an OTK's is
  // destroyed), both durable before anything else happens; a refusal here is a rejection.
  let prekey: { sharedSecret: Uint8Array; lastResort: boolean } | undefined;
  if (body.governed) prekey = await consumeGoverned(ctx, body.governed);
  // dec_keys goes out first (the handshake is authenticated and admitted by now), so the KME
  // round trip overlaps the decapsulation and the synced writes below. Should anything below
  // fail, keys that arrive anyway are wiped; the KME has already released them either way.
  const qkdRequest = postureHasQkd(body.posture)
    ? ctx.o.qkd!.getKeysById(body.initiatorSaeId, body.qkdKeyIds, {
        timeoutMs: ctx.o.qkdTimeoutMs ?? DEFAULT_QKD_TIMEOUT_MS,
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
    ...(body.governed && prekey
      ? {
          governance: {
            protocol: 'qkm/v2' as const,
            initiatorAid: body.governed.initiatorAid,
            responderAid: body.governed.responderAid,
            prekeyId: body.governed.prekeyId,
            lastResort: prekey.lastResort,
            peerTrust: peer.trust ?? ('pinned' as const),
          },
        }
      : {}),
    at,
  };
  // The session record and the audit record are written concurrently: the store commits
  // concurrent synced writes together, so the caller waits for about one fsync, not two.
  const writeRecords = (keyId: string | undefined): Promise<unknown> =>
    Promise.all([
      ctx.sessions.put(`responder:${sessionId}`, {
        session_id: sessionId,
        role: 'responder',
        peer: peer.nodeId,
        agent,
        peer_agent: body.initiatorAgent,
        ...(body.governed
          ? { agent_aid: body.governed.responderAid, peer_aid: body.governed.initiatorAid }
          : {}),
        posture: body.posture,
        created: new Date(ctx.clock()).toISOString(),
        handshake_at: at,
        provenance,
        ...(keyId ? { key_id: keyId } : {}),
      }),
      ctx.o.audit.append({
        type: 'session.accepted',
        actor: agent,
        details: {
          ...auditDetails(sessionId, peer.nodeId, provenance, ctx.o.policy.minimumFor(peer)),
          agent,
          peer_agent: body.initiatorAgent,
          ...governanceAudit(provenance),
        },
      }),
    ]);
  // The records are written now, while dec_keys and the decapsulation run, so their fsync is
  // off the critical path. What can still fail after this point (the replay entry's write,
  // dec_keys, a mismatching KME answer, the decapsulation — infallible for a well-formed
  // ciphertext) then abandons the session: its record is deleted and `session.abandoned`
  // follows `session.accepted` in the audit trail. When the key is kept, the record names its
  // key id, known only at the end, so nothing is written early.
  const early = ctx.o.keepKeys ? undefined : writeRecords(undefined);
  early?.catch(() => undefined); // observed below
  // One turn of the event loop puts the KME request on the wire and hands the synced writes to
  // the storage thread before the CPU-bound step.
  await new Promise<void>((resolve) => setImmediate(resolve));
  let ss: Uint8Array | undefined;
  let qkdKeys: QkdKey[] = [];
  let keys: DerivedKeys | undefined;
  const abandon = async (err: unknown): Promise<never> => {
    ss?.fill(0);
    keys?.key.fill(0);
    keys?.confirmKey.fill(0);
    prekey?.sharedSecret.fill(0);
    for (const k of qkdKeys) k.key.fill(0);
    wipeWhenArrived(qkdRequest);
    if (early) {
      const written = await early.then(
        () => true,
        () => false,
      );
      await ctx.sessions.del(`responder:${sessionId}`).catch(() => undefined);
      if (written && err instanceof Object) {
        // Never suppressed: only an authenticated, admitted handshake gets this far.
        await ctx.o.audit
          .append({
            type: 'session.abandoned',
            actor: agent,
            details: {
              session_id: sessionId,
              code: isQkmError(err) ? err.code : 'INTERNAL',
              reason: isQkmError(err) ? err.message : 'error',
            },
          })
          .catch(() => undefined);
        ctx.abandoned.add(err);
      }
    }
    throw err;
  };
  // A failure is reported after the admission below has settled, so a store failure still wins.
  ss = tryDecapsulate(body.kemCiphertext, me.kem.secretKey);
  const derive = (secret: Uint8Array): DerivedKeys =>
    prekey
      ? deriveGovernedKeys(
          secret,
          prekey.sharedSecret,
          qkdKeys.map((k) => k.key),
          body.r,
          th,
        )
      : deriveKeys(
          secret,
          qkdKeys.map((k) => k.key),
          body.r,
          th,
        );
  // Without QKD nothing else goes into K: it is derived now, while the admission's fsync runs,
  // and wiped by abandon() should the admission fail. Nothing leaves this function before then.
  if (ss !== undefined && !qkdRequest) keys = derive(ss);
  try {
    await admission;
  } catch (err) {
    return await abandon(err);
  }
  if (ss === undefined) {
    return await abandon(new QkmError('HANDSHAKE_DECAPSULATION', 'the KEM ciphertext does not decapsulate'));
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
  keys ??= derive(ss);
  ss.fill(0);
  prekey?.sharedSecret.fill(0);
  for (const k of qkdKeys) k.key.fill(0);
  keys.confirmKey.fill(0);
  let keyId: string | undefined;
  let token: IssuedToken | undefined;
  try {
    // Governed: the access token for the initiating agent, sealed under a key only K yields.
    if (body.governed) token = await issueToken(ctx, keys.key, th, body, peer, provenance, at);
    if (early) {
      await early;
    } else {
      keyId = await ctx.keys.keep(keys.key, sessionId, 'responder', provenance, at);
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
    ...(body.governed ? { peer_aid: body.governed.initiatorAid } : {}),
    ...(token ? { token } : {}),
  };
}

async function consumeGoverned(
  ctx: SessionContext,
  g: GovernedFields,
): Promise<{ sharedSecret: Uint8Array; lastResort: boolean }> {
  const gov = ctx.o.governance!;
  // Under the prekey's lock, re-checked: of two handshakes racing for one OTK, the loser is
  // refused before it spends any budget.
  return ctx.prekeyLocks.run(g.prekeyId, async () => {
    if ((await gov.prekeys.state(g.prekeyId))?.used)
      throw new QkmError('PREKEY_CONSUMED', 'the one-time prekey was already used');
    await gov.contacts.consume(g.responderAid, g.initiatorAid);
    const { sharedSecret, lastResort } = await gov.prekeys.decapsulate(g.prekeyId, g.prekeyCiphertext);
    return { sharedSecret, lastResort };
  });
}

async function issueToken(
  ctx: SessionContext,
  key: Uint8Array,
  th: Uint8Array,
  body: HandshakeBody,
  peer: Peer,
  provenance: SessionProvenance,
  at: string,
): Promise<IssuedToken> {
  const gov = ctx.o.governance!;
  const issued = await gov.tokens.issue({
    sessionKey: key,
    transcriptHash: th,
    // Bound to the initiating agent as its node's pinned key and the signed body name it.
    initiator: agentKeyHash(peer.dsaPublicKey, body.initiatorAgent),
    responder: body.governed!.responderAid,
    initiatorAid: body.governed!.initiatorAid,
    posture: body.posture,
    maxUses: gov.tokenMaxUses,
    ttlSeconds: gov.tokenTtlSeconds,
    provenance: keyProvenance(provenance, at),
  });
  await ctx.o.audit.append({
    type: 'governance.token_issued',
    actor: body.governed!.responderAid,
    details: {
      token_id: issued.id,
      initiator_aid: body.governed!.initiatorAid,
      responder_aid: body.governed!.responderAid,
      expires: issued.body.expires,
      max_uses: issued.body.maxUses,
    },
  });
  return {
    id: issued.id,
    sealed: issued.sealed,
    expires: issued.body.expires,
    max_uses: issued.body.maxUses,
  };
}

/** Rejections of an authenticated handshake that any later attempt would meet again. */
const FINAL_REJECTIONS = new Set([
  'HANDSHAKE_STALE',
  'POSTURE_BELOW_MINIMUM',
  'POSTURE_NOT_PERMITTED',
  'QKD_UNAVAILABLE',
]);
