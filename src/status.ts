import type { AuditStats } from './audit/log.js';
import type { EntropyStatus } from './entropy/types.js';
import type { KeyState } from './keys/interface.js';
import type { PqcInfo } from './pqc/index.js';
import type { SessionCounters } from './session/handshake.js';
import type { QkdLinkState } from './core/qkd-links.js';

/**
 * What `GET /v1/status` returns: one view over every subsystem, so it sits above them all (not in
 * `src/core`, which imports nothing outside itself).
 */
export interface ApplianceStatus {
  version: string;
  nodeId?: string;
  region: string;
  mode: 'simulator' | 'hardware';
  startedAt: string;
  uptimeSeconds: number;
  /** True when anything the appliance would serve now is degraded; `reasons` says why. */
  degraded: boolean;
  reasons: string[];
  entropy: EntropyStatus;
  keys: Record<KeyState, number>;
  qkd: QkdLinkState[];
  /** Session outcomes since start (fallbacks, refusals, rejected handshakes). */
  sessions: SessionCounters;
  /** The audit chain's length, how far it is sealed. */
  audit: AuditStats;
  /**
   * The PQC backend (`pqc.backend`) and the library of each step; `legacyVerified`: signatures
   * accepted in the pre-v3 context-string form since start (old audit seals, v1 bundles, prekeys).
   */
  pqc: PqcInfo & { legacyVerified: number };
  /**
   * Peer nodes this node knows: pinned by its administrator, and (with a Provider) vouched for by
   * the Provider and cached now (initiators of governed handshakes that are not pinned).
   */
  peers?: { pinned: number; vouched: number };
}
