import type { Provenance, SourceSnapshot } from '../core/provenance.js';

/**
 * What the rest of the appliance sees of the entropy pipeline. Implemented by
 * `EntropyService` (src/entropy/service.ts).
 */

export interface EntropyRequest {
  /**
   * `quantum`: serve only from a DRBG seeded by healthy quantum sources, else reject with
   * QkmError QUANTUM_ENTROPY_UNAVAILABLE (503). `any` (default): fall back to the OS-seeded
   * DRBG when no quantum source is healthy, flagging the output `degraded` with a reason.
   */
  require?: 'quantum' | 'any';
  /** Reseed from the sources immediately before generating (SP 800-90A prediction resistance). */
  predictionResistance?: boolean;
  /** SP 800-90A additional input, mixed into this generate call only. */
  additionalInput?: Uint8Array;
}

export interface EntropyResult {
  bytes: Uint8Array;
  provenance: Provenance;
}

export interface EntropyStatus {
  /** True when at least one quantum source is healthy and the quantum DRBG is seeded. */
  quantumAvailable: boolean;
  /** When serving now would be degraded, and why. */
  degraded: boolean;
  reason?: string;
  sources: SourceSnapshot[];
  drbg: {
    name: string;
    seedOrigin: 'quantum' | 'os' | 'unseeded';
    reseedCounter: number;
    seededAt: string | null;
    bytesSinceReseed: number;
  };
  /** Monotonic counters for metrics. */
  counters: {
    bytesServed: number;
    bytesServedDegraded: number;
    reseeds: number;
    healthFailures: number;
    requestsRejected: number;
  };
}

export interface EntropyProvider {
  /** `n` bytes, 1 ≤ n ≤ the service's per-request cap. */
  getEntropy(n: number, request?: EntropyRequest): Promise<EntropyResult>;
  /**
   * Optional synchronous fast path: the result when it can be had without waiting (nothing to
   * seed or gather), else null. Same validation and the same output rules as getEntropy.
   */
  getEntropyNow?(n: number, request?: EntropyRequest): EntropyResult | null;
  status(): EntropyStatus;
}
