import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE, isQkmError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { ProviderClient } from '../../src/provider/client.js';
import { loadProviderConfig } from '../../src/provider/config.js';
import { ProviderService } from '../../src/provider/service.js';
import { HEADER, signRequest } from '../../src/provider/wire.js';
import { toBase64url } from '../../src/session/encoding.js';
import type { NodeIdentity } from '../../src/session/identity.js';
import { testNode } from '../helpers/provider-fixtures.js';

/**
 * The Provider's API in process over loopback HTTP: admin-gated enrolment, signed node requests
 * (unsigned, forged, tampered, stale and replayed ones refused), signed answers, one OTK per
 * bundle, and input that fails its schema answered 4xx {error, message}, never 500.
 */

const BOB = 'bob@example.com:calendar';
const ALICE = 'alice@example.com:mail';

const node = testNode;

let dir: string;
let service: ProviderService;
let adminToken: string;
let publicKey: string;
const A = node(0xa);
const B = node(0xb);

function client(opts: { signer?: NodeIdentity; admin?: boolean; key?: string } = {}): ProviderClient {
  return new ProviderClient({
    url: service.url,
    publicKey: opts.key ?? publicKey,
    ...(opts.signer ? { signer: opts.signer } : {}),
    ...(opts.admin ? { adminToken } : {}),
  });
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isQkmError(err) ? err.code : `not a QkmError: ${String(err)}`;
  }
}

async function start(): Promise<ProviderService> {
  const config = loadProviderConfig({ env: {}, overrides: { dataDir: join(dir, 'provider'), port: 0 } });
  return ProviderService.start({ config, logger: createLogger({ level: 'silent' }) });
}

/** A signed request built by hand, so the test can alter any part of it after signing. */
function signed(
  signer: NodeIdentity,
  method: string,
  path: string,
  body: string,
  overrides: Partial<Record<string, string>> = {},
) {
  const timestamp = String(Date.now());
  const nonce = toBase64url(new Uint8Array(randomBytes(24)));
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    [HEADER.node]: signer.nodeId,
    [HEADER.timestamp]: timestamp,
    [HEADER.nonce]: nonce,
    [HEADER.signature]: signRequest(
      { method, path, nodeId: signer.nodeId, timestamp, nonce, body: Buffer.from(body) },
      signer.signing.secretKey,
    ),
    ...overrides,
  };
  return { headers, body };
}

async function raw(
  method: string,
  path: string,
  init: { headers?: Record<string, string>; body?: string } = {},
) {
  const res = await fetch(service.url + path, { method, ...init });
  return { status: res.status, body: (await res.json()) as { error?: string; message?: string } };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-provider-api-'));
  service = await start();
  adminToken = (await readFile(service.adminTokenFile, 'utf8')).trim();
  publicKey = toBase64url(service.identity.publicKey);
}, 30_000);

afterAll(async () => {
  await service?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('Provider API', () => {
  it('publishes its identity and an OpenAPI document listing every route', async () => {
    expect(await client().identity()).toMatchObject({
      provider_id: service.identity.providerId,
      ml_dsa_65_public_key: publicKey,
    });
    const doc = (await (await fetch(`${service.url}/docs/json`)).json()) as {
      paths: Record<string, unknown>;
    };
    expect(Object.keys(doc.paths).sort()).toEqual([
      '/v1/agents/{aid}',
      '/v1/agents/{aid}/policy',
      '/v1/agents/{aid}/prekeys',
      '/v1/bundles',
      '/v1/nodes',
      '/v1/nodes/{id}',
      '/v1/provider',
      '/v1/status',
    ]);
  });

  it('enrolment is admin-gated (Sybil): no token or a wrong one is refused', async () => {
    expect(await code(client().enrol(A.identity.bundle))).toBe('UNAUTHORIZED');
    const wrong = new ProviderClient({ url: service.url, publicKey, adminToken: 'qkmp_wrong' });
    expect(await code(wrong.enrol(A.identity.bundle))).toBe('UNAUTHORIZED');
    expect(await code(client({ admin: true }).enrol({ ...A.identity.bundle, region: 'US' }))).toBe(
      'BUNDLE_INVALID',
    );
    const admin = client({ admin: true });
    expect(await admin.enrol(A.identity.bundle, 'node A')).toMatchObject({ node_id: A.identity.nodeId });
    await admin.enrol(B.identity.bundle, 'node B');
    expect((await admin.nodes()).map((n) => n.label).sort()).toEqual(['node A', 'node B']);
  });

  it('an unenrolled node is refused, whatever it signs', async () => {
    const stranger = node(0xc).identity;
    expect(
      await code(client({ signer: stranger }).registerAgent('x@example.com:y', 'http://127.0.0.1:1')),
    ).toBe('NODE_NOT_ENROLLED');
  });

  it('unsigned, forged, tampered, stale and replayed node requests are refused 401', async () => {
    const path = `/v1/agents/${encodeURIComponent(ALICE)}`;
    const body = JSON.stringify({ endpoint: 'http://127.0.0.1:7302' });
    const unsigned = await raw('PUT', path, { headers: { 'content-type': 'application/json' }, body });
    expect(unsigned).toMatchObject({ status: 401, body: { error: 'UNAUTHORIZED' } });
    // Node B's key signing a request that claims to come from node A.
    const forged = signed(B.identity, 'PUT', path, body, { [HEADER.node]: A.identity.nodeId });
    expect((await raw('PUT', path, forged)).body.error).toBe('UNAUTHORIZED');
    const good = signed(A.identity, 'PUT', path, body);
    const tampered = { ...good, body: JSON.stringify({ endpoint: 'http://127.0.0.1:6666' }) };
    expect((await raw('PUT', path, tampered)).body.error).toBe('UNAUTHORIZED');
    const stale = signed(A.identity, 'PUT', path, body, {
      [HEADER.timestamp]: String(Date.now() - 3_600_000),
    });
    expect((await raw('PUT', path, stale)).body.error).toBe('UNAUTHORIZED');
    expect((await raw('PUT', path, good)).status).toBe(200);
    const replay = await raw('PUT', path, good);
    expect(replay).toMatchObject({ status: 401, body: { error: 'UNAUTHORIZED' } });
    expect(replay.body.message).toContain('replayed');
  });

  it('answers are signed: a client pinning another key refuses them', async () => {
    const other = toBase64url(node(0xd).identity.signing.publicKey);
    expect(await code(client({ key: other }).identity())).toBe('PROVIDER_RESPONSE_INVALID');
    expect(await code(client({ key: other, signer: A.identity }).stock(ALICE))).toBe(
      'PROVIDER_RESPONSE_INVALID',
    );
  });

  it('hands out one OTK per bundle, budget permitting; the last-resort prekey once they run out', async () => {
    const a = client({ signer: A.identity });
    const b = client({ signer: B.identity });
    await b.registerAgent(BOB, 'http://127.0.0.1:7301');
    await b.setPolicy(BOB, [
      { pattern: ALICE, budget: 3 },
      { pattern: '*@evil.example:*', budget: -1 },
    ]);
    expect(await b.uploadPrekeys(BOB, await B.prekeys.publishBatch(BOB, 2))).toEqual({
      otks: 2,
      lastResort: false,
    });
    await b.uploadPrekeys(BOB, [await B.prekeys.lastResort(BOB)]);
    await a.registerAgent(ALICE, 'http://127.0.0.1:7302');
    const first = await a.bundle(BOB, ALICE);
    expect(first).toMatchObject({
      agent: { aid: BOB, node_id: B.identity.nodeId, endpoint: 'http://127.0.0.1:7301' },
      node: { identity: B.identity.bundle },
      lastResort: false,
      decision: { used: 1, remaining: 2 },
    });
    const second = await a.bundle(BOB, ALICE);
    expect(second.prekey.id).not.toBe(first.prekey.id);
    expect(await b.stock(BOB)).toMatchObject({ otks: 0 });
    const third = await a.bundle(BOB, ALICE);
    expect(third).toMatchObject({ lastResort: true, prekey: { kind: 'last-resort' } });
    expect(await code(a.bundle(BOB, ALICE))).toBe('CONTACT_BUDGET_EXHAUSTED');
    // The responder's node may not ask on behalf of Alice, and Alice may not read Bob's stock.
    expect(await code(b.bundle(BOB, ALICE))).toBe('FORBIDDEN');
    expect(await code(a.stock(BOB))).toBe('FORBIDDEN');
  });

  it('input that fails its schema is 4xx {error, message}, never 500', async () => {
    const junk: Array<[string, string, string]> = [
      ['POST', '/v1/bundles', '{"responder": 1, "initiator": []}'],
      ['POST', '/v1/bundles', `{"responder": "${BOB}", "initiator": "${ALICE}", "extra": 1}`],
      ['POST', '/v1/bundles', '{not json'],
      ['POST', '/v1/bundles', `{"responder": "not-an-aid", "initiator": "${ALICE}"}`],
      ['PUT', `/v1/agents/${encodeURIComponent(ALICE)}`, '{"endpoint": "ftp://x"}'],
      ['PUT', `/v1/agents/${'x'.repeat(500)}`, '{"endpoint": "http://127.0.0.1:1"}'],
      [
        'PUT',
        `/v1/agents/${encodeURIComponent(ALICE)}/policy`,
        '{"rules": [{"pattern": "*", "budget": 1.5}]}',
      ],
      ['POST', `/v1/agents/${encodeURIComponent(ALICE)}/prekeys`, '{"prekeys": [{"v": 2}]}'],
      ['POST', `/v1/agents/${encodeURIComponent(ALICE)}/prekeys`, '{"prekeys": []}'],
      ['POST', '/v1/agents/%E0%A4%A/prekeys', '{}'],
    ];
    for (const [method, path, body] of junk) {
      const r = await raw(method, path, signed(A.identity, method, path, body));
      expect(r.status, `${method} ${path} ${body}`).toBeGreaterThanOrEqual(400);
      expect(r.status, `${method} ${path} ${body}`).toBeLessThan(500);
      expect(Object.keys(ERROR_CATALOGUE)).toContain(r.body.error);
      expect(typeof r.body.message).toBe('string');
    }
    expect((await raw('DELETE', '/v1/bundles')).status).toBe(405);
    expect((await raw('GET', '/v1/nowhere')).status).toBe(404);
    // DNS rebinding guard (fetch cannot set Host; node:http can).
    const port = new URL(service.url).port;
    const rebinding = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, path: '/v1/provider', headers: { host: 'evil.example:7400' } },
        (res) => {
          let text = '';
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(rebinding.status).toBe(421);
    expect(JSON.parse(rebinding.body).error).toBe('HOST_NOT_ALLOWED');
  });

  it('keeps its identity and state across a restart', async () => {
    const before = service.identity.providerId;
    await service.close();
    service = await start();
    expect(service.identity.providerId).toBe(before);
    const admin = client({ admin: true });
    expect(await admin.status()).toMatchObject({ nodes: 2, agents: 2, otks: 0, lastResort: 1 });
    // Budgets too: Alice spent all 3 before the restart.
    expect(await code(client({ signer: A.identity }).bundle(BOB, ALICE))).toBe('CONTACT_BUDGET_EXHAUSTED');
  });

  it('the administrator removes a node: its requests are refused from then on', async () => {
    const admin = client({ admin: true });
    expect(await code(admin.removeNode('0'.repeat(32)))).toBe('NOT_FOUND');
    expect(await code(client({ signer: B.identity }).removeNode(B.identity.nodeId))).toBe('UNAUTHORIZED');
    expect(await admin.removeNode(B.identity.nodeId)).toEqual({ removed: B.identity.nodeId });
    expect(await code(client({ signer: B.identity }).stock(BOB))).toBe('NODE_NOT_ENROLLED');
    expect(await code(client({ signer: A.identity }).bundle(BOB, ALICE))).toBe('NODE_NOT_ENROLLED');
  });

  it('vouches for an enrolled node to another enrolled node (GET /v1/nodes/:id), and for no other', async () => {
    const asA = client({ signer: A.identity });
    // B was removed above: neither pinned nor vouched.
    expect(await code(asA.node(B.identity.nodeId))).toBe('HANDSHAKE_UNKNOWN_PEER');
    await client({ admin: true }).enrol(B.identity.bundle, 'node B');
    const v = await asA.node(B.identity.nodeId);
    expect(v.nodeId).toBe(B.identity.nodeId);
    expect(v.bundle).toEqual(B.identity.bundle);
    // Only enrolled nodes may ask, signed: anyone else learns nothing.
    expect((await raw('GET', `/v1/nodes/${B.identity.nodeId}`)).status).toBe(401);
    expect(await code(client({ signer: node(0xd).identity }).node(B.identity.nodeId))).toBe(
      'PROVIDER_UNAVAILABLE',
    );
    // An answer that is not the Provider's (another pinned key) is never used.
    expect(
      await code(
        client({ signer: A.identity, key: toBase64url(node(0xe).identity.signing.publicKey) }).node(
          B.identity.nodeId,
        ),
      ),
    ).toBe('PROVIDER_RESPONSE_INVALID');
  });
});
