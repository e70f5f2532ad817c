/**
 * The Most Common Value min-entropy estimate, NIST SP 800-90B §6.3.1, over a rolling window of
 * recent samples. It is an operator's cross-check against the claimed H, not an input to
 * crediting: crediting always uses the (conservative) claim.
 */
import type { SampleBits } from './health.js';

/** z-value of the 99% upper confidence bound used by §6.3.1 step 3. */
const Z_99 = 2.576;

/**
 * §6.3.1 from a most-common-value count: p̂ = mode/L, p_u = min(1, p̂ + 2.576·√(p̂(1−p̂)/(L−1))),
 * H = −log2(p_u). Requires L ≥ 2.
 */
export function mcvFromCounts(modeCount: number, sampleCount: number): number {
  if (!Number.isInteger(sampleCount) || sampleCount < 2) {
    throw new RangeError('the MCV estimate needs at least 2 samples');
  }
  if (!Number.isInteger(modeCount) || modeCount < 1 || modeCount > sampleCount) {
    throw new RangeError('mode count must be in [1, L]');
  }
  const pHat = modeCount / sampleCount;
  const pU = Math.min(1, pHat + Z_99 * Math.sqrt((pHat * (1 - pHat)) / (sampleCount - 1)));
  // −log2(1) is −0; report +0 for a constant stream.
  return pU >= 1 ? 0 : -Math.log2(pU);
}

/** §6.3.1 over an explicit list of samples (any integer alphabet). */
export function mostCommonValueEstimate(samples: ArrayLike<number>): number {
  const counts = new Map<number, number>();
  let mode = 0;
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i]!;
    const c = (counts.get(v) ?? 0) + 1;
    counts.set(v, c);
    if (c > mode) mode = c;
  }
  return mcvFromCounts(mode, samples.length);
}

export interface RollingMcvOptions {
  sampleBits: SampleBits;
  /** Samples kept in the window (default 65 536). */
  window?: number;
  /** No estimate is reported before this many samples (default 1024). */
  minSamples?: number;
}

/** MCV estimate over the last `window` samples fed; O(1) per sample, O(2^sampleBits) per estimate. */
export class RollingMcvEstimator {
  readonly sampleBits: SampleBits;
  readonly window: number;
  readonly minSamples: number;
  private readonly ring: Uint8Array;
  private readonly counts: Uint32Array;
  private pos = 0;
  private filled = 0;

  constructor(options: RollingMcvOptions) {
    this.sampleBits = options.sampleBits;
    this.window = options.window ?? 65_536;
    this.minSamples = Math.max(2, options.minSamples ?? 1024);
    if (!Number.isInteger(this.window) || this.window < 2) throw new RangeError('window must be ≥ 2');
    this.ring = new Uint8Array(this.window);
    this.counts = new Uint32Array(1 << this.sampleBits);
  }

  /** Samples currently in the window. */
  get size(): number {
    return this.filled;
  }

  feed(bytes: Uint8Array): void {
    if (this.sampleBits === 8) {
      for (let i = 0; i < bytes.length; i++) this.push(bytes[i]!);
    } else {
      for (let i = 0; i < bytes.length; i++) {
        const b = bytes[i]!;
        for (let s = 7; s >= 0; s--) this.push((b >> s) & 1);
      }
    }
  }

  private push(x: number): void {
    if (this.filled === this.window) this.counts[this.ring[this.pos]!]!--;
    else this.filled++;
    this.ring[this.pos] = x;
    this.counts[x]!++;
    if (++this.pos === this.window) this.pos = 0;
  }

  /** Bits of min-entropy per sample, or undefined until `minSamples` samples were seen. */
  estimate(): number | undefined {
    if (this.filled < this.minSamples) return undefined;
    let mode = 0;
    for (let i = 0; i < this.counts.length; i++) if (this.counts[i]! > mode) mode = this.counts[i]!;
    return mcvFromCounts(mode, this.filled);
  }

  reset(): void {
    this.counts.fill(0);
    this.pos = 0;
    this.filled = 0;
  }
}
