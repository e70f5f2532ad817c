/**
 * `drbg` benchmark: CTR_DRBG(AES-256, df) generate throughput for 64 KiB requests against
 * `crypto.randomBytes(65536)` measured in the same process. The two run in short alternating
 * slices (ABBA order, medians reported) so that CPU frequency changes and neighbours hit both
 * alike. Goal: ratio ≥ 0.8. Bounded to about 4 s.
 */
import { randomBytes } from 'node:crypto';
import { CtrDrbg } from '../../src/entropy/drbg/ctr-drbg.js';
import { ReseedRequiredError } from '../../src/entropy/drbg/interface.js';
import type { BenchRecord } from './types.js';

const REQUEST = 65536;
const ROUNDS = 16;
const SLICE_MS = 110;

/** Calls `fn` repeatedly for about `ms` milliseconds; returns bytes per second. */
function measure(fn: () => void, ms: number): number {
  let n = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  let now = start;
  while (now < deadline) {
    fn();
    n += 1;
    now = process.hrtime.bigint();
  }
  return (n * REQUEST) / (Number(now - start) / 1e9);
}

export default async function run(): Promise<BenchRecord[]> {
  const drbg = new CtrDrbg({ cipher: 'aes-256', df: true });
  drbg.instantiate(randomBytes(48), randomBytes(16));
  let reseeds = 0;
  const generate = (): void => {
    try {
      drbg.generate(REQUEST);
    } catch (err) {
      if (!(err instanceof ReseedRequiredError)) throw err;
      drbg.reseed(randomBytes(48));
      reseeds += 1;
      drbg.generate(REQUEST);
    }
  };
  const baseline = (): void => {
    randomBytes(REQUEST);
  };
  // Warm-up so neither side pays for JIT or first-use OpenSSL setup inside the timing.
  measure(generate, 100);
  measure(baseline, 100);

  const drbgRates: number[] = [];
  const baseRates: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    // Alternate which side goes first (ABBA…) so a load drift does not favour one side.
    if (i % 2 === 0) {
      drbgRates.push(measure(generate, SLICE_MS));
      baseRates.push(measure(baseline, SLICE_MS));
    } else {
      baseRates.push(measure(baseline, SLICE_MS));
      drbgRates.push(measure(generate, SLICE_MS));
    }
  }
  drbg.uninstantiate();
  const value = median(drbgRates);
  const base = median(baseRates);
  const ratio = value / base;
  return [
    {
      bench: 'drbg',
      metric: 'ctr_drbg_aes256_df_64KiB_bytes_per_s',
      value,
      unit: 'B/s',
      baseline: base,
      ratio,
      goal: 'ratio >= 0.8',
      pass: ratio >= 0.8,
      note: `medians of ${ROUNDS} alternating ${SLICE_MS} ms slices; baseline crypto.randomBytes(65536); reseeds ${reseeds}`,
    },
  ];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
