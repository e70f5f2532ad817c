/**
 * Continuous health tests for raw noise-source samples, NIST SP 800-90B §4.4:
 * the Repetition Count Test (§4.4.1) and the Adaptive Proportion Test (§4.4.2), with cutoffs
 * derived from the source's *claimed* min-entropy per sample H and a false-positive probability
 * α per sample in the range the standard recommends, 2⁻⁴⁰ ≤ α ≤ 2⁻²⁰. The functions and the
 * tester default to the standard's worked example α = 2⁻²⁰; the appliance's source monitors use
 * {@link MONITOR_ALPHA_LOG2}.
 *
 * The tests are streaming: `HealthTester.feed(bytes)` splits bytes into samples (8-bit samples
 * are bytes; 1-bit samples are bits, most significant first) and carries test state across calls,
 * so a run or a window may span any number of reads.
 */

/** −log2(α) for α = 2⁻²⁰, the standard's example (SP 800-90B §4.4). */
export const ALPHA_LOG2 = 20;

/**
 * −log2(α) the source monitors use by default: α = 2⁻⁴⁰, the small end of the recommended range.
 * Why not 2⁻²⁰: α is per sample, and a Quantis at 4 Mbit/s delivers 2¹⁹ samples a second, so a
 * perfect device claimed at H = 7.5 (RCT cutoff 4, a chance run every 2²⁴ bytes) would be
 * quarantined about every half minute. At 2⁻⁴⁰ the cutoffs rise (RCT 7 at H = 7.5) and a stuck or
 * biased source is still caught within a few samples.
 */
export const MONITOR_ALPHA_LOG2 = 40;

function checkAlpha(alphaLog2: number): void {
  if (!Number.isFinite(alphaLog2) || alphaLog2 < 20 || alphaLog2 > 40) {
    throw new RangeError('−log2(α) must be in [20, 40] (SP 800-90B §4.4: 2⁻⁴⁰ ≤ α ≤ 2⁻²⁰)');
  }
}

/** SP 800-90B §4.3 requirement 12: start-up testing covers at least 1024 consecutive samples. */
export const STARTUP_SAMPLES = 1024;

export type SampleBits = 1 | 8;

function checkH(h: number, sampleBits: SampleBits): void {
  if (!Number.isFinite(h) || h <= 0 || h > sampleBits) {
    throw new RangeError(`claimed min-entropy must be in (0, ${sampleBits}] bits per sample`);
  }
}

/**
 * RCT cutoff C = 1 + ⌈(−log2 α) / H⌉ (§4.4.1). When 20/H is mathematically an integer but the
 * floating-point quotient lands a hair above it (e.g. H = 0.1 style inputs), `Math.ceil` would
 * add a spurious 1; we snap quotients within a relative 1e-12 of an integer to that integer.
 */
export function rctCutoff(
  claimedMinEntropy: number,
  sampleBits: SampleBits = 8,
  alphaLog2: number = ALPHA_LOG2,
): number {
  checkH(claimedMinEntropy, sampleBits);
  checkAlpha(alphaLog2);
  const q = alphaLog2 / claimedMinEntropy;
  const r = Math.round(q);
  const ceil = Math.abs(q - r) <= 1e-12 * q ? r : Math.ceil(q);
  return 1 + ceil;
}

/** APT window size W (§4.4.2): 1024 for non-binary (byte) samples, 512 for binary samples. */
export function aptWindow(sampleBits: SampleBits): number {
  return sampleBits === 1 ? 512 : 1024;
}

function logAddExp(a: number, b: number): number {
  if (a === Number.NEGATIVE_INFINITY) return b;
  if (b === Number.NEGATIVE_INFINITY) return a;
  const m = Math.max(a, b);
  return m + Math.log1p(Math.exp(-Math.abs(a - b)));
}

/** ln Γ-free log binomial coefficient ln C(n, k), exact summation of logs (n ≤ a few thousand). */
function logChooseTable(n: number): Float64Array {
  // lnFact[i] = ln(i!) by summation: exact enough (relative error ~1e-15 per term) for n ≤ 4096.
  const lnFact = new Float64Array(n + 1);
  for (let i = 2; i <= n; i++) lnFact[i] = lnFact[i - 1]! + Math.log(i);
  return lnFact;
}

/**
 * CRITBINOM(n, p, 1 − α): the smallest k with P(X ≤ k) ≥ 1 − α for X ~ Binomial(n, p),
 * computed as the smallest k with upper tail P(X ≥ k + 1) ≤ α. The tail is summed from the top
 * in log space, so tiny probabilities are not lost to cancellation against 1.
 */
export function critBinom(n: number, p: number, alphaLog2: number = ALPHA_LOG2): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError('n must be a positive integer');
  if (!(p > 0 && p <= 1)) throw new RangeError('p must be in (0, 1]');
  if (p === 1) return n;
  const lnFact = logChooseTable(n);
  const lnP = Math.log(p);
  const lnQ = Math.log1p(-p);
  const lnAlpha = -alphaLog2 * Math.LN2;
  // tail(j) = ln P(X ≥ j); walk j downward from n while the tail stays ≤ α.
  let tail = Number.NEGATIVE_INFINITY;
  for (let j = n; j >= 1; j--) {
    const lnPmf = lnFact[n]! - lnFact[j]! - lnFact[n - j]! + j * lnP + (n - j) * lnQ;
    const next = logAddExp(tail, lnPmf);
    // P(X ≥ j) > α: so k = j − 1 is too small; the answer is j (tail from j+1 was ≤ α).
    if (next > lnAlpha) return j;
    tail = next;
  }
  return 0;
}

/** APT cutoff = 1 + CRITBINOM(W, 2^−H, 1 − α) (§4.4.2). */
export function aptCutoff(
  claimedMinEntropy: number,
  sampleBits: SampleBits = 8,
  window: number = aptWindow(sampleBits),
  alphaLog2: number = ALPHA_LOG2,
): number {
  checkH(claimedMinEntropy, sampleBits);
  checkAlpha(alphaLog2);
  return 1 + critBinom(window, 2 ** -claimedMinEntropy, alphaLog2);
}

export type HealthTestName = 'RCT' | 'APT';

export interface HealthFailure {
  test: HealthTestName;
  /** 0-based index, among all samples fed since the last reset, of the sample that tripped the test. */
  sampleIndex: number;
  /** The count that reached the cutoff (run length for RCT, occurrences in the window for APT). */
  count: number;
  cutoff: number;
  /** Human text without sample values. */
  message: string;
}

export interface HealthTesterOptions {
  sampleBits: SampleBits;
  claimedMinEntropy: number;
  /** −log2 of the false-positive probability α per sample, 20…40 (default {@link ALPHA_LOG2}). */
  alphaLog2?: number;
}

/**
 * RCT + APT over a stream. After a failure the tester is latched (every later `feed` returns the
 * same failure) until `reset()`: a failed source must not be silently re-admitted.
 */
export class HealthTester {
  readonly sampleBits: SampleBits;
  readonly claimedMinEntropy: number;
  readonly alphaLog2: number;
  readonly rctCutoff: number;
  readonly aptCutoff: number;
  readonly aptWindow: number;

  private samplesSeen = 0;
  private rctValue = -1;
  private rctCount = 0;
  private aptValue = -1;
  private aptCount = 0;
  private aptPos = 0; // samples seen in the current APT window
  private failed: HealthFailure | null = null;

  constructor(options: HealthTesterOptions) {
    this.sampleBits = options.sampleBits;
    this.claimedMinEntropy = options.claimedMinEntropy;
    this.alphaLog2 = options.alphaLog2 ?? ALPHA_LOG2;
    this.rctCutoff = rctCutoff(options.claimedMinEntropy, options.sampleBits, this.alphaLog2);
    this.aptWindow = aptWindow(options.sampleBits);
    this.aptCutoff = aptCutoff(options.claimedMinEntropy, options.sampleBits, this.aptWindow, this.alphaLog2);
  }

  /** Total samples fed since the last reset. */
  get samples(): number {
    return this.samplesSeen;
  }

  get failure(): HealthFailure | null {
    return this.failed;
  }

  /** Samples per byte of input. */
  get samplesPerByte(): number {
    return 8 / this.sampleBits;
  }

  /** True when the stream is at an APT window boundary (no partial window pending). */
  get atWindowBoundary(): boolean {
    return this.aptPos === 0;
  }

  reset(): void {
    this.samplesSeen = 0;
    this.rctValue = -1;
    this.rctCount = 0;
    this.aptValue = -1;
    this.aptCount = 0;
    this.aptPos = 0;
    this.failed = null;
  }

  /** Tests every sample in `bytes`; returns the first failure (latched), or null if all passed. */
  feed(bytes: Uint8Array): HealthFailure | null {
    if (this.failed) return this.failed;
    if (this.sampleBits === 8) {
      for (let i = 0; i < bytes.length; i++) {
        if (this.step(bytes[i]!)) return this.failed;
      }
    } else {
      for (let i = 0; i < bytes.length; i++) {
        const b = bytes[i]!;
        for (let s = 7; s >= 0; s--) {
          if (this.step((b >> s) & 1)) return this.failed;
        }
      }
    }
    return null;
  }

  /** One sample through both tests; true on failure. */
  private step(x: number): boolean {
    const index = this.samplesSeen++;
    // §4.4.1 RCT: B counts consecutive identical samples; failure when B ≥ C.
    if (x === this.rctValue) {
      if (++this.rctCount >= this.rctCutoff) {
        this.failed = {
          test: 'RCT',
          sampleIndex: index,
          count: this.rctCount,
          cutoff: this.rctCutoff,
          message: `RCT failure: ${this.rctCount} identical consecutive samples (cutoff ${this.rctCutoff})`,
        };
        return true;
      }
    } else {
      this.rctValue = x;
      this.rctCount = 1;
    }
    // §4.4.2 APT: the first sample of each window is A; B counts A over the window, A included.
    if (this.aptPos === 0) {
      this.aptValue = x;
      this.aptCount = 1;
    } else if (x === this.aptValue) {
      if (++this.aptCount >= this.aptCutoff) {
        this.failed = {
          test: 'APT',
          sampleIndex: index,
          count: this.aptCount,
          cutoff: this.aptCutoff,
          message: `APT failure: first sample of the window seen ${this.aptCount} times in ${this.aptWindow} (cutoff ${this.aptCutoff})`,
        };
        return true;
      }
    }
    if (++this.aptPos === this.aptWindow) this.aptPos = 0;
    return false;
  }
}

/** Bytes needed to hold the §4.3 start-up test's 1024 samples. */
export function startupBytes(sampleBits: SampleBits): number {
  return (STARTUP_SAMPLES * sampleBits) / 8;
}

/** Bytes in one APT window. */
export function windowBytes(sampleBits: SampleBits): number {
  return (aptWindow(sampleBits) * sampleBits) / 8;
}

/**
 * §4.3 requirement 12 start-up test: RCT + APT over `bytes` (which must hold at least 1024
 * samples) with a fresh tester. Returns the failure, or null.
 */
export function runStartupTest(bytes: Uint8Array, options: HealthTesterOptions): HealthFailure | null {
  if (bytes.length * (8 / options.sampleBits) < STARTUP_SAMPLES) {
    throw new RangeError(`start-up test needs at least ${STARTUP_SAMPLES} samples`);
  }
  return new HealthTester(options).feed(bytes);
}
