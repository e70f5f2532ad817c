import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import { AgentRegistry } from '../../src/core/agents.js';
import { createLogger } from '../../src/core/logger.js';
import { createMetrics } from '../../src/api/metrics.js';
import { buildApi } from '../../src/api/server.js';
import { FakeEntropy, FakeKeys, MapRecords } from '../helpers/api-fakes.js';
import { EntropyService } from '../../src/entropy/service.js';
import { createSimulatedQuantis } from '../../simulators/quantis/index.js';

const fake = new FakeEntropy();
const q = createSimulatedQuantis({});
const real = new EntropyService({ sources: [{ factory: q.factory }], reseedCron: null });
await real.start();
async function api(entropy: any) {
  const agents = await AgentRegistry.open(new MapRecords());
  const token = (await agents.add('a')).token;
  const status = async () => ({}) as any;
  const app = await buildApi({
    version: 't',
    logger: process.env.EXP_NORED
      ? (await import('pino')).default({ level: 'warn' })
      : createLogger({ level: 'warn' }),
    entropy,
    keys: new FakeKeys(entropy),
    agents,
    metrics: createMetrics(status),
    status,
    allowedHosts: (p) => [`127.0.0.1:${p}`],
    maxEntropyBytes: 65536,
    bodyLimit: 4096,
    rateLimitPerMinute: 1e9,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, token, url: `http://127.0.0.1:${(app.server.address() as any).port}/v1/entropy?bytes=32` };
}
const bare = Fastify();
bare.get('/r', async () => ({ data: randomBytes(32).toString('base64') }));
await bare.listen({ host: '127.0.0.1', port: 0 });
const burl = `http://127.0.0.1:${(bare.server.address() as any).port}/r`;
const A = await api(fake),
  B = await api(real);
const t0 = performance.now();
for (let i = 0; i < 20000; i++) await real.getEntropy(32);
console.log('getEntropy us', (((performance.now() - t0) / 20000) * 1000).toFixed(1));
const t1 = performance.now();
for (let i = 0; i < 20000; i++) await fake.getEntropy(32);
console.log('fake us', (((performance.now() - t1) / 20000) * 1000).toFixed(1));
for (const [name, url, h] of [['api+fake', A.url, { authorization: `Bearer ${A.token}` }]] as const) {
  const r = await autocannon({ url, connections: 10, duration: 3, headers: h as any });
  console.log(name, r.requests.average, r.non2xx);
}
process.exit(0);
