import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import { Appliance } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import type { BenchRecord } from './types.js';

/**
 * `entropy-api`: GET /v1/entropy?bytes=32 through the whole appliance (auth, host check, rate
 * limit, schema, EntropyService, provenance) against a bare fastify route returning
 * crypto.randomBytes(32), same machine, same load generator, same run.
 */
const SECONDS = Number(process.env.ENTROPY_BENCH_SECONDS ?? 5);
const CONNECTIONS = 10;

async function load(url: string, headers: Record<string, string>) {
  const r = await autocannon({ url, connections: CONNECTIONS, duration: SECONDS, headers, pipelining: 1 });
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99 };
}

export default async function run(): Promise<BenchRecord[]> {
  const dir = await mkdtemp(join(tmpdir(), 'qkm-bench-'));
  const appliance = await Appliance.start({
    config: loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        port: 0,
        logLevel: 'warn',
        api: { bodyLimit: 262144, rateLimitPerMinute: 100_000_000 },
      },
    }),
  });
  const bare = Fastify();
  bare.get('/random', async () => ({ data: randomBytes(32).toString('base64') }));
  await bare.listen({ host: '127.0.0.1', port: 0 });
  try {
    const token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
    const addr = bare.server.address();
    const bareUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/random`;
    // Warm both (JIT, connection set-up) before measuring.
    await autocannon({ url: bareUrl, connections: CONNECTIONS, amount: 2000 });
    await autocannon({
      url: `${appliance.url}/v1/entropy?bytes=32`,
      connections: CONNECTIONS,
      amount: 2000,
      headers: { authorization: `Bearer ${token}` },
    });
    const base = await load(bareUrl, {});
    const qkm = await load(`${appliance.url}/v1/entropy?bytes=32`, { authorization: `Bearer ${token}` });
    const ratio = qkm.rps / base.rps;
    const degraded = (await appliance.status()).degraded;
    return [
      {
        bench: 'entropy-api',
        metric: 'requests_per_second',
        value: qkm.rps,
        unit: 'req/s',
        baseline: base.rps,
        ratio,
        goal: '>= 0.7',
        pass: ratio >= 0.7,
        note: `${CONNECTIONS} connections, ${SECONDS} s each, keep-alive${degraded ? ', appliance was DEGRADED' : ''}`,
      },
      { bench: 'entropy-api', metric: 'latency_p50', value: qkm.p50, unit: 'ms', baseline: base.p50 },
      { bench: 'entropy-api', metric: 'latency_p99', value: qkm.p99, unit: 'ms', baseline: base.p99 },
    ];
  } finally {
    await bare.close();
    await appliance.close();
    await rm(dir, { recursive: true, force: true });
  }
}
