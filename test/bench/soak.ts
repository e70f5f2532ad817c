import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { GLIBC_MALLOC_ENV } from '../../src/core/malloc.js';
import type { SoakSample } from './soak-appliance.js';
import type { BenchRecord } from './types.js';

/**
 * `soak` (#16): a bounded mixed load on loopback against one appliance — create a key, take it,
 * let every fourth expire unclaimed, draw entropy, list the agent's active keys, page the audit
 * log — to see whether costs grow with age. Reported: p50/p99 of list, take, entropy and audit
 * pages in the first and last window after warm-up (goal: end/start ≤ 1.5), RSS and heap slopes
 * after warm-up (goal RSS ≤ 0.5 MB/min), and disk bytes per closed key (key store and audit).
 *
 * Length: QKM_SOAK_SECONDS (default 150, 90 to 600), or `npm run bench -- soak --minutes=N`.
 * Diagnosis: QKM_SOAK_WRAP runs the appliance under a tool (heaptrack, valgrind; see wrapper()).
 * Closed keys keep the default retention (7 days), so they pile up for the whole run: the worst
 * case for listing (QKM_SOAK_KEYS='{"retentionSeconds":60}' lets the store reach its steady size
 * within the run instead). The appliance runs in a process of its own (soak-appliance.ts), as in
 * production — with the allocator setting qkm.service and `npm start` give it (GLIBC_MALLOC_ENV,
 * src/core/malloc.ts; QKM_SOAK_MALLOC=default leaves glibc's malloc to its defaults, for
 * comparison) — so the memory measured is the appliance's, not the load generator's; it is sampled
 * there after a forced GC (--expose-gc), so the heap's slope is live memory, not garbage not yet
 * collected. RSS is also split (Linux, from /proc/self/smaps) into anonymous memory — V8's heap, mallocs — and
 * file-backed pages: the node binary and libraries, and the SST files LevelDB maps to read them,
 * which grow with the data dir and which the kernel can drop at any time (page cache).
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
  // Launched as qkm.service and `npm start` launch it (GLIBC_MALLOC_ENV); QKM_SOAK_MALLOC=default
  // measures glibc's malloc left to its dynamic mmap threshold instead.
  const mallocDefault = process.env.QKM_SOAK_MALLOC === 'default';
  const mallocEnv = mallocDefault ? {} : GLIBC_MALLOC_ENV;
  const allocator =
    Object.entries(mallocEnv)
      .map(([k, v]) => `${k}=${v}`)
      .concat(process.env.LD_PRELOAD ? [`LD_PRELOAD=${process.env.LD_PRELOAD}`] : [])
      .join(' ') || 'glibc malloc defaults';
  const child = fork(resolve(import.meta.dirname, 'soak-appliance.ts'), [join(dir, 'data')], {
    execArgv: process.execArgv.includes('--expose-gc')
      ? process.execArgv
      : [...process.execArgv, '--expose-gc'],
    ...(process.env.QKM_SOAK_WRAP ? { execPath: await wrapper(dir, process.env.QKM_SOAK_WRAP) } : {}),
    env: { ...process.env, ...mallocEnv },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ask = rpc(child);
  try {
    const { url, token, admin } = (await ask('ready')) as { url: string; token: string; admin: string };
    const base = url;
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
      anon: number;
      file: number;
      tables: number;
      heap: number;
      committed: number;
      ext: number;
      ab: number;
      level: number;
    }> = [];
    const load: { start?: number; end?: number } = {};
    /** Used bytes per V8 heap space after warm-up, to tell data (old space) from JIT code and maps. */
    let spacesStart: Record<string, number> | undefined;
    let sampling = false;
    const sampler = setInterval(() => {
      if (sampling) return;
      sampling = true;
      const at = elapsed();
      void (ask('sample') as Promise<SoakSample>).then(
        (m) => {
          sampling = false;
          mem.push({
            t: at / 60,
            rss: m.rss / MB,
            anon: (m.rssAnon ?? Number.NaN) / MB,
            file: (m.rssFile ?? Number.NaN) / MB,
            tables: (m.rssTables ?? Number.NaN) / MB,
            heap: m.heapUsed / MB,
            committed: m.heapTotal / MB,
            ext: m.external / MB,
            ab: m.arrayBuffers / MB,
            level: m.level / MB,
          });
          if (spacesStart === undefined && at >= WARMUP) spacesStart = m.spaces;
          spacesEnd = m.spaces;
          if (process.env.QKM_SOAK_TRACE) console.error(JSON.stringify({ ...mem.at(-1), requests }));
        },
        () => {
          sampling = false;
        },
      );
      // The 1-minute load average at the end of each latency window: other work on the machine.
      if (load.start === undefined && at >= WARMUP + WINDOW) load.start = loadavg()[0];
      if (at >= SECONDS - SAMPLE_MS / 1000) load.end = loadavg()[0];
    }, SAMPLE_MS);
    let spacesEnd: Record<string, number> | undefined;
    const diskStart = await du(dir);
    const snapshots = process.env.QKM_SOAK_HEAP_SNAPSHOTS;
    const snapshotTimer = snapshots
      ? setTimeout(
          () => void ask('snapshot', snapshots).then((f) => console.error(`heap snapshot ${f}`)),
          WARMUP * 1000,
        )
      : undefined;
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    clearInterval(sampler);
    clearTimeout(snapshotTimer);
    if (snapshots) console.error(`heap snapshot ${await ask('snapshot', snapshots)}`);
    // Let the last expiring keys be swept, so every closed key is counted on disk.
    await new Promise((r) => setTimeout(r, 11_000));
    const audit = (await ask('audit')) as { records: number; sealedThrough: number; gc: boolean };
    const gc = audit.gc;
    const diskEnd = await du(dir);
    const after = mem.filter((s) => s.t * 60 >= WARMUP);
    const slopeOf = (k: 'rss' | 'anon' | 'file' | 'tables' | 'heap' | 'committed' | 'ext' | 'ab' | 'level') =>
      slope(
        after.map((s) => s.t),
        after.map((s) => s[k]),
      );
    const rssSlope = slopeOf('rss');
    const heapSlope = slopeOf('heap');
    const spaceGrowth = Object.entries(spacesEnd ?? {})
      .map(([name, used]) => [name, (used - (spacesStart?.[name] ?? used)) / MB] as const)
      .filter(([, d]) => Math.abs(d) >= 0.05)
      .map(([name, d]) => `${name} ${d >= 0 ? '+' : ''}${d.toFixed(2)}`)
      .join(', ');
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
        note: `the appliance's process; Theil–Sen; RSS ${first?.rss.toFixed(1)} → ${last?.rss.toFixed(1)} MB over ${after.length} samples every ${SAMPLE_MS / 1000} s; ${gc ? 'GC forced before each sample' : 'no --expose-gc'}; allocator: ${allocator}`,
      },
      {
        bench: 'soak',
        metric: 'rss_anon_slope_after_warmup',
        value: slopeOf('anon'),
        unit: 'MB/min',
        note: `anonymous RSS (V8 heap, mallocs) ${first?.anon.toFixed(1)} → ${last?.anon.toFixed(1)} MB`,
      },
      {
        bench: 'soak',
        metric: 'rss_file_slope_after_warmup',
        value: slopeOf('file'),
        unit: 'MB/min',
        note: `file-backed RSS (binary, libraries, SST files LevelDB maps to read; page cache the kernel may drop) ${first?.file.toFixed(1)} → ${last?.file.toFixed(1)} MB`,
      },
      {
        bench: 'soak',
        metric: 'rss_tables_slope_after_warmup',
        value: slopeOf('tables'),
        unit: 'MB/min',
        note: `of the file-backed RSS, LevelDB's mapped table files ${first?.tables.toFixed(1)} → ${last?.tables.toFixed(1)} MB`,
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
    if (child.connected) await ask('close').catch(() => undefined);
    if (child.exitCode === null) {
      const closed = once(child, 'exit');
      child.kill('SIGTERM');
      await closed;
    }
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * An executable that runs node under a diagnosis tool: QKM_SOAK_WRAP='heaptrack -o /tmp/soak'
 * makes the appliance `heaptrack -o /tmp/soak node …` (fork's execPath takes one program, and
 * the tool must see node's own arguments after node). The IPC descriptor fork opens passes through
 * the tool's exec untouched. Such a run's latencies and slopes measure the tool as well.
 */
async function wrapper(dir: string, command: string): Promise<string> {
  const file = join(dir, 'wrap-node.sh');
  await writeFile(file, `#!/bin/sh\nexec ${command} ${JSON.stringify(process.execPath)} "$@"\n`, {
    mode: 0o755,
  });
  return file;
}

/**
 * Requests to the appliance's process over IPC: `ask(op)` resolves with its answer; `ask('ready')`
 * with the first message it sends (its URL and tokens) once it listens.
 */
function rpc(
  child: ChildProcess,
): (op: 'ready' | 'sample' | 'snapshot' | 'audit' | 'close', dir?: string) => Promise<unknown> {
  let next = 1;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  child.on('message', (msg: { id: number; value: unknown }) => {
    const w = waiting.get(msg.id);
    waiting.delete(msg.id);
    w?.resolve(msg.value);
  });
  child.on('exit', (code) => {
    for (const w of waiting.values()) w.reject(new Error(`the soak's appliance exited (${code})`));
    waiting.clear();
  });
  return (op, dir) =>
    new Promise((resolve, reject) => {
      if (child.exitCode !== null) return reject(new Error("the soak's appliance is not running"));
      const id = op === 'ready' ? 0 : next++;
      waiting.set(id, { resolve, reject });
      if (op !== 'ready') child.send({ id, op, ...(dir ? { dir } : {}) });
    });
}
