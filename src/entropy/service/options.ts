import type { EntropySourceFactory, EntropySourceOpenOptions } from '../../../drivers/entropy/interface.js';
import type { HmacConditioner } from '../conditioner.js';
import type { Drbg } from '../drbg/interface.js';
import type { SourceMonitorOptions } from '../source-monitor.js';

/** The EntropyService's options and events (types only; the service re-exports them). */

export interface EntropySourceConfig {
  factory: EntropySourceFactory;
  open?: EntropySourceOpenOptions;
}

export type MonitorTuning = Omit<SourceMonitorOptions, 'factory' | 'open' | 'expectedKind'>;

export interface EntropyServiceOptions {
  /** Quantum sources (one monitor each). Sources whose `info().kind` is not `quantum` are monitored and shown but never seed the quantum DRBG. */
  sources?: EntropySourceConfig[];
  /** The OS source behind the fallback DRBG (default: `drivers/entropy/os`). */
  osSource?: EntropySourceConfig;
  /** Makes a DRBG; called twice (quantum, fallback). Default `new CtrDrbg({cipher: 'aes-256', df: true})`. */
  createDrbg?: () => Drbg;
  /** node-cron expression for scheduled reseeds (default every minute, `* * * * *`); null disables. */
  reseedCron?: string | null;
  /** Reseed after this many bytes served by a DRBG (default 1 MiB). */
  reseedBytes?: number;
  /** Per-request cap in bytes (default 65 536). */
  maxRequestBytes?: number;
  /** Back-off, sentinel interval, pool size for every source monitor. */
  monitor?: MonitorTuning;
  conditioner?: HmacConditioner;
  /** Wall clock in ms since the epoch (default `Date.now`); used for provenance times and nonces. */
  clock?: () => number;
  /**
   * Size of the per-lineage output buffer for small requests (default 0: every request is its
   * own generate call). At most the DRBG's per-request limit.
   */
  outputBufferBytes?: number;
  /** Largest request served from the output buffer (default 256 bytes). */
  bufferedRequestMax?: number;
}

/** Emitted as `reseed`; carries no seed material. */
export interface ReseedEvent {
  origin: 'quantum' | 'os';
  /** `instantiate` starts a new lineage. */
  operation: 'instantiate' | 'reseed';
  cause: 'start' | 'cron' | 'bytes' | 'interval' | 'prediction-resistance' | 'recovery' | 'first-use';
  instance: string;
  creditedBits: number;
  sources: string[];
}

/** Emitted as `degraded` when serving turns degraded or stops being degraded. */
export interface DegradedEvent {
  degraded: boolean;
  reason?: string;
}
