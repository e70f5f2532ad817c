import fc from 'fast-check';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent, AuditRecord, AuditSink } from '../../src/audit/types.js';
import { AgentRegistry } from '../../src/agents/registry.js';
import { ERROR_CATALOGUE } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { pqcInfo } from '../../src/pqc/index.js';
import type { ApplianceStatus } from '../../src/status.js';
import { allowedHostsFor } from '../../src/api/auth.js';
import { createMetrics } from '../../src/api/metrics.js';
import { type QkmApp, buildApi } from '../../src/api/server.js';
import { FakeEntropy, FakeKeys, MapRecords } from '../helpers/api-fakes.js';

const PORT = 7399;
const HOST = `127.0.0.1:${PORT}`;

let app: QkmApp;
let token: string;
let limitedToken: string;
let adminToken: string;
const entropy = new FakeEntropy();
const logLines: string[] = [];

/** What the agent registry wrote to the audit log (issue #11 item 5: the service audits, not the route). */
const auditRecords: AuditEvent[] = [];
const auditSink: AuditSink = {
  append: async (e) => {
    auditRecords.push(e);
    return {} as AuditRecord;
  },
};

beforeAll(async () => {
  const agents = await AgentRegistry.open(new MapRecords(), auditSink);
  token = (await agents.add('agent-1', ['entropy', 'keys'])).token;
  limitedToken = (await agents.add('agent-2', ['entropy'])).token;
  adminToken = (await agents.add('admin', ['admin'])).token;
  const keys = new FakeKeys(entropy);
  const status = async (): Promise<ApplianceStatus> => ({
    version: 't',
    region: 'EU',
    mode: 'simulator',
    startedAt: new Date().toISOString(),
    uptimeSeconds: 1,
    degraded: !entropy.quantum,
    reasons: entropy.quantum ? [] : ['no quantum'],
    entropy: entropy.status(),
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
    audit: { records: 9, sealedThrough: 8 },
    pqc: { ...pqcInfo(), legacyVerified: 0 },
  });
  const logger = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk, _enc, cb) {
        logLines.push(String(chunk));
        cb();
      },
    }),
  });
  app = await buildApi({
    version: 't',
    logger,
    entropy,
    keys,
    agents,
    metrics: createMetrics(status),
    status,
    allowedHosts: allowedHostsFor('127.0.0.1', PORT),
    maxEntropyBytes: 65536,
    bodyLimit: 4096,
    rateLimitPerMinute: 50,
  });
  await app.ready();
});

afterAll(async () => {
  await app.close();
});

const auth = (t = token) => ({ host: HOST, authorization: `Bearer ${t}` });

describe('authentication and host checks', () => {
  it('serves /v1/health without a token', async () => {
    const r = await app.inject({ url: '/v1/health', headers: { host: HOST } });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ status: 'ok', version: 't' });
  });

  it('rejects a missing, malformed or unknown token with 401 and a JSON error', async () => {
    for (const headers of [{ host: HOST }, { host: HOST, authorization: 'Basic abc' }, auth('qkm_nope')]) {
      const r = await app.inject({ url: '/v1/entropy?bytes=8', headers });
      expect(r.statusCode).toBe(401);
      expect(r.json().error).toBe('UNAUTHORIZED');
    }
  });

  it('rejects a token without the route scope with 403', async () => {
    const r = await app.inject({ method: 'POST', url: '/v1/keys', headers: auth(limitedToken), payload: {} });
    expect(r.statusCode).toBe(403);
    expect(r.json()).toMatchObject({ error: 'FORBIDDEN' });
  });

  it('rejects a foreign Host header (DNS rebinding) even on /v1/health', async () => {
    for (const host of ['evil.example:7399', '127.0.0.1:80', 'localhost']) {
      const r = await app.inject({ url: '/v1/health', headers: { host } });
      expect(r.statusCode).toBe(421);
      expect(r.json().error).toBe('HOST_NOT_ALLOWED');
    }
    const ok = await app.inject({ url: '/v1/health', headers: { host: `localhost:${PORT}` } });
    expect(ok.statusCode).toBe(200);
  });

  it('only admin tokens manage agents', async () => {
    const denied = await app.inject({ url: '/v1/agents', headers: auth() });
    expect(denied.statusCode).toBe(403);
    const created = await app.inject({
      method: 'POST',
      url: '/v1/agents',
      headers: auth(adminToken),
      payload: { name: 'new-agent' },
    });
    expect(created.statusCode).toBe(201);
    const newToken = created.json().token as string;
    expect(newToken).toMatch(/^qkm_/);
    expect((await app.inject({ url: '/v1/entropy?bytes=4', headers: auth(newToken) })).statusCode).toBe(200);
    const listed = await app.inject({ url: '/v1/agents', headers: auth(adminToken) });
    expect(JSON.stringify(listed.json())).not.toContain(newToken);
    const revoked = await app.inject({
      method: 'DELETE',
      url: '/v1/agents/new-agent',
      headers: auth(adminToken),
    });
    expect(revoked.statusCode).toBe(200);
    expect((await app.inject({ url: '/v1/entropy?bytes=4', headers: auth(newToken) })).statusCode).toBe(401);
    const again = await app.inject({
      method: 'DELETE',
      url: '/v1/agents/new-agent',
      headers: auth(adminToken),
    });
    expect(again.json()).toMatchObject({ error: 'AGENT_NOT_FOUND' });
    // The registry audited both changes, naming the admin as the actor (no audit sink on the routes).
    expect(auditRecords.filter((r) => r.details?.name === 'new-agent').map((r) => [r.type, r.actor])).toEqual(
      [
        ['agent.created', 'admin'],
        ['agent.revoked', 'admin'],
      ],
    );
  });

  it('refuses to revoke the last admin without force (409 LAST_ADMIN), and audits the forced revocation', async () => {
    const refused = await app.inject({
      method: 'DELETE',
      url: '/v1/agents/admin',
      headers: auth(adminToken),
    });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ error: 'LAST_ADMIN' });
    expect((await app.inject({ url: '/v1/agents', headers: auth(adminToken) })).statusCode).toBe(200);
    // Service level (the route passes `force` through): with a second admin the first may go; the
    // second is then the last one again, and only force revokes it — audited as forced.
    const events: AuditEvent[] = [];
    const reg = await AgentRegistry.open(new MapRecords(), {
      append: async (e) => {
        events.push(e);
        return {} as AuditRecord;
      },
    });
    await reg.add('root', ['admin']);
    await reg.add('root2', ['admin'], 'root');
    await reg.revoke('root', { actor: 'root2' });
    await expect(reg.revoke('root2', { actor: 'root2' })).rejects.toMatchObject({ code: 'LAST_ADMIN' });
    await reg.revoke('root2', { actor: 'root2', force: true });
    expect(events.map((e) => [e.type, e.actor, e.details?.name, e.details?.forced])).toEqual([
      ['agent.created', 'system', 'root', undefined],
      ['agent.created', 'root', 'root2', undefined],
      ['agent.revoked', 'root2', 'root', undefined],
      ['agent.revoked', 'root2', 'root2', true],
    ]);
  });
});

describe('GET /v1/entropy', () => {
  it('returns base64 data with provenance', async () => {
    const r = await app.inject({ url: '/v1/entropy?bytes=32', headers: auth() });
    expect(r.statusCode).toBe(200);
    const body = r.json();
    expect(Buffer.from(body.data, 'base64')).toHaveLength(32);
    expect(body.bytes).toBe(32);
    expect(body.provenance).toMatchObject({ degraded: false, seedOrigin: 'quantum' });
    expect(body.provenance.reason).toBeUndefined();
  });

  it('returns raw bytes with provenance headers for application/octet-stream', async () => {
    const r = await app.inject({
      url: '/v1/entropy?bytes=48',
      headers: { ...auth(), accept: 'application/octet-stream' },
    });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toBe('application/octet-stream');
    expect(r.rawPayload).toHaveLength(48);
    expect(r.headers['x-qkm-degraded']).toBe('false');
    const p = JSON.parse(Buffer.from(String(r.headers['x-qkm-provenance']), 'base64url').toString());
    expect(p.drbg.name).toContain('CTR_DRBG');
  });

  it('flags degraded output and refuses require=quantum with 503 when no quantum source is healthy', async () => {
    entropy.quantum = false;
    try {
      const r = await app.inject({ url: '/v1/entropy?bytes=16', headers: auth() });
      expect(r.json().provenance).toMatchObject({ degraded: true, seedOrigin: 'os' });
      expect(r.json().provenance.reason).toMatch(/quantum/);
      const q = await app.inject({ url: '/v1/entropy?bytes=16&require=quantum', headers: auth() });
      expect(q.statusCode).toBe(503);
      expect(q.json()).toEqual({ error: 'QUANTUM_ENTROPY_UNAVAILABLE', message: expect.any(String) });
    } finally {
      entropy.quantum = true;
    }
  });

  it('rejects bad sizes and parameters with 400', async () => {
    for (const q of [
      '',
      'bytes=0',
      'bytes=-1',
      'bytes=65537',
      'bytes=abc',
      'bytes=1.5',
      'bytes=8&require=maybe',
      'bytes=8&x=1',
    ]) {
      const r = await app.inject({ url: `/v1/entropy?${q}`, headers: auth() });
      expect(r.statusCode, q).toBe(400);
      expect(r.json().error, q).toBe('BAD_REQUEST');
      expect(typeof r.json().message).toBe('string');
    }
  });

  it('answers 406 when neither JSON nor octets are acceptable', async () => {
    const r = await app.inject({ url: '/v1/entropy?bytes=8', headers: { ...auth(), accept: 'text/html' } });
    expect(r.statusCode).toBe(406);
    expect(r.json().error).toBe('NOT_ACCEPTABLE');
  });
});

describe('keys', () => {
  it('creates, lists (metadata only) and takes a key exactly once', async () => {
    const c = await app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: auth(),
      payload: { size: 32, label: 'k1' },
    });
    expect(c.statusCode).toBe(201);
    const id = c.json().id;
    expect(c.json()).not.toHaveProperty('key');
    const l = await app.inject({ url: '/v1/keys', headers: auth() });
    expect(l.json().keys.map((k: { id: string }) => k.id)).toContain(id);
    expect(JSON.stringify(l.json())).not.toMatch(/"key"/);
    const t1 = await app.inject({ method: 'POST', url: `/v1/keys/${id}/take`, headers: auth() });
    expect(t1.statusCode).toBe(200);
    expect(Buffer.from(t1.json().key, 'base64')).toHaveLength(32);
    const t2 = await app.inject({ method: 'POST', url: `/v1/keys/${id}/take`, headers: auth() });
    expect(t2.statusCode).toBe(410);
    expect(t2.json().error).toBe('KEY_ALREADY_TAKEN');
  });

  it('rejects bad bodies with 4xx JSON errors', async () => {
    const cases: Array<[string | undefined, string | undefined, number]> = [
      ['{"size": 8}', 'application/json', 400],
      ['{"size": 2048}', 'application/json', 400],
      ['{"size": "x"}', 'application/json', 400],
      ['{"nope": 1}', 'application/json', 400],
      ['{not json', 'application/json', 400],
      ['size=32', 'application/x-www-form-urlencoded', 415],
      [JSON.stringify({ label: 'x'.repeat(5000) }), 'application/json', 413],
    ];
    for (const [payload, type, status] of cases) {
      const r = await app.inject({
        method: 'POST',
        url: '/v1/keys',
        headers: { ...auth(), ...(type ? { 'content-type': type } : {}) },
        ...(payload !== undefined ? { payload } : {}),
      });
      expect(r.statusCode, payload).toBe(status);
      expect(Object.keys(ERROR_CATALOGUE)).toContain(r.json().error);
    }
    const bad = await app.inject({ method: 'POST', url: '/v1/keys/not-a-uuid/take', headers: auth() });
    expect(bad.statusCode).toBe(400);
    const missing = await app.inject({
      method: 'POST',
      url: '/v1/keys/00000000-0000-4000-8000-000000000000/take',
      headers: auth(),
    });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error).toBe('KEY_NOT_FOUND');
  });
});

describe('operations routes', () => {
  it('OpenAPI: servers, a unique operationId per operation, one shared Error component, entropy as octets', async () => {
    const doc = (await app.inject({ url: '/docs/json', headers: { host: HOST } })).json();
    expect(doc.servers).toEqual([{ url: `http://${HOST}`, description: 'this appliance' }]);
    const ops = Object.values(doc.paths).flatMap((item) =>
      Object.values(item as Record<string, unknown>),
    ) as Array<{
      operationId?: string;
      responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
    }>;
    const ids = ops.map((o) => o.operationId);
    expect(ids.every((id) => typeof id === 'string' && /^[a-z][A-Za-z]+$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(doc.paths['/v1/keys/{id}/take'].post.operationId).toBe('postKeysByIdTake');
    expect(doc.components.schemas.Error.required).toEqual(['error', 'message']);
    let errorRefs = 0;
    for (const o of ops) {
      for (const [status, r] of Object.entries(o.responses)) {
        if (Number(status) < 400) continue;
        expect(r.content?.['application/json']?.schema, status).toEqual({
          $ref: '#/components/schemas/Error',
        });
        errorRefs++;
      }
    }
    expect(errorRefs).toBeGreaterThan(ops.length);
    const entropy200 = doc.paths['/v1/entropy'].get.responses['200'];
    expect(entropy200.content['application/octet-stream'].schema).toEqual({
      type: 'string',
      format: 'binary',
    });
    expect(Object.keys(entropy200.headers)).toEqual(
      expect.arrayContaining(['X-QKM-Degraded', 'X-QKM-Seed-Origin', 'X-QKM-Provenance']),
    );
  });

  it('serves a docs page that renders the OpenAPI document from this origin only', async () => {
    const r = await app.inject({ url: '/docs', headers: { host: HOST } });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/html/);
    expect(r.headers['content-security-policy']).toContain("default-src 'none'");
    expect(r.headers['content-security-policy']).toContain("connect-src 'self'");
    expect(r.body).toContain("fetch('/docs/json')");
    expect(r.body).not.toMatch(/https?:\/\//);
  });

  it('serves OpenAPI JSON naming every route', async () => {
    const r = await app.inject({ url: '/docs/json', headers: { host: HOST } });
    expect(r.statusCode).toBe(200);
    const doc = r.json();
    expect(doc.openapi).toMatch(/^3\./);
    for (const p of [
      '/v1/health',
      '/v1/status',
      '/v1/entropy',
      '/v1/keys',
      '/v1/keys/{id}/take',
      '/v1/agents',
    ]) {
      expect(doc.paths, p).toHaveProperty([p]);
    }
  });

  it('serves Prometheus metrics to authenticated callers', async () => {
    expect((await app.inject({ url: '/metrics', headers: { host: HOST } })).statusCode).toBe(401);
    const r = await app.inject({ url: '/metrics', headers: auth() });
    expect(r.statusCode).toBe(200);
    expect(r.body).toContain('qkm_degraded{component="entropy"} 0');
    expect(r.body).toMatch(/qkm_entropy_source_state\{source="fake-qrng"[^}]*state="healthy"\} 1/);
    expect(r.body).toContain('qkm_http_requests_total');
    expect(r.body).toContain('qkm_audit_records 9');
    expect(r.body).toContain('qkm_audit_unsealed_records 1');
    expect(r.body).toMatch(/^qkm_pqc_backend_info\{backend="[a-z-]+",/m);
  });

  it('POST /v1/keys with no body creates a key with the defaults', async () => {
    const r = await app.inject({ method: 'POST', url: '/v1/keys', headers: auth() });
    expect(r.statusCode, r.body).toBe(201);
    expect(r.json()).toMatchObject({ size: 32, state: 'active', owner: 'agent-1' });
  });

  it('answers a known path with a wrong method 405, naming the allowed methods in Allow', async () => {
    for (const [method, url, allow] of [
      ['DELETE', '/v1/status', 'GET, HEAD'],
      ['GET', '/v1/keys/7f1d2c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6/take', 'POST'],
      ['PUT', '/v1/keys', 'GET, HEAD, POST'],
      ['POST', '/metrics?x=1', 'GET, HEAD'],
    ] as const) {
      const r = await app.inject({ method, url, headers: auth() });
      expect(r.statusCode, `${method} ${url}`).toBe(405);
      expect(r.headers.allow).toBe(allow);
      expect(r.json()).toEqual({
        error: 'METHOD_NOT_ALLOWED',
        message: `${method} is not allowed on ${url.split('?')[0]}; use ${allow}`,
      });
    }
  });

  it('answers unknown routes with a JSON 404 (after auth)', async () => {
    const r = await app.inject({ url: '/v1/nothing', headers: auth() });
    expect(r.statusCode).toBe(404);
    expect(r.json().error).toBe('NOT_FOUND');
  });

  it('serves the status page without data in it', async () => {
    const r = await app.inject({ url: '/', headers: { host: HOST } });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toContain('text/html');
    // Its script at least parses, and it has a place for every part of the status.
    const script = r.body.slice(r.body.indexOf('<script>') + 8, r.body.indexOf('</script>'));
    expect(() => new Function(script)).not.toThrow();
    for (const id of ['sources', 'drbg', 'keys', 'qkd', 'sessions', 'audit'])
      expect(r.body).toContain(`id="${id}"`);
  });
});

describe('robustness', () => {
  it('never answers 5xx to arbitrary requests (fuzz)', async () => {
    const methods = fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH');
    const paths = fc.oneof(
      fc.constantFrom(
        '/v1/entropy',
        '/v1/keys',
        '/v1/keys/x/take',
        '/v1/agents',
        '/v1/status',
        '/metrics',
        '/docs/json',
        '/',
      ),
      fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)),
    );
    const queries = fc.oneof(
      fc.constant(''),
      fc.webQueryParameters().map((q) => `?${q}`),
      fc.constant('?bytes=32'),
    );
    const bodies = fc.oneof(fc.constant(undefined), fc.json(), fc.string());
    await fc.assert(
      fc.asyncProperty(methods, paths, queries, bodies, async (method, path, query, payload) => {
        const r = await app.inject({
          method: method as 'GET',
          url: path + query,
          headers: {
            ...auth(adminToken),
            ...(payload !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          ...(payload !== undefined && method !== 'GET' ? { payload } : {}),
        });
        expect(r.statusCode).toBeLessThan(500);
        if (r.statusCode >= 400) expect(Object.keys(ERROR_CATALOGUE)).toContain(r.json().error);
      }),
      { numRuns: 300 },
    );
  });

  it('rate-limits per token with 429 and a JSON body', async () => {
    let limited: { statusCode: number; json: () => { error: string } } | undefined;
    for (let i = 0; i < 80 && !limited; i++) {
      const r = await app.inject({ url: '/v1/entropy?bytes=1', headers: auth(limitedToken) });
      if (r.statusCode === 429) limited = r;
    }
    expect(limited?.json().error).toBe('RATE_LIMITED');
  });

  it('keeps tokens and entropy out of the log', async () => {
    const r = await app.inject({ url: '/v1/entropy?bytes=64', headers: auth() });
    const data = r.json().data as string;
    const log = logLines.join('');
    expect(log.length).toBeGreaterThan(0);
    expect(log).not.toContain(token);
    expect(log).not.toContain(data);
    expect(log).not.toContain(Buffer.from(data, 'base64').toString('hex'));
  });
});
