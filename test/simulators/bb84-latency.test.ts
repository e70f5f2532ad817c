import { describe, expect, it } from 'vitest';
import { FIBRE_DELAY_S_PER_KM, latencyModel } from '../../simulators/bb84/latency.js';

describe('BB84 latency model', () => {
  it('adds accumulation, propagation, post-processing and classical round trips', () => {
    const r = latencyModel({ keyRateBps: 1000, distanceKm: 50, blockBits: 2000 });
    expect(r.accumulationS).toBe(2);
    expect(r.propagationS).toBeCloseTo(50 * 4.9e-6, 15);
    expect(r.classicalS).toBeCloseTo(3 * 2 * 50 * 4.9e-6, 15);
    expect(r.postProcessingS).toBe(0.05);
    expect(r.firstBlockLatencyS).toBeCloseTo(2 + 50 * 4.9e-6 + 0.05 + 6 * 50 * 4.9e-6, 12);
    expect(r.blockIntervalS).toBe(2);
    expect(r.deliveredRateBps).toBe(1000);
    expect(r.postProcessingBound).toBe(false);
    expect(FIBRE_DELAY_S_PER_KM).toBe(4.9e-6);
  });

  it('is post-processing bound when blocks accumulate faster than they are processed', () => {
    const r = latencyModel({ keyRateBps: 1e6, distanceKm: 10, blockBits: 1000, postProcessingS: 0.1 });
    expect(r.postProcessingBound).toBe(true);
    expect(r.blockIntervalS).toBeCloseTo(0.1 + 6 * 10 * 4.9e-6, 12);
    expect(r.deliveredRateBps).toBeLessThan(1e6);
  });

  it('a dead link never delivers', () => {
    const r = latencyModel({ keyRateBps: 0, distanceKm: 200, blockBits: 256 });
    expect(r.firstBlockLatencyS).toBe(Number.POSITIVE_INFINITY);
    expect(r.deliveredRateBps).toBe(0);
  });

  it('rejects bad inputs', () => {
    expect(() => latencyModel({ keyRateBps: -1, distanceKm: 1, blockBits: 1 })).toThrow(RangeError);
    expect(() => latencyModel({ keyRateBps: 1, distanceKm: 1, blockBits: 0 })).toThrow(RangeError);
    expect(() => latencyModel({ keyRateBps: '1' as never, distanceKm: 1, blockBits: 1 })).toThrow(TypeError);
  });
});
