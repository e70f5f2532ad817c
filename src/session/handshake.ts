import { QkmError, isQkmError } from '../core/errors.js';
import type { RecordStore } from '../store/interface.js';
import { KeyedMutex } from '../store/keyed-mutex.js';
import { confirm } from './confirm.js';
import { DEFAULT_WINDOW_MS, type SessionContext, type SessionServiceOptions } from './context.js';
import { initiate } from './initiator.js';
import {
  type AcceptRequest,
  type AcceptResult,
  type IssuedToken,
  type InitiateRequest,
  type InitiateResult,
  type SessionCounters,
  type SessionRecord,
  perPosture,
} from './records.js';
import { RejectionAudit } from './rejection-audit.js';
import { ReplayCache } from './replay.js';
import { accept } from './responder.js';
import {
  type HeldToken,
  type ResumedSession,
  acceptResume,
  completeResume,
  listTokens,
  pruneResumption,
  startResume,
} from './resume.js';
import { SessionKeyHolder } from './session-keys.js';

export {
  DEFAULT_QKD_FALLBACK_TIMEOUT_MS,
  DEFAULT_QKD_TIMEOUT_MS,
  DEFAULT_WINDOW_MS,
  type SessionGovernance,
  type SessionServiceOptions,
} from './context.js';
export type { BundleQuery, BundleSource, ResponderBundle } from './bundles.js';
export { givenBundle } from './bundles.js';
export type { HeldToken, ResumedSession } from './resume.js';
export type {
  AcceptRequest,
  AcceptResult,
  GovernanceProvenance,
  IssuedToken,
  InitiateRequest,
  InitiateResult,
  SessionCounters,
  SessionProvenance,
  SessionRecord,
} from './records.js';
export { DEFAULT_CONFIRM_HOLD_SECONDS } from './session-keys.js';

/**
 * The hybrid session-key service: `initiate` on the node whose agent starts a session, `accept`
 * on the peer's node, `confirm` back on the initiator. Construction: README, "Session protocol (qkm/v1)".
 * The steps live in initiator.ts, responder-checks.ts / responder.ts and confirm.ts; this class
 * owns their shared state (SessionContext) and the counters.
 */
export class SessionService {
  private readonly ctx: SessionContext;
  private readonly sessions: RecordStore<SessionRecord>;
  private readonly rejections: RejectionAudit;
  private readonly tally: SessionCounters = {
    initiated: perPosture(),
    initiatedDegraded: perPosture(),
    refused: 0,
    accepted: perPosture(),
    rejected: {},
    abandoned: {},
    qkdKeysWasted: 0,
  };

  constructor(o: SessionServiceOptions) {
    this.sessions = o.store.records<SessionRecord>('sessions');
    const clock = o.clock ?? Date.now;
    const windowMs = o.windowMs ?? DEFAULT_WINDOW_MS;
    this.rejections = new RejectionAudit(o.audit, { clock });
    if (o.qkd && o.identity.saeId && o.qkd.saeId !== o.identity.saeId) {
      throw new QkmError('INVALID_PARAMETER', 'the QKD key source SAE id differs from the identity bundle');
    }
    const tally = this.tally;
    this.ctx = {
      o,
      sessions: this.sessions,
      replay: new ReplayCache(o.store, { windowMs }),
      rejections: this.rejections,
      keys: new SessionKeyHolder({ store: o.store, clock, keepKeys: o.keepKeys }),
      tally,
      abandoned: new WeakSet<object>(),
      clock,
      windowMs,
      prekeyLocks: new KeyedMutex(),
    };
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
      result = await initiate(this.ctx, req);
    } catch (err) {
      if (isQkmError(err, 'POSTURE_UNAVAILABLE')) this.tally.refused++;
      throw err;
    }
    this.tally.initiated[result.posture]++;
    if (result.provenance.degraded) this.tally.initiatedDegraded[result.posture]++;
    return result;
  }

  /** Accepts a peer's handshake (checks and their order: responder.ts, `accept`). */
  accept(req: AcceptRequest): Promise<AcceptResult> {
    return accept(this.ctx, req);
  }

  /**
   * Initiator side: checks the responder's key-confirmation tag (base64url or bytes) in constant
   * time. Throws SESSION_NOT_FOUND, CONFIRM_MISMATCH. Idempotent once confirmed.
   */
  confirm(
    sessionId: string,
    tag: string | Uint8Array,
    agent: string,
    token?: { id: string; sealed: string },
  ): Promise<{ session_id: string; confirmed: true; key?: Uint8Array; token?: IssuedToken }> {
    return confirm(this.ctx, sessionId, tag, agent, token);
  }

  /** Resumed sessions (resume.ts): initiator step 1. */
  startResume(req: { agent: string; tokenId: string }): ReturnType<typeof startResume> {
    return startResume(this.ctx, req);
  }

  /** Responder step 2: checks the token, counts the use durably, derives K'. */
  async acceptResume(req: {
    resume: string;
    agent: string;
    agentAid?: string | undefined;
  }): Promise<ResumedSession> {
    const r = await acceptResume(this.ctx, req);
    this.tally.accepted[r.posture]++;
    return r;
  }

  /** Initiator step 3: K' once the responder's tag matches. */
  completeResume(req: { agent: string; resumeId: string; answer: string }): Promise<ResumedSession> {
    return completeResume(this.ctx, req);
  }

  /**
   * Housekeeping (the appliance runs it hourly): tokens this node issued or holds that expired a
   * day ago or more, their nonces and secrets, and resumptions never completed. Returns a count.
   */
  async pruneTokens(): Promise<number> {
    const issued = (await this.ctx.o.governance?.tokens.prune()) ?? 0;
    return issued + (this.ctx.o.governance ? await pruneResumption(this.ctx) : 0);
  }

  /** The access tokens an agent of this node holds (no secrets). */
  tokens(agent: string): Promise<HeldToken[]> {
    return listTokens(this.ctx, agent);
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
}
