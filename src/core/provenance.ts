/**
 * Provenance: the record that travels with every piece of material the appliance serves,
 * so a caller can tell exactly where its bytes came from. The rule it exists to enforce:
 * anything produced without a healthy quantum source is `degraded: true` with a `reason`.
 */

/** Lifecycle of one raw entropy source as seen by the health monitor. */
export type SourceState =
  | 'startup' // running its SP 800-90B start-up test; not yet usable
  | 'healthy' // passed start-up, continuous tests passing
  | 'quarantined' // failed a health test; waiting for back-off then a fresh start-up test
  | 'detached' // the device is gone (unplugged); will be re-opened when it returns
  | 'closed';

export type SourceKind = 'quantum' | 'physical' | 'os';

export interface SourceSnapshot {
  id: string;
  driver: string;
  kind: SourceKind;
  simulated: boolean;
  state: SourceState;
  /** Min-entropy per sample the source claims (bits), used for health-test cutoffs and crediting. */
  claimedMinEntropy: number;
  /** Rolling SP 800-90B §6.3.1 most-common-value estimate (bits per sample), when measured. */
  estimatedMinEntropy?: number;
  /** Why the source is not healthy, when it is not. */
  reason?: string;
}

export interface DrbgProvenance {
  /** e.g. `CTR_DRBG(AES-256, df)` or `HMAC_DRBG(SHA-512)`. */
  name: string;
  /** Identifies the DRBG instance, so two outputs can be matched to one seed lineage. */
  instance: string;
  reseedCounter: number;
  /** When the instance was last (re)seeded, ISO-8601. */
  seededAt: string;
  /** Whether this request was served with prediction resistance (a reseed right before it). */
  predictionResistance: boolean;
}

export interface Provenance {
  /** Where the DRBG seed came from: `quantum` sources, or the `os` fallback. */
  seedOrigin: 'quantum' | 'os';
  /** Sources that fed the current seed, with their health at the time of the request. */
  sources: SourceSnapshot[];
  /** Min-entropy (bits) credited to the seed material behind this output. */
  entropyCredited: number;
  drbg: DrbgProvenance;
  degraded: boolean;
  /** Present exactly when `degraded` is true. */
  reason?: string;
  /** ISO-8601 time the output was produced. */
  at: string;
}
