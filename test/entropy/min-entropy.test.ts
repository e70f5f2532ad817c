import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  mcvFromCounts,
  mostCommonValueEstimate,
  RollingMcvEstimator,
} from '../../src/entropy/min-entropy.js';

describe('Most Common Value estimate (SP 800-90B §6.3.1)', () => {
  it('matches a hand-computed example', () => {
    // L = 20, the value 1 occurs 11 times: p̂ = 0.55,
    // p_u = 0.55 + 2.576·√(0.55·0.45/19) = 0.55 + 2.576·0.114133 = 0.844006,
    // H = −log2(0.844006) = 0.244674 bits per sample.
    const samples = [0, 1, 1, 2, 1, 3, 1, 0, 1, 2, 1, 1, 4, 1, 0, 1, 2, 1, 3, 1];
    expect(mostCommonValueEstimate(samples)).toBeCloseTo(0.244674, 6);
    // L = 1000, mode 100: p_u = 0.1 + 2.576·√(0.09/999) = 0.124450, H = 3.006358.
    expect(mcvFromCounts(100, 1000)).toBeCloseTo(3.006358, 6);
  });

  it('a constant stream has zero min-entropy; p_u is capped at 1', () => {
    expect(mostCommonValueEstimate(new Array(50).fill(7))).toBe(0);
    expect(mcvFromCounts(9, 10)).toBe(0); // 0.9 + 2.576·0.1 > 1
  });

  it('rejects too few samples and impossible counts', () => {
    expect(() => mcvFromCounts(1, 1)).toThrow(RangeError);
    expect(() => mcvFromCounts(0, 10)).toThrow(RangeError);
    expect(() => mcvFromCounts(11, 10)).toThrow(RangeError);
  });

  it('the estimate never exceeds log2 of the alphabet seen and is ≥ 0', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 2, maxLength: 500 }), (s) => {
        const h = mostCommonValueEstimate(s);
        expect(h).toBeGreaterThanOrEqual(0);
        expect(h).toBeLessThanOrEqual(Math.log2(new Set(s).size) + 1e-12);
      }),
    );
  });
});

describe('RollingMcvEstimator', () => {
  it('equals the batch estimate over the last `window` samples (bytes)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 300 }),
        fc.integer({ min: 2, max: 64 }),
        fc.integer({ min: 1, max: 37 }),
        (bytes, window, chunk) => {
          const r = new RollingMcvEstimator({ sampleBits: 8, window, minSamples: 2 });
          for (let i = 0; i < bytes.length; i += chunk) r.feed(bytes.subarray(i, i + chunk));
          const tail = Array.from(bytes.subarray(Math.max(0, bytes.length - window)));
          if (tail.length < 2) expect(r.estimate()).toBeUndefined();
          else expect(r.estimate()).toBe(mostCommonValueEstimate(tail));
        },
      ),
    );
  });

  it('splits bytes into bits for 1-bit samples, MSB first', () => {
    const r = new RollingMcvEstimator({ sampleBits: 1, window: 8, minSamples: 2 });
    r.feed(Uint8Array.of(0b11110000, 0b11111100)); // window holds the last 8 bits: 6 ones
    expect(r.size).toBe(8);
    expect(r.estimate()).toBe(mcvFromCounts(6, 8));
  });

  it('reports nothing before minSamples, and resets', () => {
    const r = new RollingMcvEstimator({ sampleBits: 8 });
    r.feed(new Uint8Array(1023).map((_, i) => i));
    expect(r.estimate()).toBeUndefined();
    r.feed(Uint8Array.of(1));
    expect(r.estimate()).toBeGreaterThan(0);
    r.reset();
    expect(r.size).toBe(0);
    expect(r.estimate()).toBeUndefined();
  });
});
