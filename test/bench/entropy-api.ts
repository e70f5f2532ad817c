import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { loadConfig } from '../../src/core/config.js';
import type { BenchRecord } from './types.js';

/**
 * `entropy-api`: GET /v1/entropy?bytes=32 through the whole appliance (auth, host check, rate
 * limit, schema, EntropyService, provenance, metrics) against a bare fastify route returning
 * crypto.randomBytes(32): same process, same load generator settings, same run.
 *
 * Fairness, on a small shared machine:
 * - the load generator (autocannon) runs in a worker thread, so it does not take event-loop time
 *   from the server under test (inline, its own per-request cost would be added to both sides and
 *   pull the ratio towards 1);
 * - both servers are warmed up first (JIT, connections);
 * - the load comes in short interleaved slices, alternating which server goes first, so a burst
 *   of load from elsewhere on the machine hits both sides alike; each side gets
 *   ROUNDS × SLICE ≥ 5 s of load in total;
 * - the figures are medians over the slices.
 */
const ROUNDS = Number(process.env.ENTROPY_BENCH_ROUNDS ?? 5);
const SLICE_SECONDS = Number(process.env.ENTROPY_BENCH_SLICE_SECONDS ?? 1.2);
const CONNECTIONS = 10;
/** ENTROPY_BENCH_INLINE=1 runs autocannon on the servers' own thread (the earlier set-up), for comparison. */
const INLINE = process.env.ENTROPY_BENCH_INLINE === '1';

interface LoadResult {
  rps: number;
  /** Event-loop busy time of this (the servers') thread per request, µs: less sensitive to other load on the machine than req/s. */
  busyUs: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

/** One autocannon load; `workers: 1` runs autocannon's client in its own worker thread. */
async function load(opts: Record<string, unknown>): Promise<LoadResult> {
  const elu = performance.eventLoopUtilization();
  const r = await autocannon({
    connections: CONNECTIONS,
    pipelining: 1,
    ...(INLINE ? {} : { workers: 1 }),
    ...opts,
  } as autocannon.Options);
  const used = performance.eventLoopUtilization(elu);
  return {
    rps: r.requests.total / (r.duration || 1),
    busyUs: (used.active * 1000) / Math.max(1, r.requests.total),
    p50: r.latency.p50,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export default async function run(): Promise<BenchRecord[]> {
  const dir = await mkdtemp(join(tmpdir(), 'qkm-bench-'));
  const appliance = await Appliance.start({
    simulator: simulatedQuantis,
    config: loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        port: 0,
        logLevel: 'warn',
        api: {
          bodyLimit: 262144,
          rateLimitPerMinute: 100_000_000,
          requestTimeoutMs: 30_000,
          badTokensPerMinute: 60,
        },
      },
    }),
  });
  const bare = Fastify();
  bare.get('/random', async () => ({ data: randomBytes(32).toString('base64') }));
  await bare.listen({ host: '127.0.0.1', port: 0 });
  try {
    const token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
    const addr = bare.server.address();
    const targets = {
      bare: {
        url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/random`,
        headers: {},
      },
      qkm: {
        url: `${appliance.url}/v1/entropy?bytes=32`,
        headers: { authorization: `Bearer ${token}` },
      },
    };
    const measure = async (name: keyof typeof targets, extra: Record<string, unknown>) => {
      const r = await load({ ...targets[name], ...extra });
      if (r.non2xx > 0 || r.errors > 0) {
        throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      }
      return r;
    };
    // Warm both (JIT, connection set-up) before measuring.
    await measure('bare', { amount: 3000 });
    await measure('qkm', { amount: 3000 });
    const results = { bare: [] as LoadResult[], qkm: [] as LoadResult[] };
    const ratios: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const order: Array<keyof typeof targets> = i % 2 === 0 ? ['bare', 'qkm'] : ['qkm', 'bare'];
      for (const name of order) results[name].push(await measure(name, { duration: SLICE_SECONDS }));
      ratios.push((results.qkm[i] as LoadResult).rps / (results.bare[i] as LoadResult).rps);
    }
    const qkmRps = median(results.qkm.map((r) => r.rps));
    const bareRps = median(results.bare.map((r) => r.rps));
    const ratio = qkmRps / bareRps;
    const degraded = (await appliance.status()).degraded;
    return [
      {
        bench: 'entropy-api',
        metric: 'requests_per_second',
        value: qkmRps,
        unit: 'req/s',
        baseline: bareRps,
        ratio,
        goal: '>= 0.7',
        pass: ratio >= 0.7,
        note:
          `${CONNECTIONS} connections, keep-alive, load generator ${INLINE ? 'inline' : 'in a worker thread'}; ` +
          `medians of ${ROUNDS} ` +
          `interleaved ${SLICE_SECONDS} s slices per side; per-slice ratios ` +
          `${ratios.map((r) => r.toFixed(2)).join(' ')}${degraded ? '; appliance was DEGRADED' : ''}`,
      },
      {
        bench: 'entropy-api',
        metric: 'server_busy_per_request',
        value: median(results.qkm.map((r) => r.busyUs)),
        unit: 'us',
        baseline: median(results.bare.map((r) => r.busyUs)),
        note: 'event-loop busy time of the serving thread per request (less sensitive to other load on the machine)',
      },
      {
        bench: 'entropy-api',
        metric: 'latency_p50',
        value: median(results.qkm.map((r) => r.p50)),
        unit: 'ms',
        baseline: median(results.bare.map((r) => r.p50)),
      },
      {
        bench: 'entropy-api',
        metric: 'latency_p99',
        value: median(results.qkm.map((r) => r.p99)),
        unit: 'ms',
        baseline: median(results.bare.map((r) => r.p99)),
      },
    ];
  } finally {
    await bare.close();
    await appliance.close();
    await rm(dir, { recursive: true, force: true });
  }
}
