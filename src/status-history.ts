import { RingBuffer } from './core/ring-buffer.js';
import type { ApplianceStatus } from './status.js';

/**
 * The status page's history, kept by the appliance (not by the browser, which would lose it on
 * reload and see nothing from before it was opened): one compact sample of `ApplianceStatus`
 * per interval, in a ring buffer, so memory stays bounded (default 720 samples × 5 s = 1 h).
 * Served by `GET /v1/status/history`.
 */
export interface StatusSample {
  /** When the sample was taken, ms since the epoch. */
  t: number;
  degraded: boolean;
  /** Entropy served since the previous sample (or since start, for the first), bytes/s. */
  entropyBytesPerSec: number;
  /** The part of it served degraded (OS-seeded fallback), bytes/s. */
  degradedBytesPerSec: number;
  activeKeys: number;
  sources: Array<{ id: string; state: string; estimatedMinEntropy?: number; claimedMinEntropy: number }>;
  qkd: Array<{ peerSaeId: string; up: boolean; storedKeyCount?: number }>;
}

export interface StatusHistoryOptions {
  /** Samples kept (oldest dropped first). */
  samples: number;
  /** Seconds between samples (what the scheduler is told; reported to clients). */
  intervalSeconds: number;
  now?: () => number;
}

export class StatusHistory {
  private readonly ring: RingBuffer<StatusSample>;
  private previous: { t: number; served: number; degraded: number } | undefined;
  private readonly now: () => number;
  readonly intervalSeconds: number;

  constructor(options: StatusHistoryOptions) {
    this.ring = new RingBuffer(options.samples);
    this.intervalSeconds = options.intervalSeconds;
    this.now = options.now ?? Date.now;
  }

  get capacity(): number {
    return this.ring.capacity;
  }

  /** Records one sample of `status`. */
  record(status: ApplianceStatus): StatusSample {
    const t = this.now();
    const c = status.entropy.counters;
    // The first sample's rate covers the time since start: counters begin at 0 then.
    const since = this.previous ?? { t: Date.parse(status.startedAt), served: 0, degraded: 0 };
    const seconds = Math.max((t - since.t) / 1000, 1e-3);
    const rate = (now: number, before: number) => Math.max(0, Math.round((now - before) / seconds));
    const sample: StatusSample = {
      t,
      degraded: status.degraded,
      entropyBytesPerSec: rate(c.bytesServed, since.served),
      degradedBytesPerSec: rate(c.bytesServedDegraded, since.degraded),
      activeKeys: status.keys.active,
      sources: status.entropy.sources.map((s) => ({
        id: s.id,
        state: s.state,
        claimedMinEntropy: s.claimedMinEntropy,
        ...(s.estimatedMinEntropy === undefined ? {} : { estimatedMinEntropy: s.estimatedMinEntropy }),
      })),
      qkd: status.qkd.map((l) => ({
        peerSaeId: l.peerSaeId,
        up: l.up,
        ...(l.storedKeyCount === undefined ? {} : { storedKeyCount: l.storedKeyCount }),
      })),
    };
    this.previous = { t, served: c.bytesServed, degraded: c.bytesServedDegraded };
    this.ring.push(sample);
    return sample;
  }

  /** Samples of the last `seconds` (all when undefined), oldest first. */
  since(seconds?: number): StatusSample[] {
    const all = this.ring.toArray();
    if (seconds === undefined) return all;
    const from = this.now() - seconds * 1000;
    return all.filter((s) => s.t >= from);
  }
}
