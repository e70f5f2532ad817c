import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { loadConfig } from '../../src/core/config.js';
import type { BenchRecord } from './types.js';

/**
 * `soak` (#16): a bounded mixed load on loopback against one appliance — create a key, take it,
 * let every fourth expire unclaimed, draw entropy, list the agent's active keys, page the audit
 * log — to see whether costs grow with age. Reported: p50/p99 of list, take, entropy and audit
 * pages in the first and last window after warm-up (goal: end/start ≤ 1.5), RSS and heap slopes
 * after warm-up (goal RSS ≤ 0.5 MB/min), and disk bytes per closed key (key store and audit).
 *
 * Length: QKM_SOAK_SECONDS (default 150, at most 600), or `npm run bench -- soak --minutes=N`.
 * Closed keys keep the default retention (7 days), so they pile up for the whole run: the worst
 * case for listing. The heap is sampled after a forced GC when the child runs with --expose-gc
 * (run.ts passes it for this bench), so its slope is live memory, not garbage not yet collected.
 */
const SECONDS = Math.min(600, Math.max(30, Number(process.env.QKM_SOAK_SECONDS ?? 150)));
const WORKERS = 6;
const WARMUP = Math.min(30, SECONDS * 0.2);
/** Length of the start and end latency windows. */
const WINDOW = Math.min(30, SECONDS * 0.2);
const SAMPLE_MS = 5000;

type Op = 'entropy' | 'create' | 'take' | 'list' | 'audit';

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return Number.NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += ((xs[i] as number) - mx) * ((ys[i] as number) - my);
    den += ((xs[i] as number) - mx) ** 2;
  }
  return num / den;
}

async function du(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await du(p);
    else if (e.isFile()) total += (await stat(p)).size;
  }
  return total;
}

export default async function run(): Promise<BenchRecord[]> {
  const dir = await mkdtemp(join(tmpdir(), 'qkm-soak-'));
  const appliance = await Appliance.start({
    simulator: simulatedQuantis,
    config: loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        port: 0,
        logLevel: 'warn',
        keys: { defaultTtlSeconds: 3600, sweepCron: '*/5 * * * * *', retentionSeconds: 7 * 24 * 3600 },
        api: {
          bodyLimit: 262144,
          rateLimitPerMinute: 100_000_000,
          requestTimeoutMs: 30_000,
          badTokensPerMinute: 60,
        },
      },
    }),
  });
  const gc = (globalThis as { gc?: () => void }).gc;
  try {
    const token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
    const admin = (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim();
    const base = appliance.url;
    const t0 = performance.now();
    const elapsed = () => (performance.now() - t0) / 1000;
    const lat = { start: new Map<Op, number[]>(), end: new Map<Op, number[]>() };
    let requests = 0;
    let errors = 0;
    let closed = 0;
    let auditAfter = 0;
    const call = async (op: Op, method: 'GET' | 'POST', path: string, body?: unknown, auth = token) => {
      const t = performance.now();
      const res = await fetch(`${base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${auth}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const json = (await res.json()) as Record<string, unknown>;
      const ms = performance.now() - t;
      requests++;
      if (res.status >= 300) {
        errors++;
        return undefined;
      }
      const at = elapsed();
      const bucket =
        at >= WARMUP && at < WARMUP + WINDOW ? lat.start : at >= SECONDS - WINDOW ? lat.end : undefined;
      if (bucket) {
        const xs = bucket.get(op) ?? [];
        xs.push(ms);
        bucket.set(op, xs);
      }
      return json;
    };
    const worker = async (w: number) => {
      for (let i = 0; elapsed() < SECONDS; i++) {
        await call('entropy', 'GET', '/v1/entropy?bytes=32');
        // Every fourth key is left to expire (5 s TTL), the others are taken.
        const unclaimed = (i + w) % 4 === 0;
        const made = (await call(
          'create',
          'POST',
          '/v1/keys',
          unclaimed ? { size: 32, ttl_seconds: 5 } : { size: 32 },
        )) as { id?: string } | undefined;
        const id = made?.id;
        if (id && !unclaimed && (await call('take', 'POST', `/v1/keys/${id}/take`, {}))) closed++;
        if (unclaimed) closed++;
        await call('list', 'GET', '/v1/keys?state=active&limit=100');
        if (i % 2 === 0) {
          const page = (await call(
            'audit',
            'GET',
            `/v1/audit?after=${auditAfter}&limit=100`,
            undefined,
            admin,
          )) as { records: Array<{ seq: number }> } | undefined;
          const last = page?.records.at(-1)?.seq;
          if (last !== undefined && last > auditAfter) auditAfter = last;
        }
      }
    };
    const mem: Array<{ t: number; rss: number; heap: number }> = [];
    const sampler = setInterval(() => {
      gc?.();
      const m = process.memoryUsage();
      mem.push({ t: elapsed() / 60, rss: m.rss / 2 ** 20, heap: m.heapUsed / 2 ** 20 });
    }, SAMPLE_MS);
    const diskStart = await du(dir);
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    clearInterval(sampler);
    // Let the last expiring keys be swept, so every closed key is counted on disk.
    await new Promise((r) => setTimeout(r, 11_000));
    await appliance.status();
    const diskEnd = await du(dir);
    const after = mem.filter((s) => s.t * 60 >= WARMUP);
    const rssSlope = slope(
      after.map((s) => s.t),
      after.map((s) => s.rss),
    );
    const heapSlope = slope(
      after.map((s) => s.t),
      after.map((s) => s.heap),
    );
    const out: BenchRecord[] = [];
    for (const op of ['list', 'take', 'entropy', 'audit', 'create'] as Op[]) {
      const s = lat.start.get(op) ?? [];
      const e = lat.end.get(op) ?? [];
      for (const p of [50, 99]) {
        const a = pct(s, p);
        const b = pct(e, p);
        const ratio = b / a;
        const gated = op !== 'create';
        out.push({
          bench: 'soak',
          metric: `${op}_p${p}_ms_end_vs_start`,
          value: b,
          unit: 'ms',
          baseline: a,
          ratio,
          ...(gated ? { goal: '<= 1.5', pass: ratio <= 1.5 } : {}),
          note: `${s.length} / ${e.length} samples in the first / last ${WINDOW} s after ${WARMUP} s warm-up`,
        });
      }
    }
    const first = after[0];
    const last = after.at(-1);
    out.push(
      {
        bench: 'soak',
        metric: 'rss_slope_after_warmup',
        value: rssSlope,
        unit: 'MB/min',
        goal: '<= 0.5',
        pass: rssSlope <= 0.5,
        note: `RSS ${first?.rss.toFixed(1)} → ${last?.rss.toFixed(1)} MB over ${after.length} samples; ${gc ? 'GC forced before each sample' : 'no --expose-gc'}`,
      },
      {
        bench: 'soak',
        metric: 'heap_slope_after_warmup',
        value: heapSlope,
        unit: 'MB/min',
        note: `heap used ${first?.heap.toFixed(1)} → ${last?.heap.toFixed(1)} MB`,
      },
      {
        bench: 'soak',
        metric: 'disk_bytes_per_closed_key',
        value: (diskEnd - diskStart) / Math.max(1, closed),
        unit: 'B',
        note: `${closed} closed keys (taken or expired, retained), data dir ${diskStart} → ${diskEnd} B, includes their audit records`,
      },
      {
        bench: 'soak',
        metric: 'requests',
        value: requests,
        unit: '',
        goal: '0 errors',
        pass: errors === 0,
        note: `${errors} errors, ${WORKERS} concurrent clients, ${SECONDS} s`,
      },
    );
    return out;
  } finally {
    await appliance.close();
    await rm(dir, { recursive: true, force: true });
  }
}
