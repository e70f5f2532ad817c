import { createHash, randomUUID } from 'node:crypto';
import { QkmError, isQkmError } from '../core/errors.js';
import type { Provenance } from '../core/provenance.js';
import {
  RESUME_NONCE_BYTES,
  RESUME_SALT_BYTES,
  type ResumeResult,
  type TokenBody,
  type TokenRecord,
  agentKeyHash,
  openTokenBody,
  resumeProof,
  resumeTranscript,
  resumedKey,
} from '../governance/resumption.js';
import type { SessionContext } from './context.js';
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
import type { Posture } from './posture.js';
import type { IssuedToken, SessionProvenance, SessionRecord } from './records.js';
import { constantTimeEqual } from './transcript.js';
import { initiatorPeer } from './vouched.js';

/**
 * Resumed sessions (protocol qkm/v2, issue #12): after a governed handshake the responder's
 * access token lets the initiating agent open further sessions with the same responder agent
 * without ML-KEM or ML-DSA and without the Provider. Three calls, like a full session:
 *
 *   initiator node  startResume    → resume message  (token id, initiator, N_i, proof)
 *   responder node  acceptResume   → K', answer      (salt S, use, confirmation tag)
 *   initiator node  completeResume → K' once the tag matches
 *
 * The key schedule and the responder's checks are in src/governance/resumption.ts; the wire
 * format is in the README, "Session protocol (qkm/v2)".
 */

export const RESUME_MAGIC = 'QKMR';
/** How long a started resumption may wait for its answer (initiator), ms. */
export const PENDING_MS = 600_000;
export const ANSWER_MAGIC = 'QKMA';
export const RESUME_MESSAGE_VERSION = 1;

/** What the initiator node keeps of a token it received (namespace `resumption-tokens`). */
export interface HeldToken {
  token_id: string;
  /** The agent it was issued to (its name on this node), and its governed id. */
  agent: string;
  agent_aid: string;
  /** The responder's node and governed id. */
  peer: string;
  peer_aid: string;
  body: TokenBody;
  /** KeyStore id of the resumption secret RS (expires with the token). */
  secret_id: string;
  /** The full session the token came from, and its posture (resumed sessions inherit it). */
  session_id: string;
  posture: Posture;
  received: string;
  /** Uses the responder has confirmed so far (informational; the responder enforces). */
  used: number;
}

/** A resumption on its way (initiator), by resume id. */
export interface PendingResume {
  resume_id: string;
  token_id: string;
  agent: string;
  nonce: string;
  created: string;
  /** The token as held, and its RS, read at step 1 (wiped when the entry goes). */
  held: HeldToken;
  rs: Uint8Array;
}

export interface ResumeMessage {
  tokenId: string;
  initiatorNodeId: string;
  initiatorAgent: string;
  responderNodeId: string;
  nonce: Uint8Array;
  proof: Uint8Array;
}

export interface ResumeAnswer {
  tokenId: string;
  salt: Uint8Array;
  use: number;
  randomness: 'quantum' | 'os';
  confirm: Uint8Array;
}

/** `base64url(encode("QKMR", u8 1, token id, initiator node, initiator agent, responder node, N_i, proof))` */
export function encodeResume(m: ResumeMessage): string {
  return toBase64url(
    encodeFields([
      str(RESUME_MAGIC),
      u8(RESUME_MESSAGE_VERSION),
      str(m.tokenId),
      str(m.initiatorNodeId),
      str(m.initiatorAgent),
      str(m.responderNodeId),
      m.nonce,
      m.proof,
    ]),
  );
}

export function decodeResume(text: unknown): ResumeMessage {
  const f = decodeOrRefuse(text, 8, RESUME_MAGIC, 'resume');
  const m: ResumeMessage = {
    tokenId: readStr(f[2]!, 'token id'),
    initiatorNodeId: readStr(f[3]!, 'initiator node'),
    initiatorAgent: readStr(f[4]!, 'initiator agent'),
    responderNodeId: readStr(f[5]!, 'responder node'),
    nonce: f[6]!.slice(),
    proof: f[7]!.slice(),
  };
  if (m.nonce.length !== RESUME_NONCE_BYTES || m.proof.length !== 32 || m.tokenId.length > 64)
    throw new QkmError('HANDSHAKE_MALFORMED', 'resume message: bad field length');
  return m;
}

/** `base64url(encode("QKMA", u8 1, token id, S, u64 use, u8 randomness, tag))` */
export function encodeAnswer(a: ResumeAnswer): string {
  return toBase64url(
    encodeFields([
      str(ANSWER_MAGIC),
      u8(RESUME_MESSAGE_VERSION),
      str(a.tokenId),
      a.salt,
      u64(a.use),
      u8(a.randomness === 'quantum' ? 1 : 0),
      a.confirm,
    ]),
  );
}

export function decodeAnswer(text: unknown): ResumeAnswer {
  const f = decodeOrRefuse(text, 7, ANSWER_MAGIC, 'resume answer');
  try {
    const rnd = readU8(f[5]!, 'randomness');
    const a: ResumeAnswer = {
      tokenId: readStr(f[2]!, 'token id'),
      salt: f[3]!.slice(),
      use: readU64(f[4]!, 'use'),
      randomness: rnd === 1 ? 'quantum' : 'os',
      confirm: f[6]!.slice(),
    };
    if (rnd > 1 || a.salt.length !== RESUME_SALT_BYTES || a.confirm.length !== 32 || a.use < 1)
      throw new EncodingError('bad field');
    return a;
  } catch (e) {
    if (isQkmError(e)) throw e;
    throw new QkmError('HANDSHAKE_MALFORMED', `resume answer: ${(e as Error).message}`);
  }
}

function decodeOrRefuse(text: unknown, count: number, magic: string, what: string): Uint8Array[] {
  if (typeof text !== 'string' || text.length === 0 || text.length > 4096)
    throw new QkmError('HANDSHAKE_MALFORMED', `${what} must be a base64url string`);
  try {
    const f = decodeFields(fromBase64url(text, what), count);
    if (readStr(f[0]!, 'magic') !== magic) throw new EncodingError('bad magic');
    if (readU8(f[1]!, 'version') !== RESUME_MESSAGE_VERSION) throw new EncodingError('unknown version');
    return f;
  } catch (e) {
    throw new QkmError('HANDSHAKE_MALFORMED', `${what}: ${(e as Error).message}`);
  }
}

/** Resumed sessions are named after their transcript: hex of SHA-256(transcript')[0..16). */
export function resumedSessionId(transcript: Uint8Array): string {
  return toHex(createHash('sha256').update(transcript).digest().subarray(0, 16));
}

const heldTokens = (ctx: SessionContext) => ctx.o.store.records<HeldToken>('resumption-tokens');
/**
 * The initiator's resumptions on their way, in memory: losing one (a restart) only costs the
 * agent a new `resume` (the responder may have counted the use: fail closed), and keeping it
 * off the disk saves the only synced write of step 1. Bounded: the oldest is dropped first.
 */
export class PendingResumes {
  private readonly map = new Map<string, PendingResume>();
  constructor(private readonly max = 10_000) {}
  put(p: PendingResume): void {
    if (this.map.size >= this.max) this.delete(this.map.keys().next().value as string);
    this.delete(p.resume_id);
    this.map.set(p.resume_id, p);
  }
  get(id: string): PendingResume | undefined {
    return this.map.get(id);
  }
  delete(id: string): boolean {
    this.map.get(id)?.rs.fill(0);
    return this.map.delete(id);
  }
  /** Drops those started before `before` (ms since the epoch); returns how many. */
  prune(before: number): number {
    let n = 0;
    for (const [id, p] of this.map) {
      if (Date.parse(p.created) >= before) continue;
      this.delete(id);
      n++;
    }
    return n;
  }
}

function governance(ctx: SessionContext) {
  const gov = ctx.o.governance;
  if (!gov) throw new QkmError('INVALID_PARAMETER', 'this node has no governed agents');
  return gov;
}

/**
 * Initiator, at confirm: opens the responder's token with TK (from the held RS ‖ TK of the
 * session), checks it names this agent and the session's responder, and keeps RS for the
 * token's life. TOKEN_INVALID when the token does not open or names someone else.
 */
export async function receiveToken(
  ctx: SessionContext,
  rec: SessionRecord,
  token: { id: string; sealed: string },
): Promise<IssuedToken> {
  if (!rec.resumption_pending_id || !rec.peer_aid || !rec.agent || !rec.agent_aid)
    throw new QkmError('TOKEN_INVALID', 'this session holds no resumption secret (not governed, or used)');
  const now = new Date(ctx.clock());
  let secrets: Uint8Array;
  try {
    secrets = (await ctx.o.store.keys.read(rec.resumption_pending_id, now)).material;
  } catch {
    throw new QkmError(
      'TOKEN_INVALID',
      'the resumption secret of this session is gone (confirm came too late)',
    );
  }
  const rs = secrets.slice(0, 32);
  const tk = secrets.slice(32, 64);
  secrets.fill(0);
  try {
    const body = openTokenBody(tk, token.id, token.sealed);
    const mine = agentKeyHash(ctx.o.identity.signing.publicKey, rec.agent);
    if (body.initiator !== mine || body.responder !== rec.peer_aid)
      throw new QkmError('TOKEN_INVALID', 'the token names another initiator or responder');
    if (now.getTime() >= Date.parse(body.expires))
      throw new QkmError('TOKEN_EXPIRED', `the access token expired at ${body.expires}`);
    const secretId = randomUUID();
    await ctx.o.store.keys.put({
      meta: {
        id: secretId,
        size: 32,
        purpose: 'session',
        created: now.toISOString(),
        expires: body.expires,
        label: `resumption secret of access token ${body.id} (initiator)`,
        provenance: {
          seedOrigin: rec.provenance.pqc.randomness,
          sources: [],
          entropyCredited: 0,
          drbg: {
            name: 'HKDF-SHA-256 (resumption secret)',
            instance: 'session',
            reseedCounter: 0,
            seededAt: rec.handshake_at,
            predictionResistance: false,
          },
          degraded: rec.provenance.degraded,
          at: now.toISOString(),
        },
      },
      material: rs,
    });
    await heldTokens(ctx).put(body.id, {
      token_id: body.id,
      agent: rec.agent,
      agent_aid: rec.agent_aid,
      peer: rec.peer,
      peer_aid: rec.peer_aid,
      body,
      secret_id: secretId,
      session_id: rec.session_id,
      posture: rec.posture,
      received: now.toISOString(),
      used: 0,
    });
    await ctx.o.store.keys.delete(rec.resumption_pending_id).catch(() => undefined);
    await ctx.o.audit.append({
      type: 'governance.token_received',
      actor: rec.agent,
      details: {
        token_id: body.id,
        session_id: rec.session_id,
        peer_aid: rec.peer_aid,
        expires: body.expires,
      },
    });
    return { id: body.id, sealed: token.sealed, expires: body.expires, max_uses: body.maxUses };
  } finally {
    rs.fill(0);
    tk.fill(0);
  }
}

/**
 * Initiator side housekeeping: held tokens expired more than `graceMs` ago (their RS expired
 * with them), and resumptions started more than `pendingMs` ago and never completed.
 */
export async function pruneResumption(
  ctx: SessionContext,
  graceMs = 86_400_000,
  pendingMs = PENDING_MS,
): Promise<number> {
  const now = ctx.clock();
  let n = 0;
  for (const [id, t] of await heldTokens(ctx).entries(undefined, { limit: 10_000 })) {
    if (now < Date.parse(t.body.expires) + graceMs) continue;
    await ctx.o.store.keys.delete(t.secret_id).catch(() => undefined);
    await heldTokens(ctx).del(id);
    n++;
  }
  return n + ctx.pendingResumes.prune(now - pendingMs);
}

/** The tokens an agent holds (no secrets). */
export async function listTokens(ctx: SessionContext, agent: string): Promise<HeldToken[]> {
  return (await heldTokens(ctx).entries()).map(([, t]) => t).filter((t) => t.agent === agent);
}

/**
 * Initiator, step 1: the resume message for token `tokenId`, with a fresh nonce and the proof
 * of RS. Refuses TOKEN_UNKNOWN (this node holds no such token), TOKEN_STOLEN (another agent's),
 * TOKEN_EXPIRED (RS is gone with it). Quota is the responder's to enforce.
 */
export async function startResume(
  ctx: SessionContext,
  req: { agent: string; tokenId: string },
): Promise<{ resume_id: string; resume: string; token_id: string; peer: string; peer_aid: string }> {
  governance(ctx);
  try {
    const held = typeof req.tokenId === 'string' ? await heldTokens(ctx).get(req.tokenId) : undefined;
    if (!held) throw new QkmError('TOKEN_UNKNOWN', 'this node holds no such access token');
    if (held.agent !== req.agent)
      throw new QkmError('TOKEN_STOLEN', 'the access token was issued to another agent');
    const now = ctx.clock();
    if (now >= Date.parse(held.body.expires))
      throw new QkmError('TOKEN_EXPIRED', `the access token expired at ${held.body.expires}`);
    let rs: Uint8Array;
    try {
      rs = (await ctx.o.store.keys.read(held.secret_id, new Date(now))).material;
    } catch {
      throw new QkmError('TOKEN_EXPIRED', 'the resumption secret of this token is gone');
    }
    const e = await ctx.o.entropy.getEntropy(RESUME_NONCE_BYTES);
    const nonce = e.bytes.slice();
    e.bytes.fill(0);
    const proof = resumeProof(rs, held.token_id, held.body.initiator, nonce);
    const resumeId = toHex(nonce.subarray(0, 16));
    ctx.pendingResumes.put({
      resume_id: resumeId,
      token_id: held.token_id,
      agent: req.agent,
      nonce: toBase64url(nonce),
      created: new Date(now).toISOString(),
      held,
      rs,
    });
    return {
      resume_id: resumeId,
      token_id: held.token_id,
      peer: held.peer,
      peer_aid: held.peer_aid,
      resume: encodeResume({
        tokenId: held.token_id,
        initiatorNodeId: ctx.o.identity.nodeId,
        initiatorAgent: req.agent,
        responderNodeId: held.peer,
        nonce,
        proof,
      }),
    };
  } catch (err) {
    await refused(ctx, req.agent, err);
    throw err;
  }
}

export interface ResumedSession {
  session_id: string;
  key: Uint8Array;
  posture: Posture;
  provenance: SessionProvenance;
  token_id: string;
  use: number;
  /** Responder only: uses left on the token, and the answer for the initiator. */
  remaining?: number;
  answer?: string;
  peer: string;
  peer_agent: string;
  peer_aid?: string;
}

/**
 * Responder, step 2. Checks, in order, each refusal audited (`session.rejected`) and consuming
 * nothing: decode (HANDSHAKE_MALFORMED), addressed to this node (HANDSHAKE_WRONG_RECIPIENT),
 * initiator pinned or vouched for by the Provider (HANDSHAKE_UNKNOWN_PEER, PROVIDER_UNAVAILABLE,
 * PROVIDER_RESPONSE_INVALID), token known (TOKEN_UNKNOWN), issued for this
 * accepting agent (HANDSHAKE_WRONG_AGENT), contact policy still admits the initiator
 * (CONTACT_BLOCKED / CONTACT_NO_RULE; the budget counts prekeys, not resumptions), then the
 * token's own checks: TOKEN_STOLEN, TOKEN_EXPIRED, TOKEN_EXHAUSTED, TOKEN_INVALID, TOKEN_REPLAYED.
 * The use is counted durably before K' is returned.
 */
export async function acceptResume(
  ctx: SessionContext,
  req: { resume: string; agent: string; agentAid?: string | undefined },
): Promise<ResumedSession> {
  let actor = 'unknown';
  try {
    const gov = governance(ctx);
    const m = decodeResume(req.resume);
    actor = m.initiatorNodeId;
    if (m.responderNodeId !== ctx.o.identity.nodeId)
      throw new QkmError('HANDSHAKE_WRONG_RECIPIENT', 'the resume message is addressed to another node');
    // A token was issued after a governed handshake, so its presenter's node may be one the
    // Provider vouched for (asked again once the cached answer expires).
    const peer = await initiatorPeer(ctx.o.peers, ctx.o.vouched, m.initiatorNodeId);
    // The presenter is who the message says, as its node's pinned key makes it: another agent
    // (even holding RS) gets TOKEN_STOLEN.
    const initiator = agentKeyHash(peer.dsaPublicKey, m.initiatorAgent);
    // The token record, as `resume` reads it under the token's lock (one read for the checks
    // below and the token's own); set before `record` runs.
    let token!: TokenRecord;
    let posture: Posture = 'PQC';
    const precheck = async (rec: TokenRecord): Promise<void> => {
      token = rec;
      posture = (rec.posture as Posture | undefined) ?? 'PQC';
      if (req.agentAid === undefined || rec.responder !== req.agentAid)
        throw new QkmError('HANDSHAKE_WRONG_AGENT', 'the access token opens sessions with another agent');
      // A policy changed to block the initiator stops its tokens too; the budget (which counts
      // prekeys handed out) does not apply to resumptions: the token's own quota does.
      if (rec.initiatorAid) await gov.contacts.admits(rec.responder, rec.initiatorAid);
    };
    // What the responder records of the resumed session, written together with the token's use
    // count (one sync for both); filled in from the result by `record`.
    let sessionId = '';
    let provenance: SessionProvenance | undefined;
    let randomness: 'quantum' | 'os' = 'os';
    const record = (r: ResumeResult): Promise<unknown> => {
      randomness = r.provenance.seedOrigin === 'quantum' ? 'quantum' : 'os';
      sessionId = resumedSessionId(
        resumeTranscript({
          id: m.tokenId,
          initiator,
          responder: token.responder,
          nonce: m.nonce,
          salt: r.salt,
          use: r.use,
        }),
      );
      provenance = resumedProvenance(ctx, posture, randomness, 'local', m.tokenId, r.use, r.provenance);
      return Promise.all([
        ctx.sessions.put(`responder:${sessionId}`, {
          session_id: sessionId,
          role: 'responder',
          peer: peer.nodeId,
          agent: req.agent,
          peer_agent: m.initiatorAgent,
          agent_aid: token.responder,
          ...(token.initiatorAid ? { peer_aid: token.initiatorAid } : {}),
          posture,
          created: provenance.at,
          handshake_at: provenance.at,
          provenance,
        }),
        ctx.o.audit.append({
          type: 'session.resumed',
          actor: req.agent,
          details: {
            session_id: sessionId,
            role: 'responder',
            peer: peer.nodeId,
            peer_agent: m.initiatorAgent,
            token_id: m.tokenId,
            use: r.use,
            remaining: r.remaining,
            randomness,
          },
        }),
      ]);
    };
    let r: ResumeResult;
    try {
      r = await gov.tokens.resume(
        { id: m.tokenId, initiator, nonce: m.nonce, proof: m.proof },
        record,
        precheck,
      );
    } catch (err) {
      // Records written for a resumption that then lost a race with another process: undone.
      if (provenance) {
        await ctx.sessions.del(`responder:${sessionId}`).catch(() => undefined);
        await ctx.o.audit
          .append({
            type: 'session.abandoned',
            actor: req.agent,
            details: { session_id: sessionId, code: isQkmError(err) ? err.code : 'INTERNAL' },
          })
          .catch(() => undefined);
      }
      throw err;
    }
    return {
      session_id: sessionId,
      key: r.key,
      posture,
      provenance: provenance!,
      token_id: m.tokenId,
      use: r.use,
      remaining: r.remaining,
      answer: encodeAnswer({ tokenId: m.tokenId, salt: r.salt, use: r.use, randomness, confirm: r.confirm }),
      peer: peer.nodeId,
      peer_agent: m.initiatorAgent,
      ...(token.initiatorAid ? { peer_aid: token.initiatorAid } : {}),
    };
  } catch (err) {
    await refused(ctx, actor, err);
    throw err;
  }
}

/**
 * Initiator, step 3: K' from RS and the responder's answer, released once the responder's tag
 * matches (CONFIRM_MISMATCH otherwise; SESSION_NOT_FOUND for an unknown or another agent's
 * resume id). Single use: the pending resumption is deleted.
 */
export async function completeResume(
  ctx: SessionContext,
  req: { agent: string; resumeId: string; answer: string },
): Promise<ResumedSession> {
  governance(ctx);
  const pending = typeof req.resumeId === 'string' ? ctx.pendingResumes.get(req.resumeId) : undefined;
  if (!pending || pending.agent !== req.agent || ctx.clock() >= Date.parse(pending.created) + PENDING_MS)
    throw new QkmError('SESSION_NOT_FOUND', 'no resumption started by this agent has that id');
  const a = decodeAnswer(req.answer);
  const { held, rs } = pending;
  if (a.tokenId !== pending.token_id)
    throw new QkmError('CONFIRM_MISMATCH', 'the answer is for another access token');
  const t = {
    id: held.token_id,
    initiator: held.body.initiator,
    responder: held.body.responder,
    nonce: fromBase64url(pending.nonce),
    salt: a.salt,
    use: a.use,
  };
  // RS stays with the pending entry until it succeeds (a forged answer must not end it).
  const { key, confirm } = resumedKey(rs, t);
  if (!constantTimeEqual(confirm, a.confirm)) {
    key.fill(0);
    await ctx.o.audit.append({
      type: 'session.confirm_failed',
      actor: req.agent,
      details: { resume_id: req.resumeId, token_id: held.token_id, peer: held.peer },
    });
    throw new QkmError('CONFIRM_MISMATCH', 'the resumption confirmation tag does not match');
  }
  ctx.pendingResumes.delete(req.resumeId);
  const sessionId = resumedSessionId(resumeTranscript(t));
  const provenance = resumedProvenance(ctx, held.posture, a.randomness, 'responder', held.token_id, a.use);
  try {
    await Promise.all([
      ctx.sessions.put(`initiator:${sessionId}`, {
        session_id: sessionId,
        role: 'initiator',
        peer: held.peer,
        agent: req.agent,
        peer_agent: held.body.responder,
        agent_aid: held.agent_aid,
        peer_aid: held.peer_aid,
        posture: held.posture,
        created: provenance.at,
        handshake_at: provenance.at,
        provenance,
        confirmed: true,
        confirmed_at: provenance.at,
      }),
      heldTokens(ctx).put(held.token_id, { ...held, used: Math.max(held.used, a.use) }),
      ctx.o.audit.append({
        type: 'session.resumed',
        actor: req.agent,
        details: {
          session_id: sessionId,
          role: 'initiator',
          peer: held.peer,
          token_id: held.token_id,
          use: a.use,
        },
      }),
    ]);
  } catch (err) {
    key.fill(0);
    throw err;
  }
  return {
    session_id: sessionId,
    key,
    posture: held.posture,
    provenance,
    token_id: held.token_id,
    use: a.use,
    peer: held.peer,
    peer_agent: held.body.responder,
    peer_aid: held.peer_aid,
  };
}

function resumedProvenance(
  ctx: SessionContext,
  posture: Posture,
  randomness: 'quantum' | 'os',
  origin: 'local' | 'responder',
  tokenId: string,
  use: number,
  entropy?: Provenance,
): SessionProvenance {
  return {
    posture,
    degraded: randomness !== 'quantum',
    ...(randomness !== 'quantum' ? { reason: 'the resumption salt is not from quantum entropy' } : {}),
    fallback: false,
    pqc: {
      kem: 'ML-KEM-768',
      signature: 'ML-DSA-65',
      kdf: 'HKDF-SHA-256',
      randomness,
      randomnessOrigin: origin,
    },
    qkd: {
      used: false,
      keyIds: [],
      reason: "resumed: no QKD key drawn; the resumption secret carries the full session's legs",
    },
    qrng: {
      used: randomness === 'quantum',
      degraded: randomness !== 'quantum',
      ...(entropy ? { entropy } : {}),
    },
    resumption: { tokenId, use, kdf: 'HKDF-SHA-256' },
    at: new Date(ctx.clock()).toISOString(),
  };
}

/** Refusals are audited (bounded per code and minute, like rejected handshakes). */
async function refused(ctx: SessionContext, actor: string, err: unknown): Promise<void> {
  const code = isQkmError(err) ? err.code : 'INTERNAL';
  ctx.tally.rejected[code] = (ctx.tally.rejected[code] ?? 0) + 1;
  await ctx.rejections.record(actor, code, isQkmError(err) ? err.message : 'error');
}
