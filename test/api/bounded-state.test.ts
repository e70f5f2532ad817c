import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, AuditSink } from '../../src/audit/types.js';
import { allowedHostsFor } from '../../src/api/auth.js';
import { createMetrics } from '../../src/api/metrics.js';
import { type QkmApp, buildApi } from '../../src/api/server.js';
import { AgentRegistry } from '../../src/agents/registry.js';
import { createLogger } from '../../src/core/logger.js';
import type { ApplianceStatus } from '../../src/status.js';
import { KeyedMutex } from '../../src/store/keyed-mutex.js';
import { FakeEntropy, FakeKeys, MapRecords } from '../helpers/api-fakes.js';

/**
 * In-memory state that traffic could grow (#16), driven far past its bound: the HTTP metrics'
 * label sets (a scanner's random URLs must not become series) and the per-id locks of the stores.
 * Counted in series and entries, never in time or bytes.
 */

const PORT = 7398;
const HOST = `127.0.0.1:${PORT}`;
let app: QkmApp;
let token: string;

const noAudit: AuditSink = { append: async () => ({}) as AuditRecord };
const status = async (): Promise<ApplianceStatus> => ({
  version: 't',
  region: 'EU',
  mode: 'simulator',
  startedAt: new Date().toISOString(),
  uptimeSeconds: 1,
  degraded: false,
  reasons: [],
  entropy: new FakeEntropy().status(),
  keys: { active: 0, taken: 0, expired: 0 },
  qkd: [],
  sessions: {
    initiated: { PQC: 0, 'PQC+QRNG': 0, 'QKD+PQC+QRNG': 0 },
    initiatedDegraded: { PQC: 0, 'PQC+QRNG': 0, 'QKD+PQC+QRNG': 0 },
    refused: 0,
    accepted: { PQC: 0, 'PQC+QRNG': 0, 'QKD+PQC+QRNG': 0 },
    rejected: {},
    abandoned: {},
    qkdKeysWasted: 0,
  },
  audit: { records: 0, sealedThrough: 0 },
  pqc: {
    backend: 'noble',
    signature: 'noble',
    kemDecaps: 'noble',
    kemEncaps: 'noble',
    keygen: 'noble',
    legacyVerified: 0,
  },
});

beforeAll(async () => {
  const agents = await AgentRegistry.open(new MapRecords(), noAudit);
  token = (await agents.add('agent-1', ['entropy', 'keys', 'admin'])).token;
  const entropy = new FakeEntropy();
  app = await buildApi({
    version: 't',
    logger: createLogger({ level: 'silent' }),
    entropy,
    keys: new FakeKeys(entropy),
    agents,
    metrics: createMetrics(status),
    status,
    allowedHosts: allowedHostsFor('127.0.0.1', PORT),
    maxEntropyBytes: 65536,
    bodyLimit: 4096,
    rateLimitPerMinute: 1_000_000,
  });
  await app.ready();
});
afterAll(async () => {
  await app.close();
});

/** `route` label values of the request counter, and how many series it has. */
async function series(): Promise<{ routes: Set<string>; count: number }> {
  const r = await app.inject({ url: '/metrics', headers: { host: HOST, authorization: `Bearer ${token}` } });
  expect(r.statusCode, r.body).toBe(200);
  const lines = r.body.split('\n').filter((l) => l.startsWith('qkm_http_requests_total{'));
  return { routes: new Set(lines.map((l) => /route="([^"]*)"/.exec(l)?.[1] ?? '?')), count: lines.length };
}

describe('HTTP metrics label sets', () => {
  it('2000 random URLs, methods and ids add no series beyond one per route, method and status', async () => {
    const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;
    const headers = { host: HOST, authorization: `Bearer ${token}` };
    const warm = async () => {
      // One of each: every series the loop below can reach, so the count cannot grow afterwards.
      for (const method of methods) {
        await app.inject({ method, url: `/${randomUUID()}`, headers });
        await app.inject({ method, url: `/${randomUUID()}`, headers: { host: HOST } });
        await app.inject({ method: 'POST', url: `/v1/keys/${randomUUID()}/take`, headers });
      }
    };
    await warm();
    await series(); // the scrape's own series
    const before = await series();
    for (let i = 0; i < 2000; i++) {
      const method = methods[i % methods.length]!;
      const junk = `/${randomUUID()}/${i}?q=${randomUUID()}`;
      await app.inject({ method, url: junk, headers: i % 2 ? headers : { host: HOST } });
      // A matched route with a different id each time: one series (the route's pattern).
      if (i % 10 === 0) await app.inject({ method: 'POST', url: `/v1/keys/${randomUUID()}/take`, headers });
    }
    const after = await series();
    expect(after.count).toBe(before.count);
    expect([...after.routes].some((r) => r.includes('-'))).toBe(false); // no UUID became a label
    expect(after.routes.has('unmatched')).toBe(true);
    expect(after.routes.has('/v1/keys/:id/take')).toBe(true);
    // Bounded by the routes the server has, plus one for everything that matched none.
    expect(after.routes.size).toBeLessThanOrEqual(
      app.printRoutes({ commonPrefix: false }).split('\n').length + 1,
    );
  });
});

describe('per-id store locks (KeyedMutex)', () => {
  it('hold an entry only while an id is held or waited for: 20 000 ids leave none behind', async () => {
    const locks = new KeyedMutex();
    let peak = 0;
    const ids = Array.from({ length: 20_000 }, (_, i) => `id-${i % 5000}-${Math.floor(i / 5000)}`);
    // 64 at a time, some failing, some sharing an id: as concurrent requests do.
    for (let i = 0; i < ids.length; i += 64) {
      await Promise.allSettled(
        ids.slice(i, i + 64).map((id, j) =>
          locks.run(j % 8 === 0 ? 'shared' : id, async () => {
            peak = Math.max(peak, locks.size);
            await new Promise((r) => setImmediate(r));
            if (j % 5 === 0) throw new Error('refused');
          }),
        ),
      );
      expect(locks.size).toBe(0);
    }
    expect(peak).toBeLessThanOrEqual(64);
    await locks.runMany(['a', 'b', 'a'], async () => expect(locks.size).toBe(2));
    expect(locks.size).toBe(0);
  });
});
