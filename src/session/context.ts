import type { QkdKeySource } from '../../drivers/qkd/interface.js';
import type { AuditSink } from '../audit/types.js';
import type { EntropyProvider } from '../entropy/types.js';
import type { ContactPolicies } from '../governance/contacts.js';
import type { PrekeyStore } from '../governance/prekeys.js';
import type { TokenIssuer } from '../governance/resumption.js';
import type { RecordStore, StorageBackend } from '../store/interface.js';
import type { KeyedMutex } from '../store/keyed-mutex.js';
import type { NodeIdentity } from './identity.js';
import type { PeerRegistry } from './peers.js';
import type { VouchedPeers } from './vouched.js';
import type { PosturePolicy } from './policy.js';
import type { SessionCounters, SessionRecord } from './records.js';
import type { RejectionAudit } from './rejection-audit.js';
import type { ReplayCache } from './replay.js';
import type { PendingResumes } from './resume.js';
import type { SessionKeyHolder } from './session-keys.js';

/**
 * What the session steps (initiator, responder, confirm) share: the service's options, its
 * stores and counters. Built once by SessionService; the steps are functions of it.
 */

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
  /** Governed agents; without it, a governed (qkm/v2) handshake is refused. */
  governance?: SessionGovernance;
  /**
   * Initiator nodes the Provider vouches for (config `provider`): a governed handshake or a
   * resumption from a node that is not pinned is accepted when the Provider vouches for it.
   * Without it, only pinned peers are accepted.
   */
  vouched?: VouchedPeers | undefined;
}

export const DEFAULT_QKD_TIMEOUT_MS = 5000;
export const DEFAULT_QKD_FALLBACK_TIMEOUT_MS = 1000;
export const DEFAULT_WINDOW_MS = 120_000;

/** The node's governed agents (issue #12): what a qkm/v2 handshake and its tokens use. */
export interface SessionGovernance {
  prekeys: PrekeyStore;
  contacts: ContactPolicies;
  /** Issues access tokens after governed handshakes and resumes sessions with them. */
  tokens: TokenIssuer;
  /** Uses and lifetime of the tokens issued. */
  tokenMaxUses: number;
  tokenTtlSeconds: number;
}

export interface SessionContext {
  readonly o: SessionServiceOptions;
  /** Namespace `sessions`, key `<role>:<session_id>`. */
  readonly sessions: RecordStore<SessionRecord>;
  readonly replay: ReplayCache;
  readonly rejections: RejectionAudit;
  readonly keys: SessionKeyHolder;
  readonly tally: SessionCounters;
  /** Errors that abandoned a session after its acceptance record was written (audited as such). */
  readonly abandoned: WeakSet<object>;
  readonly clock: () => number;
  readonly windowMs: number;
  /** Serialises the use of one prekey (budget + OTK), so a race cannot spend budget for nothing. */
  readonly prekeyLocks: KeyedMutex;
  /** Initiator: resumptions started and not yet completed (in memory, bounded). */
  readonly pendingResumes: PendingResumes;
}
