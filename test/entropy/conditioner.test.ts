import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { accountConditionedEntropy, HmacConditioner, outputEntropy } from '../../src/entropy/conditioner.js';

/** SP 800-90B §3.1.5.1.2 Output_Entropy written out literally in doubles (fine for small n_in). */
function naiveOutputEntropy(nIn: number, nOut: number, nW: number, hIn: number): number {
  const pHigh = 2 ** -hIn;
  const pLow = (1 - pHigh) / (2 ** nIn - 1);
  const n = Math.min(nOut, nW);
  const psi = 2 ** (nIn - n) * pLow + pHigh;
  const u = 2 ** (nIn - n) + Math.sqrt(2 * n * 2 ** (nIn - n) * Math.log(2));
  const omega = u * pLow;
  return -Math.log2(Math.max(psi, omega));
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('HMAC-SHA-256 conditioning', () => {
  it('is HMAC-SHA-256 (RFC 4231 test case 2)', () => {
    const c = new HmacConditioner({ key: new TextEncoder().encode('Jefe') });
    const { output } = c.condition(new TextEncoder().encode('what do ya want for nothing?'), 0);
    expect(hex(output)).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  });

  it('credits full entropy only when h_in ≥ n_out + 64', () => {
    const c = new HmacConditioner();
    expect(c.bytesForFullEntropy(7.5)).toBe(43); // ⌈320 / 7.5⌉
    expect(c.bytesForFullEntropy(8)).toBe(40);
    expect(c.bytesForFullEntropy(4)).toBe(80);
    const full = c.condition(new Uint8Array(43), 43 * 7.5);
    expect(full).toMatchObject({ creditedBits: 256, fullEntropy: true });
    expect(full.output).toHaveLength(32);
    const short = c.condition(new Uint8Array(42), 42 * 7.5); // h_in = 315 < 320
    expect(short.fullEntropy).toBe(false);
    expect(short.creditedBits).toBeLessThan(256);
    expect(short.creditedBits).toBeGreaterThan(255.9);
    expect(c.condition(new Uint8Array(16), 64)).toMatchObject({ fullEntropy: false });
    expect(c.condition(new Uint8Array(16), 64).creditedBits).toBeCloseTo(64, 6);
  });

  it('rejects empty input and nonsense entropy claims', () => {
    const c = new HmacConditioner();
    expect(() => c.condition(new Uint8Array(0), 0)).toThrow(RangeError);
    expect(() => c.condition(new Uint8Array(1), -1)).toThrow(RangeError);
    expect(() => c.bytesForFullEntropy(0)).toThrow(RangeError);
    expect(() => c.bytesForFullEntropy(9)).toThrow(RangeError);
  });
});

describe('Output_Entropy (SP 800-90B §3.1.5.1.2)', () => {
  it('hand-computed: n_in = n_out = n_w = h_in = 256 gives 256 − log2(1 + √(512·ln 2)) = 251.6898', () => {
    // ψ ≈ 2·2^-256, U = 1 + √(2·256·ln2) = 19.8385, ω = U·2^-256 dominates.
    expect(outputEntropy(256, 256, 256, 256)).toBeCloseTo(251.689765, 5);
  });

  it('equals the literal formula wherever doubles can evaluate it', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 1, max: 64 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        (nIn, nOut, nW, frac) => {
          const hIn = frac * nIn;
          const expected = naiveOutputEntropy(nIn, nOut, nW, hIn);
          expect(outputEntropy(nIn, nOut, nW, hIn)).toBeCloseTo(Math.max(0, expected), 7);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('survives n_in of thousands of bits and is bounded by min(h_in, n_out, n_w), monotone in h_in', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 256, max: 65_536 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (nIn, a, b) => {
          const [lo, hi] = a < b ? [a * nIn, b * nIn] : [b * nIn, a * nIn];
          const hLo = outputEntropy(nIn, 256, 256, lo);
          const hHi = outputEntropy(nIn, 256, 256, hi);
          expect(Number.isFinite(hHi)).toBe(true);
          expect(hHi).toBeLessThanOrEqual(Math.min(hi, 256));
          expect(hLo).toBeLessThanOrEqual(hHi + 1e-9);
        },
      ),
    );
  });

  it('accounting: full entropy ⇔ h_in ≥ n_out + 64, otherwise the formula', () => {
    expect(accountConditionedEntropy(8192, 320)).toEqual({ creditedBits: 256, fullEntropy: true });
    expect(accountConditionedEntropy(8192, 8000)).toEqual({ creditedBits: 256, fullEntropy: true });
    const below = accountConditionedEntropy(8192, 319.9);
    expect(below.fullEntropy).toBe(false);
    expect(below.creditedBits).toBe(outputEntropy(8192, 256, 256, 319.9));
    expect(accountConditionedEntropy(8192, 100).creditedBits).toBeCloseTo(100, 6);
    expect(accountConditionedEntropy(8192, 0).creditedBits).toBe(0);
  });
});
