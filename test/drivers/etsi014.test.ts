/**
 * The ETSI 014 client against a misbehaving mutual-TLS fixture KME (test/drivers/fixtures), over
 * real HTTPS on loopback with real certificates from the simulator's certificate generator.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PeerCertificate } from 'node:tls';
import {
  certificateNames,
  Etsi014Client,
  type Etsi014ClientOptions,
  KME_ID_MISMATCH,
  kmeIdentityCheck,
  QkdError,
} from '../../drivers/qkd/etsi014/index.js';
import { generateForeignCert, generateSimCerts } from '../../simulators/kme/certs.js';
import { type FixtureKme, makeKeys, sendJson, startFixtureKme, statusBody } from './fixtures/kme-fixture.js';

interface Pem {
  cert: string;
  key: string;
}

let dir: string;
let ca: string;
let saeA: Pem;
let kmeA: Pem;
let kmeB: Pem;
let foreignKmeA: Pem & { ca: string };
let foreignSae: Pem;
let kme: FixtureKme;
const clients: Etsi014Client[] = [];

async function pem(files: { cert: string; key: string }): Promise<Pem> {
  return { cert: await readFile(files.cert, 'utf8'), key: await readFile(files.key, 'utf8') };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-etsi014-'));
  const files = await generateSimCerts(dir);
  ca = await readFile(files.ca.cert, 'utf8');
  saeA = await pem(files.saes['sae-a']!);
  kmeA = await pem(files.kmes['kme-a']!);
  kmeB = await pem(files.kmes['kme-b']!);
  const foreignK = await generateForeignCert(join(dir, 'foreign-kme'), 'kme-a', 'kme');
  foreignKmeA = { ...(await pem(foreignK)), ca: await readFile(foreignK.ca, 'utf8') };
  foreignSae = await pem(await generateForeignCert(join(dir, 'foreign-sae'), 'sae-a', 'sae'));
  kme = await startFixtureKme({ ca, ...kmeA });
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  kme.reset();
});

afterAll(async () => {
  await kme?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function client(overrides: Partial<Etsi014ClientOptions> = {}): Etsi014Client {
  const c = new Etsi014Client({
    kmeUrl: kme.url,
    kmeId: 'kme-a',
    saeId: 'sae-a',
    ca,
    ...saeA,
    timeoutMs: 2000,
    retries: 3,
    backoffMs: 10,
    ...overrides,
  });
  clients.push(c);
  return c;
}

async function failure(promise: Promise<unknown>): Promise<QkdError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(QkdError);
  return error as QkdError;
}

async function startOther(tls: { ca: string; cert: string; key: string }): Promise<FixtureKme> {
  const other = await startFixtureKme(tls);
  other.handler = (_req, res) => sendJson(res, 200, statusBody());
  return other;
}

describe('success paths', () => {
  it('status: GET …/{slave}/status, fields renamed, client identified by its certificate', async () => {
    kme.handler = (_req, res) => sendJson(res, 200, statusBody({ status_extension: { vendor_x: 1 } }));
    const c = client();
    const status = await c.status('sae-b');
    expect(status).toEqual({
      sourceKmeId: 'kme-a',
      targetKmeId: 'kme-b',
      masterSaeId: 'sae-a',
      slaveSaeId: 'sae-b',
      keySize: 256,
      storedKeyCount: 25000,
      maxKeyCount: 100000,
      maxKeyPerRequest: 128,
      maxKeySize: 1024,
      minKeySize: 64,
      maxSaeIdCount: 0,
      statusExtension: { vendor_x: 1 },
    });
    expect(kme.requests).toHaveLength(1);
    expect(kme.requests[0]).toMatchObject({
      method: 'GET',
      path: '/api/v1/keys/sae-b/status',
      clientCn: 'sae-a',
    });
    const health = c.health();
    expect(health.up).toBe(true);
    expect(health.lastStatus?.storedKeyCount).toBe(25000);
    expect(health.counters).toEqual({ requests: 1, failures: 0, keysFetched: 0 });
  });

  it('getKeys: POST enc_keys with the standard field names; keys decode to size/8 bytes', async () => {
    const keys = makeKeys(3, 512);
    kme.handler = (_req, res) => sendJson(res, 200, { keys });
    const c = client();
    const got = await c.getKeys('sae-b', { number: 3, size: 512 });
    expect(kme.requests[0]).toMatchObject({ method: 'POST', path: '/api/v1/keys/sae-b/enc_keys' });
    expect(kme.requests[0]!.headers['content-type']).toBe('application/json');
    expect(JSON.parse(kme.requests[0]!.body)).toEqual({ number: 3, size: 512 });
    expect(got.map((k) => k.keyId)).toEqual(keys.map((k) => k.key_ID));
    expect(got.map((k) => Buffer.from(k.key).toString('base64'))).toEqual(keys.map((k) => k.key));
    for (const k of got) expect(k.key).toHaveLength(64);
    expect(c.health().counters.keysFetched).toBe(3);
  });

  it('getKeys: every Key request field is sent under its §6.2 name; an empty request sends {}', async () => {
    kme.handler = (_req, res) => sendJson(res, 200, { keys: makeKeys(1) });
    const c = client();
    await c.getKeys('sae-b', {
      number: 1,
      size: 256,
      additionalSlaveSaeIds: ['sae-c'],
      extensionMandatory: [{ abc_route_type: 'direct' }],
      extensionOptional: [{ abc_max_age: 30 }],
    });
    expect(JSON.parse(kme.requests[0]!.body)).toEqual({
      number: 1,
      size: 256,
      additional_slave_SAE_IDs: ['sae-c'],
      extension_mandatory: [{ abc_route_type: 'direct' }],
      extension_optional: [{ abc_max_age: 30 }],
    });
    await c.getKeys('sae-b');
    expect(JSON.parse(kme.requests[1]!.body)).toEqual({});
  });

  it('getKeys without size checks the length against the key_size of the last Status', async () => {
    const c = client();
    kme.handler = (_req, res) => sendJson(res, 200, statusBody({ key_size: 128 }));
    await c.status('sae-b');
    kme.handler = (_req, res) => sendJson(res, 200, { keys: makeKeys(1, 256) });
    const e = await failure(c.getKeys('sae-b'));
    expect(e.kind).toBe('protocol');
    expect(e.message).toMatch(/256 bits, 128 were asked for/);
    kme.handler = (_req, res) => sendJson(res, 200, { keys: makeKeys(1, 128) });
    expect((await c.getKeys('sae-b'))[0]!.key).toHaveLength(16);
  });

  it('getKeysById: POST {master}/dec_keys with key_IDs; result in the asked order', async () => {
    const keys = makeKeys(3);
    kme.handler = (_req, res) => sendJson(res, 200, { keys: [...keys].reverse() });
    const c = client();
    const ids = keys.map((k) => k.key_ID);
    const got = await c.getKeysById('sae-a', ids);
    expect(kme.requests[0]).toMatchObject({ method: 'POST', path: '/api/v1/keys/sae-a/dec_keys' });
    expect(JSON.parse(kme.requests[0]!.body)).toEqual({ key_IDs: ids.map((key_ID) => ({ key_ID })) });
    expect(got.map((k) => k.keyId)).toEqual(ids);
    expect(got.map((k) => Buffer.from(k.key).toString('base64'))).toEqual(keys.map((k) => k.key));
  });

  it('URL-encodes SAE IDs in paths', async () => {
    kme.handler = (_req, res) => sendJson(res, 200, statusBody({ slave_SAE_ID: 'sae b/ü?' }));
    await client().status('sae b/ü?');
    expect(kme.requests[0]!.path).toBe('/api/v1/keys/sae%20b%2F%C3%BC%3F/status');
  });

  it('accepts a kmeUrl that already ends in /api/v1/keys, and builds from PEM files', async () => {
    kme.handler = (_req, res) => sendJson(res, 200, statusBody());
    await client({ kmeUrl: `${kme.url}/api/v1/keys/` }).status('sae-b');
    const c = await Etsi014Client.fromFiles({
      kmeUrl: kme.url,
      kmeId: 'kme-a',
      saeId: 'sae-a',
      caPath: join(dir, 'ca.pem'),
      certPath: join(dir, 'sae-a.pem'),
      keyPath: join(dir, 'sae-a.key'),
    });
    clients.push(c);
    await c.status('sae-b');
    expect(kme.requests.map((r) => r.path)).toEqual([
      '/api/v1/keys/sae-b/status',
      '/api/v1/keys/sae-b/status',
    ]);
  });
});

describe('HTTP statuses become typed errors', () => {
  const table: Array<[number, QkdError['kind'], boolean]> = [
    [400, 'bad-request', false],
    [401, 'unauthorized', false],
    [403, 'unexpected-status', false],
    [404, 'not-found', false],
    [405, 'method-not-allowed', false],
    [409, 'conflict', false],
    [412, 'precondition-failed', false],
    [418, 'unexpected-status', false],
    [422, 'unprocessable', false],
    [500, 'server-error', false],
    [502, 'server-error', false],
    [503, 'unavailable', true],
    [504, 'gateway-timeout', true],
    [201, 'unexpected-status', false],
    [302, 'unexpected-status', false],
  ];
  it.each(table)('%i → %s (retryable %s)', async (status, kind, retryable) => {
    kme.handler = (_req, res) => sendJson(res, status, { message: `the KME says ${status}` });
    const e = await failure(client({ retries: 0 }).status('sae-b'));
    expect(e).toMatchObject({
      kind,
      status,
      retryable,
      kmeMessage: `the KME says ${status}`,
      operation: 'status',
    });
    expect(e.message).toContain(String(status));
  });

  it('401 without a body (the standard form): no kmeMessage', async () => {
    kme.handler = (_req, res) => {
      res.statusCode = 401;
      res.end();
    };
    const e = await failure(client().getKeys('sae-b', { number: 1, size: 256 }));
    expect(e.kind).toBe('unauthorized');
    expect(e.kmeMessage).toBeUndefined();
    expect(kme.requests).toHaveLength(1);
  });

  it('reads the ETSI Error body: message and details', async () => {
    kme.handler = (_req, res) =>
      sendJson(res, 400, {
        message: 'one or more keys specified are not found on KME',
        details: [{ missing_key_ID: '0d8e1c3e-6f35-4c4c-9d8e-3c2b6b1e5f00' }],
      });
    const e = await failure(client().getKeysById('sae-a', ['0d8e1c3e-6f35-4c4c-9d8e-3c2b6b1e5f00']));
    expect(e.kind).toBe('bad-request');
    expect(e.kmeMessage).toBe('one or more keys specified are not found on KME');
    expect(e.kmeDetails).toEqual([{ missing_key_ID: '0d8e1c3e-6f35-4c4c-9d8e-3c2b6b1e5f00' }]);
  });

  it.each([
    [{ detail: 'Not Found' }, 404, 'Not Found'],
    [{ detail: 'Method Not Allowed' }, 405, 'Method Not Allowed'],
    [
      {
        detail: [
          { loc: ['body', 'number'], msg: 'value is not a valid integer', type: 'type_error.integer' },
          { loc: ['body', 'size'], msg: 'field required', type: 'value_error.missing' },
        ],
      },
      422,
      'body.number: value is not a valid integer; body.size: field required',
    ],
    [{ detail: { reason: 'key store locked' } }, 409, '{"reason":"key store locked"}'],
    [{ detail: 'line one\nline two\u0007' }, 412, 'line one line two'],
  ])('FastAPI-style %j body with %i', async (body, status, message) => {
    kme.handler = (_req, res) => sendJson(res, status, body);
    const e = await failure(client().status('sae-b'));
    expect(e.status).toBe(status);
    expect(e.kmeMessage).toBe(message);
  });

  it('an HTML error page yields no kmeMessage; very long messages are cut', async () => {
    kme.handler = (_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html><body><h1>502 Bad Gateway</h1></body></html>');
    };
    const e = await failure(client().status('sae-b'));
    expect(e).toMatchObject({ kind: 'server-error', status: 502 });
    expect(e.kmeMessage).toBeUndefined();
    kme.handler = (_req, res) => sendJson(res, 500, { message: 'x'.repeat(5000) });
    const long = await failure(client().status('sae-b'));
    expect(long.kmeMessage!.length).toBeLessThanOrEqual(501);
  });
});

describe('malformed 200 bodies are protocol errors that never show key bytes', () => {
  const id = '6f1b2d7c-4f0e-4a53-9d3c-0d3b5c8a9e11';
  const key32 = Buffer.alloc(32, 0xab).toString('base64');
  const cases: Array<[string, string | Record<string, unknown>]> = [
    ['not JSON', `{"keys":[{"key_ID":"${id}","key":"${key32}"`],
    ['HTML', '<html>oops</html>'],
    ['no keys array', { key: key32 }],
    ['JSON null', 'null'],
    ['too few keys', { keys: [] }],
    ['too many keys', { keys: [{ key_ID: id, key: key32 }, ...makeKeys(1)] }],
    [
      'a key one byte short (bits vs bytes)',
      { keys: [{ key_ID: id, key: Buffer.alloc(31, 0xab).toString('base64') }] },
    ],
    ['a key sent as 256 bytes', { keys: [{ key_ID: id, key: Buffer.alloc(256, 0xab).toString('base64') }] }],
    ['a missing key_ID', { keys: [{ key: key32 }] }],
    ['a key_ID that is no UUID', { keys: [{ key_ID: 'key-1', key: key32 }] }],
    ['a key that is a number', { keys: [{ key_ID: id, key: 42 }] }],
    ['URL-safe Base64', { keys: [{ key_ID: id, key: Buffer.alloc(32, 0xfb).toString('base64url') + '=' }] }],
    [
      'Base64 with a line break',
      { keys: [{ key_ID: id, key: `${key32.slice(0, 20)}\n${key32.slice(20)}` }] },
    ],
    ['Base64 without padding', { keys: [{ key_ID: id, key: key32.replace(/=+$/, '') }] }],
    ['Base64 with garbage', { keys: [{ key_ID: id, key: `${key32.slice(0, 40)}!!` }] }],
  ];
  it.each(cases)('enc_keys: %s', async (_name, body) => {
    kme.handler = (_req, res) => sendJson(res, 200, body);
    const c = client();
    const e = await failure(c.getKeys('sae-b', { number: 1, size: 256 }));
    expect(e).toMatchObject({ kind: 'protocol', retryable: false, status: 200 });
    expect(e.message).not.toContain(key32);
    expect(e.message).not.toContain(key32.slice(0, 20));
    expect(kme.requests).toHaveLength(1);
    expect(c.health().up).toBe(false);
  });

  it('duplicate key_IDs in one container', async () => {
    kme.handler = (_req, res) =>
      sendJson(res, 200, {
        keys: [
          { key_ID: id, key: key32 },
          { key_ID: id.toUpperCase(), key: key32 },
        ],
      });
    const e = await failure(client().getKeys('sae-b', { number: 2, size: 256 }));
    expect(e.message).toMatch(/repeats key_ID/);
  });

  it('dec_keys returning other IDs than asked', async () => {
    const [asked, other] = makeKeys(2);
    kme.handler = (_req, res) => sendJson(res, 200, { keys: [other] });
    const e = await failure(client().getKeysById('sae-a', [asked!.key_ID]));
    expect(e).toMatchObject({ kind: 'protocol', operation: 'dec_keys' });
    expect(e.message).toContain(asked!.key_ID);
  });

  it.each([
    ['a missing field', statusBody({ max_key_count: undefined })],
    ['a string count', statusBody({ stored_key_count: '12' })],
    ['a negative size', statusBody({ key_size: -256 })],
    ['another KME as source_KME_ID', statusBody({ source_KME_ID: 'kme-z' })],
    ['another SAE as master_SAE_ID', statusBody({ master_SAE_ID: 'sae-z' })],
    ['another slave', statusBody({ slave_SAE_ID: 'sae-z' })],
  ])('status with %s', async (_name, body) => {
    kme.handler = (_req, res) => sendJson(res, 200, body);
    const e = await failure(client().status('sae-b'));
    expect(e).toMatchObject({ kind: 'protocol', operation: 'status' });
  });

  it('a response body above maxResponseBytes', async () => {
    kme.handler = (_req, res) => sendJson(res, 200, { keys: makeKeys(100) });
    const e = await failure(client({ maxResponseBytes: 1024 }).getKeys('sae-b', { number: 100, size: 256 }));
    expect(e.kind).toBe('protocol');
    expect(e.message).toMatch(/exceeds 1024 bytes/);
  });
});

describe('TLS: pinned CA and KME ID', () => {
  it('a KME certificate for another KME ID → tls, nothing sent', async () => {
    const other = await startOther({ ca, ...kmeB });
    try {
      const e = await failure(client({ kmeUrl: other.url }).status('sae-b'));
      expect(e).toMatchObject({ kind: 'tls', retryable: false });
      expect(e.message).toMatch(/expected KME ID "kme-a"/);
      expect(other.requests).toHaveLength(0);
    } finally {
      await other.close();
    }
  });

  it('the right KME ID on a certificate from another CA → tls', async () => {
    const other = await startOther({ ca, cert: foreignKmeA.cert, key: foreignKmeA.key });
    try {
      const e = await failure(client({ kmeUrl: other.url }).status('sae-b'));
      expect(e.kind).toBe('tls');
      expect(other.requests).toHaveLength(0);
    } finally {
      await other.close();
    }
  });

  it('a client that pins the wrong CA → tls', async () => {
    const e = await failure(client({ ca: foreignKmeA.ca }).status('sae-b'));
    expect(e.kind).toBe('tls');
    expect(kme.requests).toHaveLength(0);
  });

  it('a client certificate the KME does not trust is refused', async () => {
    kme.handler = (_req, res) => sendJson(res, 200, statusBody());
    const e = await failure(client({ ...foreignSae, retries: 0 }).status('sae-b'));
    // Under TLS 1.3 the client's handshake completes before the KME checks the client
    // certificate; a Node KME then drops the socket without an alert, which looks like a reset.
    expect(['tls', 'network']).toContain(e.kind);
    expect(kme.requests).toHaveLength(0);
  });

  it('never opts out of verification', async () => {
    const source = await readFile(new URL('../../drivers/qkd/etsi014/client.ts', import.meta.url), 'utf8');
    expect(source).not.toMatch(/rejectUnauthorized:\s*false/);
    expect(source).toMatch(/rejectUnauthorized:\s*true/);
  });
});

describe('timeouts, retries, cancellation', () => {
  it('a hung KME → timeout at the deadline', async () => {
    kme.handler = () => {};
    const started = Date.now();
    const e = await failure(client({ timeoutMs: 300 }).status('sae-b'));
    const took = Date.now() - started;
    expect(e).toMatchObject({ kind: 'timeout', retryable: true });
    expect(took).toBeGreaterThanOrEqual(280);
    expect(took).toBeLessThan(1500);
  });

  it('status: 503 then 504 then success → retried, one result', async () => {
    let n = 0;
    kme.handler = (_req, res) => {
      n++;
      if (n === 1) sendJson(res, 503, { message: 'busy' });
      else if (n === 2) sendJson(res, 504, { detail: 'upstream timeout' });
      else sendJson(res, 200, statusBody());
    };
    const c = client();
    expect((await c.status('sae-b')).sourceKmeId).toBe('kme-a');
    expect(kme.requests).toHaveLength(3);
    expect(c.health()).toMatchObject({ up: true, counters: { requests: 3, failures: 2 } });
  });

  it('enc_keys: 503 (insufficient key material) then success → retried', async () => {
    let n = 0;
    kme.handler = (_req, res) => {
      if (n++ === 0)
        sendJson(res, 503, { message: 'insufficient key material', details: [{ stored_key_count: 0 }] });
      else sendJson(res, 200, { keys: makeKeys(2) });
    };
    const keys = await client().getKeys('sae-b', { number: 2, size: 256 });
    expect(keys).toHaveLength(2);
    expect(kme.requests).toHaveLength(2);
  });

  it('enc_keys: a per-call retries: 0 (a caller with a fallback) is not retried on 503', async () => {
    kme.handler = (_req, res) =>
      sendJson(res, 503, { message: 'insufficient key material', details: [{ stored_key_count: 0 }] });
    const e = await failure(client().getKeys('sae-b', { number: 1, size: 256 }, { retries: 0 }));
    expect(e).toMatchObject({ kind: 'unavailable' });
    expect(kme.requests).toHaveLength(1);
  });

  it.each([400, 401, 404, 422, 500])('no retry on %i', async (status) => {
    kme.handler = (_req, res) => sendJson(res, status, { message: 'no' });
    await failure(client().status('sae-b'));
    await failure(client().getKeys('sae-b', { number: 1, size: 256 }));
    expect(kme.requests).toHaveLength(2);
  });

  it('enc_keys and dec_keys: no retry on 504 or after a timeout, as the KME may have acted', async () => {
    kme.handler = (_req, res) => sendJson(res, 504, { message: 'gateway timeout' });
    const e504 = await failure(client().getKeys('sae-b', { number: 1, size: 256 }));
    expect(e504).toMatchObject({ kind: 'gateway-timeout', maybeProcessed: true });
    expect(kme.requests).toHaveLength(1);

    kme.reset();
    let n = 0;
    const keys = makeKeys(1);
    kme.handler = (_req, res) => {
      if (n++ === 0) return; // hang: the KME may have delivered, but the answer never arrives
      sendJson(res, 200, { keys });
    };
    const timeout = await failure(client({ timeoutMs: 300 }).getKeysById('sae-a', [keys[0]!.key_ID]));
    expect(timeout).toMatchObject({ kind: 'timeout', maybeProcessed: true });
    expect(kme.requests).toHaveLength(1);
  });

  it('enc_keys: connection refused is retried (nothing reached the KME), then reported', async () => {
    const port = await closedPort();
    const c = client({ kmeUrl: `https://127.0.0.1:${port}`, retries: 2 });
    const e = await failure(c.getKeys('sae-b', { number: 1, size: 256 }));
    expect(e).toMatchObject({ kind: 'network', retryable: true });
    expect(e.maybeProcessed).toBeUndefined();
    expect(c.health()).toMatchObject({ up: false, counters: { requests: 3, failures: 3 } });
    expect(c.health().lastError).toMatchObject({ kind: 'network' });
  });

  it('one deadline covers all retries', async () => {
    kme.handler = (_req, res) => sendJson(res, 503, { message: 'busy' });
    const started = Date.now();
    const e = await failure(client({ timeoutMs: 400, retries: 50, backoffMs: 50 }).status('sae-b'));
    expect(e.kind).toBe('unavailable');
    expect(Date.now() - started).toBeLessThan(800);
    expect(kme.requests.length).toBeGreaterThan(1);
    expect(kme.requests.length).toBeLessThan(10);
  });

  it('honours Retry-After within the deadline', async () => {
    kme.handler = (_req, res) => sendJson(res, 503, { message: 'busy' }, { 'retry-after': '5' });
    const started = Date.now();
    await failure(client({ timeoutMs: 1000 }).status('sae-b'));
    // a 5 s wait does not fit in 1 s: give up at once instead of sleeping
    expect(Date.now() - started).toBeLessThan(500);
    expect(kme.requests).toHaveLength(1);
  });

  it('an AbortSignal cancels a pending call', async () => {
    kme.handler = () => {};
    const controller = new AbortController();
    const pending = client().status('sae-b', { signal: controller.signal });
    setTimeout(() => controller.abort(), 50).unref();
    const e = await failure(pending);
    expect(e).toMatchObject({ kind: 'canceled', retryable: false });
    const already = await failure(client().status('sae-b', { signal: AbortSignal.abort() }));
    expect(already.kind).toBe('canceled');
  });

  it('close() cancels pending calls and later ones; idempotent', async () => {
    kme.handler = () => {};
    const c = client();
    const pending = c.getKeys('sae-b', { number: 1, size: 256 });
    await new Promise((r) => setTimeout(r, 50));
    await c.close();
    await c.close();
    // The request had reached the KME: it may have handed out the keys.
    expect(await failure(pending)).toMatchObject({ kind: 'canceled', maybeProcessed: true });
    expect((await failure(c.status('sae-b'))).kind).toBe('canceled');
    expect(c.health().counters.failures).toBe(0);
  });

  it('rejects caller mistakes before sending anything', async () => {
    const c = client();
    await expect(c.getKeys('sae-b', { size: 100 })).rejects.toThrow(RangeError);
    await expect(c.getKeys('sae-b', { number: 0 })).rejects.toThrow(RangeError);
    await expect(c.getKeys('', { number: 1 })).rejects.toThrow(TypeError);
    await expect(c.getKeysById('sae-a', [])).rejects.toThrow(TypeError);
    await expect(c.getKeysById('sae-a', ['not-a-uuid'])).rejects.toThrow(RangeError);
    const id = makeKeys(1)[0]!.key_ID;
    await expect(c.getKeysById('sae-a', [id, id])).rejects.toThrow(RangeError);
    expect(() => client({ kmeUrl: 'http://127.0.0.1:1' })).toThrow(RangeError);
    expect(kme.requests).toHaveLength(0);
  });
});

describe('connection reuse', () => {
  it('sequential calls share one TLS session; concurrent ones stay within maxSockets', async () => {
    kme.handler = (_req, res) => sendJson(res, 200, statusBody());
    const c = client({ maxSockets: 4 });
    for (let i = 0; i < 20; i++) await c.status('sae-b');
    expect(kme.requests).toHaveLength(20);
    expect(kme.tlsSessions).toBe(1);
    await Promise.all(Array.from({ length: 40 }, () => c.status('sae-b')));
    expect(kme.requests).toHaveLength(60);
    expect(kme.tlsSessions).toBeLessThanOrEqual(4);
  });
});

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('idle connections', () => {
  it('drops pooled connections idle longer than idleSocketMs, so none is reused while the KME closes it', async () => {
    kme.handler = (_req, res) => sendJson(res, 200, statusBody());
    const c = client({ idleSocketMs: 100 });
    await c.status('sae-b');
    await new Promise((r) => setTimeout(r, 300));
    await c.status('sae-b');
    expect(kme.tlsSessions).toBe(2);
  });

  it('a connection the KME drops mid-response → network; enc_keys not retried, maybeProcessed', async () => {
    kme.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"keys":[{"key_ID":"');
      setTimeout(() => res.socket?.destroy(), 20).unref();
    };
    const e = await failure(client().getKeys('sae-b', { number: 1, size: 256 }));
    expect(e).toMatchObject({ kind: 'network', maybeProcessed: true });
    expect(kme.requests).toHaveLength(1);
  });
});

describe('KME identity check', () => {
  const cert = (cn: string | string[] | undefined, san?: string) =>
    ({ subject: cn === undefined ? {} : { CN: cn }, subjectaltname: san }) as unknown as PeerCertificate;

  it('reads CN and SAN DNS/URI names, including quoted SAN entries; not IP addresses', () => {
    expect(
      certificateNames(cert('kme-a', 'DNS:localhost, IP Address:127.0.0.1, URI:"urn:kme:a, b"')),
    ).toEqual(['kme-a', 'localhost', 'urn:kme:a, b']);
    expect(certificateNames(cert(['x', 'y']))).toEqual(['x', 'y']);
  });

  it('matches the KME ID exactly: no wildcards, no prefixes, no IPs', () => {
    const check = kmeIdentityCheck('kme-a');
    expect(check('127.0.0.1', cert('kme-a'))).toBeUndefined();
    expect(check('127.0.0.1', cert('other', 'DNS:kme-a'))).toBeUndefined();
    expect(check('127.0.0.1', cert('*', 'DNS:*'))).toBeInstanceOf(Error);
    expect(check('127.0.0.1', cert('kme-a2'))).toBeInstanceOf(Error);
    expect(check('kme-a', cert(undefined, 'IP Address:127.0.0.1'))).toMatchObject({ code: KME_ID_MISMATCH });
  });
});
