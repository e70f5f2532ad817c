/**
 * Latency model of a QKD link: how long until the first key block exists, and how keys arrive
 * afterwards.
 *
 * The model (asymptotic, deterministic):
 * - accumulation: a block of B secret bits takes B / R seconds of quantum transmission at
 *   secret-key rate R bits/s;
 * - quantum propagation: the last pulse of the block needs L × 4.9 µs to reach Bob
 *   (group index ≈ 1.468 of SMF-28 at 1550 nm: c/n ≈ 204 000 km/s);
 * - classical post-processing: a fixed compute time per block (sifting, error correction,
 *   verification, privacy amplification; default 50 ms, a typical LDPC + Toeplitz-hash figure
 *   for ~Mbit raw blocks on a CPU) plus a number of classical round trips over the same fibre
 *   distance (default 3: basis sifting, parameter estimation / error-correction syndrome,
 *   verification hash and privacy-amplification seed).
 *
 * Post-processing of block k is pipelined with the accumulation of block k+1, so in steady state
 * blocks arrive every max(accumulation, post-processing) seconds; when post-processing is the
 * slower stage the delivered rate falls below the model rate (`postProcessingBound`).
 */

/** One-way propagation delay in standard single-mode fibre, seconds per km. */
export const FIBRE_DELAY_S_PER_KM = 4.9e-6;

export interface LatencyOptions {
  /** Secret-key rate of the link, bits per second (from the link model). */
  keyRateBps: number;
  /** Fibre length, km. */
  distanceKm: number;
  /** Secret bits per post-processed block. */
  blockBits: number;
  /** Compute time of post-processing per block, seconds (default 0.05). */
  postProcessingS?: number;
  /** Classical round trips per block (default 3). */
  classicalRoundTrips?: number;
  /** One-way fibre delay, s/km (default 4.9e-6). */
  fibreDelaySPerKm?: number;
}

export interface LatencyReport {
  /** B / R: quantum transmission time to gather one block's worth of secret bits, s. */
  accumulationS: number;
  /** One-way fibre delay L × 4.9 µs, s. */
  propagationS: number;
  /** Post-processing compute time per block, s. */
  postProcessingS: number;
  /** Classical communication time: round trips × 2 × propagation, s. */
  classicalS: number;
  /** Time from switching the link on until the first block is usable at both ends, s. */
  firstBlockLatencyS: number;
  /** Steady-state interval between blocks, s. */
  blockIntervalS: number;
  /** Bits per block. */
  blockBits: number;
  /** Steady-state delivered rate, bits/s: blockBits / blockIntervalS. */
  deliveredRateBps: number;
  /** True when post-processing, not the quantum channel, sets the block interval. */
  postProcessingBound: boolean;
}

function nonNegative(value: unknown, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number`);
  if (!(value >= 0) || value === Number.POSITIVE_INFINITY)
    throw new RangeError(`${name} must be ≥ 0 and finite`);
  return value;
}

/**
 * Key-establishment latency and burstiness for one link. A zero key rate gives infinite
 * accumulation, latency and interval, and a zero delivered rate.
 * @throws TypeError / RangeError for missing, negative or non-finite inputs, or blockBits ≤ 0.
 */
export function latencyModel(options: LatencyOptions): LatencyReport {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const rate = nonNegative(options.keyRateBps, 'keyRateBps');
  const distanceKm = nonNegative(options.distanceKm, 'distanceKm');
  const blockBits = nonNegative(options.blockBits, 'blockBits');
  if (blockBits === 0) throw new RangeError('blockBits must be > 0');
  const postProcessingS = nonNegative(options.postProcessingS ?? 0.05, 'postProcessingS');
  const roundTrips = nonNegative(options.classicalRoundTrips ?? 3, 'classicalRoundTrips');
  const delay = nonNegative(options.fibreDelaySPerKm ?? FIBRE_DELAY_S_PER_KM, 'fibreDelaySPerKm');

  const accumulationS = rate > 0 ? blockBits / rate : Number.POSITIVE_INFINITY;
  const propagationS = distanceKm * delay;
  const classicalS = roundTrips * 2 * propagationS;
  const perBlockProcessing = postProcessingS + classicalS;
  const firstBlockLatencyS = accumulationS + propagationS + perBlockProcessing;
  const blockIntervalS = Math.max(accumulationS, perBlockProcessing);
  return {
    accumulationS,
    propagationS,
    postProcessingS,
    classicalS,
    firstBlockLatencyS,
    blockIntervalS,
    blockBits,
    deliveredRateBps: Number.isFinite(blockIntervalS) && blockIntervalS > 0 ? blockBits / blockIntervalS : 0,
    postProcessingBound: perBlockProcessing > accumulationS,
  };
}
