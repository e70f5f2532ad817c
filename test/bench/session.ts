/**
 * `session` bench: full hybrid session establishment between two qkm nodes on loopback — the
 * initiating agent's `POST /v1/sessions` on node A (policy decision incl. the KME status check,
 * ML-KEM-768 encapsulation, QKD enc_keys over mutual TLS in the QKD posture, ML-DSA-65 signing,
 * HKDF, audit) followed by the responding agent's `POST /v1/sessions/accept` on node B (ML-DSA
 * verification, replay cache, decapsulation, dec_keys, HKDF, confirm tag) — for each posture.
 * Sequential, one session at a time, so sessions/s = 1 / mean latency of one agent pair.
 *
 * Baseline, same run: the raw primitives one establishment needs, called directly on the PQC
 * backend in use (src/pqc: ML-DSA and decapsulation on the backend, encapsulation with caller
 * randomness on noble, as qkm does) and node:crypto — ML-KEM-768 encapsulate + decapsulate,
 * ML-DSA-65 sign + verify (over a domain-tagged message the size of a handshake body), and one
 * HKDF-SHA-256 — run back to back as one chain after each establishment. Ratio = session p50 /
 * the chain's p50; goal ≤ 1.3 (the appliance adds little on top of the cryptography).
 *
 * The whole run is made twice: with `pqc.backend: liboqs-wasm` (the default), then with `noble`
 * (shorter slices), each against its own chain. `session-vs-noble`: per posture, p50 with liboqs
 * ÷ p50 with noble, same run; goal ≤ 0.35. The absolute p50s per posture and backend are printed
 * for the README.
 *
 * The KME pair and its BB84 link run in a child process (see pair-process.ts); both nodes and both
 * agents run in this one.
 *
 * Postures are reached as in the demo: QKD+PQC+QRNG with the link up; PQC+QRNG with the link
 * paused and its stock consumed; PQC with node A's Quantis quarantined (stuck output).
 */
import { randomBytes } from 'node:crypto';
import { hkdfSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { taggedMessage } from '../../src/pqc/domain.js';
import {
  type PqcBackendName,
  mlDsa65KeygenFromSeed,
  mlDsa65Sign,
  mlDsa65Verify,
  mlKem768Decapsulate,
  mlKem768Encapsulate,
  mlKem768KeygenFromSeed,
  pqcBackend,
} from '../../src/pqc/index.js';
import type { Posture } from '../../src/client/client.js';
import {
  type TwoNodeSetup,
  exhaustQkd,
  quarantineQrng,
  restoreQkd,
  restoreQrng,
  startTwoNodeSetup,
  waitForQkdKeys,
  waitForQrng,
} from '../../src/demo/index.js';
import type { BenchRecord } from './types.js';

const BENCH = 'session';
/** Per posture: stop at whichever comes first (ML-DSA signing times are heavy-tailed: p50s need a few hundred samples to settle). */
const SLICE_MS = 15_000;
const MAX_SESSIONS = 800;
/** The noble run only feeds the comparison: shorter slices (its sessions are ≈ 3× slower). */
const NOBLE_SLICE_MS = 8_000;
/** session-vs-noble goal: p50 with liboqs ÷ p50 with noble. */
const NOBLE_GOAL = 0.35;
/** Establishments before each slice's samples: the posture switch settles (caches, KME stock). */
const WARMUP = 5;
/**
 * Before the first slice, establishments and chains for this long (at most WARMUP_MAX): the
 * appliance's code paths are compiled and its stores warm, as in a node that has run for a while.
 */
const WARMUP_MS = 3000;
const WARMUP_MAX = 200;
/** The concurrency line (information): agent pairs, and for how long (the KME link at ×100 keeps up). */
const CONCURRENT_PAIRS = 8;
const CONCURRENT_MS = 5000;
/** Roughly the size of an encoded handshake body (KEM ciphertext 1088 B + ids, r, nonce, context). */
const BODY_BYTES = 1300;
const GOAL = 1.3;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

function median(xs: number[]): number {
  return percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
}

/**
 * 95% percentile-bootstrap interval of p50(a) / p50(b): how far the ratio could move from
 * sampling noise alone. `paired` (an establishment and the chain run right after it, same
 * length): pairs (a[i], b[i]) resampled together. Otherwise (two independent runs, e.g. the
 * liboqs and noble slices, of different lengths) each sample is resampled on its own, from all
 * of it — pairing them by index would use only the first min(n) samples of the longer one, an
 * interval around another estimate than the point printed. Deterministic (seeded), so the same
 * samples give the same interval.
 */
function bootstrapRatioCi(a: number[], b: number[], paired: boolean, rounds = 400): [number, number] {
  let seed = 0x9e3779b9;
  const next = () => {
    // xorshift32: statistics only, not a secret.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  if (paired && a.length !== b.length) throw new Error('paired samples of different lengths');
  const ra = new Array<number>(a.length);
  const rb = new Array<number>(b.length);
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < a.length; i++) {
      const j = Math.floor(next() * a.length);
      ra[i] = a[j] as number;
      if (paired) rb[i] = b[j] as number;
    }
    if (!paired) for (let i = 0; i < b.length; i++) rb[i] = b[Math.floor(next() * b.length)] as number;
    ratios.push(median(ra) / median(rb));
  }
  ratios.sort((x, y) => x - y);
  return [round(percentile(ratios, 2.5)), round(percentile(ratios, 97.5))];
}

function timeIt(fn: () => unknown): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

/** One turn of the event loop: lets timers and I/O callbacks that fell due run now. */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * The raw primitives of one establishment, run back to back and timed as one unit (p50 over the
 * runs, comparable to the establishment p50), plus each primitive's median for the note.
 * ML-DSA signing uses rejection sampling, so its time varies run to run; timing the chain keeps
 * that variance in the baseline as it is in the establishment.
 * The chain yields to the event loop between primitives (inside its timing), as the
 * establishment does at each await: the bench process also runs both nodes' background work
 * (simulated Quantis devices and health tests, the BB84 link, the KMEs). A chain that never
 * yields would push the background work that fell due during it into the next establishment's
 * timing; yielding makes each side absorb its share.
 */
class PrimitiveChain {
  private readonly kem = mlKem768KeygenFromSeed(new Uint8Array(randomBytes(64)));
  private readonly dsa = mlDsa65KeygenFromSeed(new Uint8Array(randomBytes(32)));
  private readonly body = new Uint8Array(randomBytes(BODY_BYTES));
  private readonly tag = new TextEncoder().encode('qkm/v1 handshake');
  readonly samples: Record<string, number[]> = { encaps: [], decaps: [], sign: [], verify: [], hkdf: [] };

  /** One run of the chain; returns its total ms (the primitives plus the yields between them). */
  async once(): Promise<number> {
    const { kem, dsa, body, tag, samples } = this;
    const push = (k: string, v: number) => {
      samples[k]?.push(v);
      return v;
    };
    const seed = new Uint8Array(randomBytes(32));
    const ikm = new Uint8Array(randomBytes(64));
    const salt = new Uint8Array(randomBytes(32));
    let ct: Uint8Array = new Uint8Array(0);
    let sig: Uint8Array = new Uint8Array(0);
    await yieldToLoop();
    const start = performance.now();
    push(
      'encaps',
      timeIt(() => {
        ct = mlKem768Encapsulate(kem.publicKey, seed).cipherText;
      }),
    );
    await yieldToLoop();
    push(
      'sign',
      timeIt(() => {
        sig = mlDsa65Sign(taggedMessage(tag, body), dsa.secretKey);
      }),
    );
    await yieldToLoop();
    push(
      'hkdf',
      timeIt(() => hkdfSync('sha256', ikm, salt, body.subarray(0, 40), 32)),
    );
    await yieldToLoop();
    push(
      'verify',
      timeIt(() => mlDsa65Verify(sig, taggedMessage(tag, body), dsa.publicKey)),
    );
    await yieldToLoop();
    push(
      'decaps',
      timeIt(() => mlKem768Decapsulate(ct, kem.secretKey)),
    );
    return performance.now() - start;
  }

  /** Forgets the samples so far (the warm-up's). */
  reset(): void {
    for (const v of Object.values(this.samples)) v.length = 0;
  }

  medians(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.samples).map(([k, v]) => [k, median(v)]));
  }
}

interface SliceResult {
  posture: Posture;
  latencies: number[];
  /** The primitive chain, one run after each establishment: the baseline under the same load. */
  chains: number[];
  /** The same establishment without HTTP (SessionService calls in this process), interleaved. */
  inProcess: number[];
  /**
   * QKD posture only: one enc_keys (A) + one dec_keys (B) exchange with the KMEs, alone and in
   * sequence, interleaved: the KMEs' share of an establishment, which is not the appliance's.
   */
  kmeExchanges: number[];
  /** Time spent in the HTTP establishments only. */
  elapsedMs: number;
  wrongPosture: number;
}

async function establishOnce(setup: TwoNodeSetup): Promise<{ ms: number; posture: Posture }> {
  const t = performance.now();
  const init = await setup.a.client.sessions.initiate({ responderAgent: 'default', peer: setup.b.nodeId });
  const acc = await setup.b.client.sessions.accept(init.handshake);
  const ms = performance.now() - t;
  if (!Buffer.from(init.key).equals(Buffer.from(acc.key))) throw new Error('keys differ');
  init.key.fill(0);
  acc.key.fill(0);
  return { ms, posture: init.posture };
}

/** enc_keys on A's KME for B, then dec_keys on B's KME for those ids: one session's KME exchanges. */
async function kmeExchangeOnce(setup: TwoNodeSetup): Promise<number> {
  const a = setup.a.appliance.qkd;
  const b = setup.b.appliance.qkd;
  if (!a || !b) throw new Error('the two-node setup has no QKD key sources');
  const t = performance.now();
  const keys = await a.getKeys(setup.b.saeId, { number: 1, size: 256 }, { retries: 0 });
  const fetched = await b.getKeysById(
    setup.a.saeId,
    keys.map((k) => k.keyId),
  );
  const ms = performance.now() - t;
  for (const k of [...keys, ...fetched]) k.key.fill(0);
  return ms;
}

/** initiate on A's SessionService + accept on B's, no HTTP: where the HTTP layer's share shows. */
async function establishInProcess(setup: TwoNodeSetup): Promise<number> {
  const t = performance.now();
  const init = await setup.a.appliance.sessions.initiate({
    agent: 'alice',
    responderAgent: 'bob',
    peer: setup.b.nodeId,
  });
  const acc = await setup.b.appliance.sessions.accept({ agent: 'bob', handshake: init.handshake });
  const ms = performance.now() - t;
  init.key.fill(0);
  acc.key.fill(0);
  return ms;
}

/** Sessions/s with `pairs` agent pairs establishing concurrently for `ms` (bounded by time). */
async function concurrentPairs(
  setup: TwoNodeSetup,
  pairs: number,
  ms: number,
): Promise<{ sessions: number; perSecond: number; p50: number; postures: Record<string, number> }> {
  const latencies: number[] = [];
  const postures: Record<string, number> = {};
  const start = performance.now();
  await Promise.all(
    Array.from({ length: pairs }, async () => {
      while (performance.now() - start < ms) {
        const e = await establishOnce(setup);
        latencies.push(e.ms);
        postures[e.posture] = (postures[e.posture] ?? 0) + 1;
      }
    }),
  );
  const elapsed = performance.now() - start;
  return {
    sessions: latencies.length,
    perSecond: (latencies.length / elapsed) * 1000,
    p50: median(latencies),
    postures,
  };
}

async function slice(
  setup: TwoNodeSetup,
  posture: Posture,
  chain: PrimitiveChain,
  limits: { ms: number; sessions: number },
): Promise<SliceResult> {
  for (let i = 0; i < WARMUP; i++) await establishOnce(setup);
  const r: SliceResult = {
    posture,
    latencies: [],
    chains: [],
    inProcess: [],
    kmeExchanges: [],
    elapsedMs: 0,
    wrongPosture: 0,
  };
  const start = performance.now();
  while (r.latencies.length < limits.sessions && performance.now() - start < limits.ms) {
    const e = await establishOnce(setup);
    r.elapsedMs += e.ms;
    if (e.posture !== posture) r.wrongPosture++;
    r.latencies.push(e.ms);
    // Before the chain, so that lattice arithmetic separates it from the next establishment as it
    // does every establishment from the one before.
    if (posture === 'QKD+PQC+QRNG' && r.latencies.length % 4 === 2) {
      r.kmeExchanges.push(await kmeExchangeOnce(setup));
    }
    r.chains.push(await chain.once());
    // Every fourth round, one in-process establishment (excluded from the HTTP rate).
    if (r.latencies.length % 4 === 0) r.inProcess.push(await establishInProcess(setup));
  }
  return r;
}

interface BackendRun {
  backend: PqcBackendName;
  slices: SliceResult[];
  chain: PrimitiveChain;
  concurrent?: Awaited<ReturnType<typeof concurrentPairs>>;
}

/** Every posture with the appliances on `backend` (the process's PQC backend follows their config). */
async function runBackend(
  backend: PqcBackendName,
  limits: { ms: number; sessions: number },
  withConcurrency: boolean,
): Promise<BackendRun> {
  // ×100 ≈ 560 keys/s at 25 km, far above what sequential sessions consume.
  // The KMEs in a process of their own, as they are other machines: their TLS and key
  // bookkeeping would otherwise run on the nodes' event loop and be charged to the appliance.
  const setup = await startTwoNodeSetup({
    kmeProcess: true,
    timeScale: 100,
    configOverrides: {
      api: {
        bodyLimit: 262_144,
        rateLimitPerMinute: 1_000_000,
        requestTimeoutMs: 30_000,
        badTokensPerMinute: 60,
      },
      pqc: { backend },
    },
  });
  try {
    if (pqcBackend().name !== backend)
      throw new Error(`the appliances run ${pqcBackend().name}, not ${backend}`);
    // Made after the appliances selected the backend: the chain runs on it too.
    const chain = new PrimitiveChain();
    await waitForQrng(setup, 'a');
    await waitForQkdKeys(setup, 10);
    const warmStart = performance.now();
    for (let i = 0; i < WARMUP_MAX && performance.now() - warmStart < WARMUP_MS; i++) {
      await establishOnce(setup);
      await chain.once();
    }
    chain.reset();
    const slices: SliceResult[] = [];
    slices.push(await slice(setup, 'QKD+PQC+QRNG', chain, limits));
    const concurrent = withConcurrency
      ? await concurrentPairs(setup, CONCURRENT_PAIRS, CONCURRENT_MS)
      : undefined;
    await exhaustQkd(setup);
    slices.push(await slice(setup, 'PQC+QRNG', chain, limits));
    await restoreQkd(setup);
    await quarantineQrng(setup);
    slices.push(await slice(setup, 'PQC', chain, limits));
    await restoreQrng(setup).catch(() => undefined);
    return { backend, slices, chain, ...(concurrent ? { concurrent } : {}) };
  } finally {
    await setup.stop();
  }
}

/** The per-posture records of one backend's run (ratio goals against its own chain). */
function backendRecords(run: BackendRun, goals: boolean): BenchRecord[] {
  const records: BenchRecord[] = [];
  const tag = `[${run.backend}]`;
  if (run.concurrent) {
    const c = run.concurrent;
    records.push({
      bench: BENCH,
      metric: `${tag} sessions/s with ${CONCURRENT_PAIRS} concurrent agent pairs (information)`,
      value: round(c.perSecond),
      unit: 'sessions/s',
      note:
        `${c.sessions} establishments in ${CONCURRENT_MS / 1000} s, p50 ${round(c.p50)} ms, ` +
        `postures ${JSON.stringify(c.postures)}; both nodes share this process's event loop`,
    });
  }
  const allChains = run.slices.flatMap((s) => s.chains);
  const medians = run.chain.medians();
  records.push({
    bench: BENCH,
    metric: `${tag} raw primitives ML-KEM-768 encaps+decaps, ML-DSA-65 sign+verify, HKDF-SHA-256 (p50 of the chain)`,
    value: round(median(allChains)),
    unit: 'ms',
    note: `${allChains.length} runs interleaved with the sessions; medians: ${Object.entries(medians)
      .map(([k, v]) => `${k} ${v.toFixed(3)}`)
      .join(', ')}`,
  });
  for (const s of run.slices) {
    const sorted = [...s.latencies].sort((x, y) => x - y);
    const p50 = percentile(sorted, 50);
    const baseline = median(s.chains);
    const note =
      `${s.latencies.length} sequential establishments, each followed by one primitive chain` +
      (s.wrongPosture > 0 ? `; ${s.wrongPosture} ran in another posture` : '');
    records.push(
      {
        bench: BENCH,
        metric: `${tag} ${s.posture} p50 establishment (initiate A + accept B over HTTP)`,
        value: round(p50),
        unit: 'ms',
        note,
      },
      {
        bench: BENCH,
        metric: `${tag} ${s.posture} p99 establishment`,
        value: round(percentile(sorted, 99)),
        unit: 'ms',
      },
      {
        bench: BENCH,
        metric: `${tag} ${s.posture} sessions/s (one agent pair, sequential)`,
        value: round((s.latencies.length / s.elapsedMs) * 1000),
        unit: 'sessions/s',
      },
      {
        bench: BENCH,
        metric: `${tag} ${s.posture} p50 in-process (SessionService, no HTTP)`,
        value: round(median(s.inProcess)),
        unit: 'ms',
        baseline: round(baseline),
        ratio: round(median(s.inProcess) / baseline),
        note: `${s.inProcess.length} establishments interleaved with the HTTP ones`,
      },
      ...(s.kmeExchanges.length > 0
        ? [
            {
              bench: BENCH,
              metric: `${tag} ${s.posture} p50 / (raw primitive cost + the KME exchanges alone) (information)`,
              value: round(p50),
              unit: 'ms',
              baseline: round(baseline + median(s.kmeExchanges)),
              ratio: round(p50 / (baseline + median(s.kmeExchanges))),
              note:
                `KME exchanges (enc_keys on A + dec_keys on B through qkm's ETSI 014 client, in ` +
                `sequence, outside any session) p50 ${round(median(s.kmeExchanges))} ms over ` +
                `${s.kmeExchanges.length} runs, counted whole although a session overlaps them ` +
                'with the (de)capsulations',
            } satisfies BenchRecord,
          ]
        : []),
      {
        bench: BENCH,
        metric: `${tag} ${s.posture} p50 / raw primitive cost`,
        value: round(p50),
        unit: 'ms',
        baseline: round(baseline),
        ratio: round(p50 / baseline),
        ratioCi95: bootstrapRatioCi(s.latencies, s.chains, true),
        ...(goals ? { goal: `≤ ${GOAL}`, pass: p50 / baseline <= GOAL && s.wrongPosture === 0 } : {}),
        note,
      },
    );
  }
  return records;
}

export default async function run(): Promise<BenchRecord[]> {
  // liboqs (the default) in full, with the ratio goal; then noble, shorter, for the comparison.
  const oqs = await runBackend('liboqs-wasm', { ms: SLICE_MS, sessions: MAX_SESSIONS }, true);
  const noble = await runBackend('noble', { ms: NOBLE_SLICE_MS, sessions: MAX_SESSIONS }, false);
  const records = [...backendRecords(oqs, true), ...backendRecords(noble, false)];
  for (const s of oqs.slices) {
    const n = noble.slices.find((x) => x.posture === s.posture);
    if (!n) continue;
    const ratio = median(s.latencies) / median(n.latencies);
    records.push({
      bench: 'session-vs-noble',
      metric: `${s.posture} p50 with liboqs-wasm ÷ p50 with noble`,
      value: round(median(s.latencies)),
      unit: 'ms',
      baseline: round(median(n.latencies)),
      ratio: round(ratio),
      ratioCi95: bootstrapRatioCi(s.latencies, n.latencies, false),
      goal: `≤ ${NOBLE_GOAL}`,
      pass: ratio <= NOBLE_GOAL && s.wrongPosture === 0 && n.wrongPosture === 0,
      note: `same run: ${s.latencies.length} establishments on liboqs-wasm, ${n.latencies.length} on noble`,
    });
  }
  return records;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
