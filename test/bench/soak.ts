import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { getHeapSpaceStatistics } from 'node:v8';
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
 * Length: QKM_SOAK_SECONDS (default 150, 90 to 600), or `npm run bench -- soak --minutes=N`.
 * Closed keys keep the default retention (7 days), so they pile up for the whole run: the worst
 * case for listing. The heap is sampled after a forced GC when the child runs with --expose-gc
 * (run.ts passes it for this bench), so its slope is live memory, not garbage not yet collected.
 *
 * Memory slopes: the first 30 s are warm-up (JIT, V8 growing its young generation, LevelDB's
 * memtable and block cache filling up to their configured sizes) and are left out; RSS then moves
 * by ±10–20 MB from sample to sample as V8 grows and shrinks its committed heap, so a
 * least-squares line over a short run reads a step as a slope (one 40 s trial read 9.2 MB/min
 * from 6 samples). Slopes are Theil–Sen (the median of the pairwise slopes), which one step does
 * not move, over samples every 2 s; RSS, committed heap, heap used, external and array buffers
 * are each reported, so growth off the V8 heap (native: LevelDB, Buffers) is told from heap growth.
 * A run shorter than 90 s is refused: it has no post-warm-up window worth a slope.
 */
const SECONDS = Math.min(600, Math.max(90, Number(process.env.QKM_SOAK_SECONDS ?? 150)));
const WORKERS = 6;
const WARMUP = 30;
/** Length of the start and end latency windows. */
const WINDOW = Math.min(30, (SECONDS - WARMUP) / 3);
const SAMPLE_MS = 2000;

type Op = 'entropy' | 'create' | 'take' | 'list' | 'audit';

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
}

/** Theil–Sen slope of y over x: the median of the slopes of all pairs (robust to steps and spikes). */
function slope(xs: number[], ys: number[]): number {
  const slopes: number[] = [];
  for (let i = 0; i < xs.length; i++) {
    for (let j = i + 1; j < xs.length; j++) {
      const dx = (xs[j] as number) - (xs[i] as number);
      if (dx > 0) slopes.push(((ys[j] as number) - (ys[i] as number)) / dx);
    }
  }
  return pct(slopes, 50);
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
    let auditPages = 0;
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
          if (page) auditPages++;
          const last = page?.records.at(-1)?.seq;
          if (last !== undefined && last > auditAfter) auditAfter = last;
        }
      }
    };
    const MB = 2 ** 20;
    const mem: Array<{
      t: number;
      rss: number;
      heap: number;
      committed: number;
      ext: number;
      ab: number;
      level: number;
    }> = [];
    // LevelDB's block cache + memtables, when the store is LevelDB (src/store/level.ts).
    const store = appliance.store as { approximateMemoryUsage?: () => number };
    const levelBytes = () => store.approximateMemoryUsage?.() ?? Number.NaN;
    const load: { start?: number; end?: number } = {};
    /** Used bytes per V8 heap space after warm-up, to tell data (old space) from JIT code and maps. */
    const spaces = () => new Map(getHeapSpaceStatistics().map((x) => [x.space_name, x.space_used_size]));
    let spacesStart: Map<string, number> | undefined;
    const sampler = setInterval(() => {
      gc?.();
      const m = process.memoryUsage();
      const at = elapsed();
      mem.push({
        t: at / 60,
        rss: m.rss / MB,
        heap: m.heapUsed / MB,
        committed: m.heapTotal / MB,
        ext: m.external / MB,
        ab: m.arrayBuffers / MB,
        level: levelBytes() / MB,
      });
      // The 1-minute load average at the end of each latency window: other work on the machine.
      if (load.start === undefined && at >= WARMUP + WINDOW) load.start = loadavg()[0];
      if (spacesStart === undefined && at >= WARMUP) spacesStart = spaces();
      if (at >= SECONDS - SAMPLE_MS / 1000) load.end = loadavg()[0];
      if (process.env.QKM_SOAK_TRACE) console.error(JSON.stringify({ ...mem.at(-1), requests }));
    }, SAMPLE_MS);
    const diskStart = await du(dir);
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    clearInterval(sampler);
    // Let the last expiring keys be swept, so every closed key is counted on disk.
    await new Promise((r) => setTimeout(r, 11_000));
    await appliance.status();
    const diskEnd = await du(dir);
    const after = mem.filter((s) => s.t * 60 >= WARMUP);
    const slopeOf = (k: 'rss' | 'heap' | 'committed' | 'ext' | 'ab' | 'level') =>
      slope(
        after.map((s) => s.t),
        after.map((s) => s[k]),
      );
    const rssSlope = slopeOf('rss');
    const heapSlope = slopeOf('heap');
    gc?.();
    const spacesEnd = spaces();
    const spaceGrowth = [...spacesEnd]
      .map(([name, used]) => [name, (used - (spacesStart?.get(name) ?? used)) / MB] as const)
      .filter(([, d]) => Math.abs(d) >= 0.05)
      .map(([name, d]) => `${name} ${d >= 0 ? '+' : ''}${d.toFixed(2)}`)
      .join(', ');
    const audit = appliance.audit.stats();
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
          note:
            `${s.length} / ${e.length} samples in the first / last ${WINDOW} s after ${WARMUP} s warm-up; ` +
            `load average ${load.start?.toFixed(1)} / ${load.end?.toFixed(1)}` +
            (op === 'audit'
              ? `; ${auditPages} pages read, sealed through ${audit.sealedThrough} of ${audit.records}`
              : ''),
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
        note: `Theil–Sen; RSS ${first?.rss.toFixed(1)} → ${last?.rss.toFixed(1)} MB over ${after.length} samples every ${SAMPLE_MS / 1000} s; ${gc ? 'GC forced before each sample' : 'no --expose-gc'}`,
      },
      {
        bench: 'soak',
        metric: 'heap_slope_after_warmup',
        value: heapSlope,
        unit: 'MB/min',
        note: `heap used ${first?.heap.toFixed(1)} → ${last?.heap.toFixed(1)} MB; by space after warm-up (MB): ${spaceGrowth || 'none moved'}`,
      },
      {
        bench: 'soak',
        metric: 'heap_committed_slope_after_warmup',
        value: slopeOf('committed'),
        unit: 'MB/min',
        note: `V8 heap committed ${first?.committed.toFixed(1)} → ${last?.committed.toFixed(1)} MB (part of RSS)`,
      },
      {
        bench: 'soak',
        metric: 'external_slope_after_warmup',
        value: slopeOf('ext'),
        unit: 'MB/min',
        note: `external ${first?.ext.toFixed(1)} → ${last?.ext.toFixed(1)} MB, of which array buffers ${first?.ab.toFixed(1)} → ${last?.ab.toFixed(1)} MB (slope ${slopeOf('ab').toFixed(3)} MB/min)`,
      },
      {
        bench: 'soak',
        metric: 'leveldb_memory_slope_after_warmup',
        value: slopeOf('level'),
        unit: 'MB/min',
        note: `LevelDB block cache + memtables ${first?.level.toFixed(1)} → ${last?.level.toFixed(1)} MB (bounded by store.cacheBytes + 2 × store.writeBufferBytes)`,
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
