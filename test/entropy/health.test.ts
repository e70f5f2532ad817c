import { createCipheriv } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  aptCutoff,
  aptWindow,
  critBinom,
  HealthTester,
  MONITOR_ALPHA_LOG2,
  rctCutoff,
  runStartupTest,
  STARTUP_SAMPLES,
  type SampleBits,
  startupBytes,
  windowBytes,
} from '../../src/entropy/health.js';

/** A fixed, reproducible stand-in for an ideal source: AES-256-CTR keystream under a fixed key. */
function idealStream(n: number, seed = 1): Uint8Array {
  const key = Buffer.alloc(32, seed);
  const iv = Buffer.alloc(16, 0);
  return new Uint8Array(createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc(n)));
}

/**
 * Independent oracle for CRITBINOM(n, 2^−H, 1 − 2^−20) with integer H, in exact integer arithmetic:
 * the least k with P(X ≥ k+1) ≤ 2^−20, where P(X ≥ j)·2^(Hn) = Σ_{i ≥ j} C(n,i)·(2^H − 1)^(n−i).
 */
function exactCritBinom(n: number, h: number): number {
  const base = (1n << BigInt(h)) - 1n;
  const total = 1n << BigInt(h * n);
  const limit = total >> 20n; // 2^(Hn)·2^−20, exact since Hn ≥ 20
  const choose: bigint[] = [1n];
  for (let i = 1; i <= n; i++) choose[i] = (choose[i - 1]! * BigInt(n - i + 1)) / BigInt(i);
  let tail = 0n;
  for (let j = n; j >= 1; j--) {
    tail += choose[j]! * base ** BigInt(n - j);
    if (tail > limit) return j;
  }
  return 0;
}

describe('cutoffs (SP 800-90B §4.4, α = 2^-20)', () => {
  it('APT cutoffs at W = 1024 for H = 1, 2, 4, 8 are 589, 325, 105, 18', () => {
    expect([1, 2, 4, 8].map((h) => aptCutoff(h, 8))).toEqual([589, 325, 105, 18]);
    expect(aptWindow(8)).toBe(1024);
  });

  it('RCT cutoffs for H = 1, 2, 4, 8 are 21, 11, 6, 4', () => {
    expect([1, 2, 4, 8].map((h) => rctCutoff(h))).toEqual([21, 11, 6, 4]);
  });

  it('CRITBINOM matches exact integer arithmetic (W = 1024 and the binary W = 512)', () => {
    for (const h of [1, 2, 4, 8]) expect(critBinom(1024, 2 ** -h)).toBe(exactCritBinom(1024, h));
    expect(critBinom(512, 0.5)).toBe(exactCritBinom(512, 1));
  });

  it('binary samples use W = 512; the cutoff is 1 + CRITBINOM(512, 2^-H, 1-α)', () => {
    expect(aptWindow(1)).toBe(512);
    expect(windowBytes(1)).toBe(64);
    // H = 1: exact oracle; mean 256, so the cutoff lies a few standard deviations (σ ≈ 11.3) above.
    expect(aptCutoff(1, 1)).toBe(1 + exactCritBinom(512, 1));
    expect(aptCutoff(1, 1)).toBe(311);
    // Lower claimed entropy (larger p) means a higher cutoff, never above W.
    expect(aptCutoff(0.5, 1)).toBeGreaterThan(aptCutoff(1, 1));
    expect(aptCutoff(0.01, 1)).toBeLessThanOrEqual(513);
  });

  it('RCT: C = 1 + 20/H exactly when 20/H is an integer, despite float rounding', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 2000 }), (k) => {
        expect(rctCutoff(20 / k)).toBe(1 + k);
      }),
    );
    expect(rctCutoff(0.1, 1)).toBe(201);
    expect(rctCutoff(7.5)).toBe(4); // ⌈2.67⌉ = 3
  });

  it('APT cutoff is monotone non-increasing in H', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.05, max: 8, noNaN: true }),
        fc.double({ min: 0.05, max: 8, noNaN: true }),
        (a, b) => {
          const [lo, hi] = a < b ? [a, b] : [b, a];
          expect(aptCutoff(hi)).toBeLessThanOrEqual(aptCutoff(lo));
        },
      ),
      { numRuns: 30 },
    );
  });

  it('rejects claims outside (0, sampleBits]', () => {
    for (const h of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 8.01]) {
      expect(() => rctCutoff(h)).toThrow(RangeError);
      expect(() => aptCutoff(h)).toThrow(RangeError);
    }
    expect(() => new HealthTester({ sampleBits: 1, claimedMinEntropy: 2 })).toThrow(RangeError);
  });

  it('takes α anywhere in the recommended range 2⁻⁴⁰ ≤ α ≤ 2⁻²⁰, and nowhere else', () => {
    // RCT: C = 1 + ⌈−log2(α) / H⌉.
    expect(rctCutoff(7.5, 8, MONITOR_ALPHA_LOG2)).toBe(7);
    expect(rctCutoff(8, 8, 40)).toBe(6);
    expect(rctCutoff(1, 1, 30)).toBe(31);
    // APT: the same critical-value construction, at the smaller α.
    for (const h of [1, 2, 4, 7.5, 8]) {
      expect(aptCutoff(h, 8, 1024, 40)).toBe(1 + critBinom(1024, 2 ** -h, 40));
      expect(aptCutoff(h, 8, 1024, 40)).toBeGreaterThan(aptCutoff(h, 8, 1024, 20));
    }
    const t = new HealthTester({ sampleBits: 8, claimedMinEntropy: 7.5, alphaLog2: 40 });
    expect([t.alphaLog2, t.rctCutoff, t.aptCutoff]).toEqual([40, 7, aptCutoff(7.5, 8, 1024, 40)]);
    for (const a of [19, 41, Number.NaN]) {
      expect(() => rctCutoff(7.5, 8, a)).toThrow(RangeError);
      expect(() => new HealthTester({ sampleBits: 8, claimedMinEntropy: 7.5, alphaLog2: a })).toThrow(
        RangeError,
      );
    }
  });

  it("at the monitors' α, a run the default α flags in an ideal stream passes; a stuck source still fails fast", () => {
    // Four equal bytes: what a perfect 4 Mbit/s source emits by chance about every 30 s.
    const stream = idealStream(8192);
    stream.fill(0x3c, 5000, 5004);
    const claim = { sampleBits: 8 as const, claimedMinEntropy: 7.5 };
    expect(new HealthTester(claim).feed(stream)).toMatchObject({ test: 'RCT', count: 4 });
    expect(new HealthTester({ ...claim, alphaLog2: MONITOR_ALPHA_LOG2 }).feed(stream)).toBeNull();
    const stuck = new Uint8Array(64).fill(0xa5);
    expect(new HealthTester({ ...claim, alphaLog2: MONITOR_ALPHA_LOG2 }).feed(stuck)).toMatchObject({
      test: 'RCT',
      sampleIndex: 6,
      count: 7,
    });
  });
});

/** `len` distinct byte values none equal to `avoid` — a prefix that cannot trip either test. */
function distinctPrefix(len: number, avoid: number): Uint8Array {
  const out: number[] = [];
  for (let v = 0; out.length < len; v++) if (v !== avoid) out.push(v);
  return Uint8Array.from(out);
}

describe('Repetition Count Test', () => {
  it('a stuck source fails at exactly the C-th identical sample, not before', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 4, 7.5, 8),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 200 }),
        fc.boolean(),
        (h, stuck, prefixLen, oneByOne) => {
          const t = new HealthTester({ sampleBits: 8, claimedMinEntropy: h });
          const c = rctCutoff(h);
          expect(t.feed(distinctPrefix(prefixLen, stuck))).toBeNull();
          const run = new Uint8Array(c - 1).fill(stuck);
          if (oneByOne) for (const b of run) expect(t.feed(Uint8Array.of(b))).toBeNull();
          else expect(t.feed(run)).toBeNull();
          const f = t.feed(Uint8Array.of(stuck));
          expect(f?.test).toBe('RCT');
          expect(f?.count).toBe(c);
          expect(f?.sampleIndex).toBe(prefixLen + c - 1);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a run broken one sample short of C never fails', () => {
    for (const h of [8, 4, 2]) {
      const c = rctCutoff(h);
      const t = new HealthTester({ sampleBits: 8, claimedMinEntropy: h });
      // runs of exactly C − 1 of each value in turn (values cycle, so no APT build-up either)
      const s = new Uint8Array(256 * (c - 1));
      for (let v = 0; v < 256; v++) s.fill(v, v * (c - 1), (v + 1) * (c - 1));
      for (let i = 0; i < 8; i++) expect(t.feed(s)).toBeNull();
    }
  });

  it('binary samples: a stuck bit fails at the 21st identical bit for H = 1', () => {
    const t = new HealthTester({ sampleBits: 1, claimedMinEntropy: 1 });
    const f = t.feed(new Uint8Array(3)); // 24 zero bits
    expect(f?.test).toBe('RCT');
    expect(f?.sampleIndex).toBe(20);
  });

  it('failures latch until reset', () => {
    const t = new HealthTester({ sampleBits: 8, claimedMinEntropy: 8 });
    const f = t.feed(new Uint8Array(4));
    expect(f?.test).toBe('RCT');
    expect(t.feed(idealStream(64))).toBe(f);
    t.reset();
    expect(t.failure).toBeNull();
    expect(t.samples).toBe(0);
    expect(t.feed(Uint8Array.of(1, 2, 3))).toBeNull();
  });
});

describe('Adaptive Proportion Test', () => {
  it("a biased source (the window's first value every other sample) fails the APT, not the RCT", () => {
    for (const h of [8, 4, 2]) {
      const cutoff = aptCutoff(h);
      const t = new HealthTester({ sampleBits: 8, claimedMinEntropy: h });
      // 0x42, r, 0x42, r, … with r ≠ 0x42: no runs at all, but 0x42 is half of every window.
      const noise = idealStream(1024);
      const s = new Uint8Array(1024);
      for (let i = 0; i < 1024; i++) s[i] = i % 2 === 0 ? 0x42 : noise[i] === 0x42 ? 0x43 : noise[i]!;
      const f = t.feed(s);
      expect(f?.test).toBe('APT');
      expect(f?.count).toBe(cutoff);
      expect(f?.sampleIndex).toBe(2 * (cutoff - 1));
    }
  });

  it('a count of cutoff − 1 within one window passes, and the count restarts each window', () => {
    const h = 8;
    const cutoff = aptCutoff(h); // 18
    const t = new HealthTester({ sampleBits: 8, claimedMinEntropy: h });
    for (let w = 0; w < 4; w++) {
      const win = new Uint8Array(1024);
      let v = 0;
      for (let i = 0; i < 1024; i++) {
        // first sample 0x42, then 0x42 at every 10th position until cutoff − 1 occurrences
        if (i === 0 || (i % 10 === 0 && i / 10 < cutoff - 1)) win[i] = 0x42;
        else {
          v = (v + 1) % 256;
          if (v === 0x42) v++;
          win[i] = v;
        }
      }
      expect(t.feed(win)).toBeNull();
      expect(t.atWindowBoundary).toBe(true);
    }
  });

  it('binary: a 3:1 biased bit stream fails the W = 512 APT', () => {
    const t = new HealthTester({ sampleBits: 1, claimedMinEntropy: 1 });
    // 0b1110 repeated: 75% ones, longest run 3 — the RCT (C = 21) cannot fire.
    const f = t.feed(new Uint8Array(128).fill(0xee));
    expect(f?.test).toBe('APT');
    expect(f?.count).toBe(aptCutoff(1, 1));
  });
});

describe('ideal source and start-up test', () => {
  it('an ideal source passes at every claimed H (fixed AES-CTR stream)', () => {
    for (const h of [1, 2, 4]) {
      expect(new HealthTester({ sampleBits: 8, claimedMinEntropy: h }).feed(idealStream(1 << 20))).toBeNull();
    }
    // H = 8 gives C = 4: a true ideal source trips it with probability ~2^-24 per sample (α by design).
    expect(new HealthTester({ sampleBits: 8, claimedMinEntropy: 8 }).feed(idealStream(1 << 16))).toBeNull();
    expect(new HealthTester({ sampleBits: 1, claimedMinEntropy: 1 }).feed(idealStream(1 << 12))).toBeNull();
  });

  it('start-up covers 1024 samples and needs at least that many', () => {
    expect(STARTUP_SAMPLES).toBe(1024);
    expect(startupBytes(8)).toBe(1024);
    expect(startupBytes(1)).toBe(128);
    expect(runStartupTest(idealStream(1024), { sampleBits: 8, claimedMinEntropy: 7.5 })).toBeNull();
    expect(runStartupTest(new Uint8Array(1024), { sampleBits: 8, claimedMinEntropy: 7.5 })?.test).toBe('RCT');
    expect(() => runStartupTest(new Uint8Array(1023), { sampleBits: 8, claimedMinEntropy: 7.5 })).toThrow(
      RangeError,
    );
    const bits: SampleBits = 1;
    expect(runStartupTest(idealStream(128), { sampleBits: bits, claimedMinEntropy: 1 })).toBeNull();
  });
});
