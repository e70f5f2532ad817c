/**
 * `pqc-memory` bench (issue #13): the liboqs-wasm backend over 100 000 operations — ML-DSA-65
 * sign and verify, ML-KEM-768 encapsulate and decapsulate, a quarter each, round robin —
 * printing the process RSS and the two WebAssembly memories every 20 000 operations.
 *
 * What it shows: no leak across the WebAssembly boundary (every call frees what it allocated;
 * the linear memories do not grow after the first calls) and the secret keys are wiped after
 * use: after the run, neither the ML-DSA secret key nor the ML-KEM secret key occurs anywhere in
 * the modules' memories (their heap copies are released with OQS_MEM_secure_free). As a control,
 * the last message signed, released with plain free, is still found there.
 *
 * Goals: RSS after the run ≤ RSS after the first 20 000 operations + 16 MiB, linear memories
 * unchanged after the first 20 000, no secret-key bytes in them. Timings are information only.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { liboqsBackend } from '../../src/pqc/liboqs.js';
import type { BenchRecord } from './types.js';

const BENCH = 'pqc-memory';
const OPS = Number(process.env.QKM_PQC_MEMORY_OPS ?? 100_000);
const SAMPLE_EVERY = 20_000;
const RSS_SLACK_MIB = 16;

const MiB = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;

/** True when `needle` (its first 64 bytes) occurs in `hay`. */
function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  const n = needle.subarray(0, 64);
  const first = n[0]!;
  for (let i = hay.indexOf(first); i !== -1 && i <= hay.length - n.length; i = hay.indexOf(first, i + 1)) {
    let j = 1;
    while (j < n.length && hay[i + j] === n[j]) j++;
    if (j === n.length) return true;
  }
  return false;
}

export default async function run(): Promise<BenchRecord[]> {
  const oqs = await liboqsBackend();
  try {
    const dsa = ml_dsa65.keygen(new Uint8Array(randomBytes(32)));
    const kem = ml_kem768.keygen(new Uint8Array(randomBytes(64)));
    const empty = new Uint8Array(0);
    const msg = new Uint8Array(randomBytes(1300));
    let sig = oqs.mlDsa65.sign(msg, dsa.secretKey, empty);
    let ct = oqs.mlKem768.encapsulate(kem.publicKey).cipherText;
    const samples: { ops: number; rss: number; dsaHeap: number; kemHeap: number; ms: number }[] = [];
    const sample = (ops: number, ms: number) => {
      const [a, b] = oqs.heaps();
      samples.push({ ops, rss: process.memoryUsage.rss(), dsaHeap: a.length, kemHeap: b.length, ms });
    };
    const times: Record<string, number> = { sign: 0, verify: 0, encaps: 0, decaps: 0 };
    let failures = 0;
    sample(0, 0);
    const start = performance.now();
    for (let i = 1; i <= OPS; i++) {
      const t = performance.now();
      switch (i % 4) {
        case 0:
          msg[i % msg.length] = i & 0xff;
          sig = oqs.mlDsa65.sign(msg, dsa.secretKey, empty);
          times.sign! += performance.now() - t;
          break;
        case 1:
          if (!oqs.mlDsa65.verify(sig, msg, dsa.publicKey, empty)) failures++;
          times.verify! += performance.now() - t;
          break;
        case 2:
          ct = oqs.mlKem768.encapsulate(kem.publicKey).cipherText;
          times.encaps! += performance.now() - t;
          break;
        default:
          oqs.mlKem768.decapsulate(ct, kem.secretKey).fill(0);
          times.decaps! += performance.now() - t;
      }
      if (i % SAMPLE_EVERY === 0) sample(i, performance.now() - start);
    }
    // The control: a message signed last (freed without zeroing, not a secret) is in the heap.
    const control = new Uint8Array(randomBytes(4096));
    oqs.mlDsa65.sign(control, dsa.secretKey, empty);
    const [dsaHeap, kemHeap] = oqs.heaps();
    const dsaKeyFound = contains(dsaHeap, dsa.secretKey);
    const kemKeyFound = contains(kemHeap, kem.secretKey);
    const controlFound = contains(dsaHeap, control);
    const base = samples.find((s) => s.ops === SAMPLE_EVERY) ?? samples[0]!;
    const last = samples.at(-1)!;
    const rssGrowth = last.rss - base.rss;
    const heapsSteady = last.dsaHeap === base.dsaHeap && last.kemHeap === base.kemHeap;
    const per = (k: string) => ((times[k] ?? 0) / (OPS / 4)) * 1000;
    const out: BenchRecord[] = samples.map((s) => ({
      bench: BENCH,
      metric: `RSS after ${s.ops} operations`,
      value: MiB(s.rss),
      unit: 'MiB',
      note: `WebAssembly memories: ML-DSA ${MiB(s.dsaHeap)} MiB, ML-KEM ${MiB(s.kemHeap)} MiB; ${Math.round(s.ms)} ms so far`,
    }));
    out.push(
      {
        bench: BENCH,
        metric: `RSS growth from ${base.ops} to ${last.ops} operations`,
        value: MiB(rssGrowth),
        unit: 'MiB',
        goal: `≤ ${RSS_SLACK_MIB} MiB, WebAssembly memories unchanged`,
        pass: rssGrowth <= RSS_SLACK_MIB * 2 ** 20 && heapsSteady && failures === 0,
        note: `memories ${heapsSteady ? 'unchanged' : 'grew'}; ${failures} failed verifications; mean µs per call: sign ${per('sign').toFixed(0)}, verify ${per('verify').toFixed(0)}, encaps ${per('encaps').toFixed(0)}, decaps ${per('decaps').toFixed(0)}`,
      },
      {
        bench: BENCH,
        metric: 'secret keys left in the WebAssembly memories after the run',
        value: Number(dsaKeyFound) + Number(kemKeyFound),
        unit: 'keys',
        goal: '0 (and the control, a freed non-secret message, found: the search works)',
        pass: !dsaKeyFound && !kemKeyFound && controlFound,
        note: `ML-DSA secret key ${dsaKeyFound ? 'FOUND' : 'absent'}, ML-KEM secret key ${kemKeyFound ? 'FOUND' : 'absent'}, control message ${controlFound ? 'found' : 'NOT found'}`,
      },
    );
    return out;
  } finally {
    oqs.destroy();
  }
}
