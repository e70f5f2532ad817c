/**
 * The KME simulator pair against ETSI GS QKD 014 v1.1.1 (§5 routes, §6 formats, §5 error
 * codes and messages) and qkm's choices in ../shared/ETSI-014.md, over real HTTPS on loopback
 * with real certificates: every request is a full mutual-TLS handshake.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  generateForeignCert,
  generateSimCerts,
  INTERNAL_ROUTES,
  issueSimCert,
  type KmePair,
  ManualKeySupply,
  startKmePair,
} from '../../simulators/kme/index.js';
import { type Answer, call, type Identity, identity } from './kme-test-client.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NOT_FOUND = 'one or more keys specified are not found on KME';

interface Container {
  keys: Array<{ key_ID: string; key: string }>;
}

let dir: string;
let pair: KmePair;
let supply: ManualKeySupply;
let saeA: Identity;
let saeB: Identity;
let saeC: Identity;
let saeZ: Identity;
let foreign: Identity;
let kmeBAsClient: Identity;

const A = (path: string) => `${pair.a.url}${path}`;
const B = (path: string) => `${pair.b.url}${path}`;

function container(answer: Answer): Container {
  expect(answer.status, answer.text).toBe(200);
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  return answer.json as Container;
}

/** Base64 that decodes to exactly `bytes` bytes and is canonical standard Base64 (RFC 4648 §4). */
function expectKey(key: string, bytes: number): Buffer {
  expect(key).toMatch(/^[A-Za-z0-9+/]*={0,2}$/);
  const raw = Buffer.from(key, 'base64');
  expect(raw.length).toBe(bytes);
  expect(raw.toString('base64')).toBe(key);
  return raw;
}

async function stored(url: string, who: Identity, slave: string): Promise<number> {
  const answer = await call(url, who, `/api/v1/keys/${slave}/status`);
  expect(answer.status).toBe(200);
  return (answer.json as { stored_key_count: number }).stored_key_count;
}

async function expectError(answer: Promise<Answer>, status: 400 | 404 | 405 | 503, message: string | RegExp) {
  const a = await answer;
  expect(a.status, a.text).toBe(status);
  expect(a.headers['content-type']).toMatch(/^application\/json/);
  const body = a.json as { message: string };
  if (typeof message === 'string') expect(body.message).toBe(message);
  else expect(body.message).toMatch(message);
  return a.json as { message: string; details?: Record<string, unknown>[] };
}

async function expectUnauthorized(answer: Promise<Answer>) {
  const a = await answer;
  expect(a.status).toBe(401);
  expect(a.text).toBe('');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-kme-api-'));
  await generateSimCerts(dir, { saes: ['sae-a', 'sae-b', 'sae-c'] });
  await issueSimCert(dir, 'sae-z'); // right CA, but no KME serves it
  const f = await generateForeignCert(join(dir, 'foreign'), 'sae-a'); // right name, wrong CA
  saeA = identity(dir, 'sae-a');
  saeB = identity(dir, 'sae-b');
  saeC = identity(dir, 'sae-c');
  saeZ = identity(dir, 'sae-z');
  kmeBAsClient = identity(dir, 'kme-b');
  foreign = { ...identity(join(dir, 'foreign'), 'sae-a', f.ca), ca: saeA.ca };
  supply = new ManualKeySupply();
  pair = await startKmePair({
    certsDir: dir,
    supply,
    limits: { maxKeyCount: 64, maxKeyPerRequest: 16 },
    a: { port: 0 },
    b: { port: 0, saes: ['sae-b', 'sae-c'] },
  });
});

afterAll(async () => {
  await pair?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  // Start every test from empty pools; both hold the same units in the same order.
  pair.a.core.pool.takeOldest(pair.a.core.pool.storedCount);
  pair.b.core.pool.takeOldest(pair.b.core.pool.storedCount);
});

describe('Get status (§5.2, §6.1)', () => {
  it('answers the Status of the link, caller as master, with every field of §6.1', async () => {
    supply.push(7);
    const answer = await call(pair.a.url, saeA, '/api/v1/keys/sae-b/status');
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({
      source_KME_ID: 'kme-a',
      target_KME_ID: 'kme-b',
      master_SAE_ID: 'sae-a',
      slave_SAE_ID: 'sae-b',
      key_size: 256,
      stored_key_count: 7,
      max_key_count: 64,
      max_key_per_request: 16,
      max_key_size: 8192,
      min_key_size: 64,
      max_SAE_ID_count: 0,
    });
  });

  it('answers from the other side with the roles swapped', async () => {
    supply.push(2);
    const answer = await call(pair.b.url, saeC, '/api/v1/keys/sae-a/status');
    expect(answer.json).toMatchObject({
      source_KME_ID: 'kme-b',
      target_KME_ID: 'kme-a',
      master_SAE_ID: 'sae-c',
      slave_SAE_ID: 'sae-a',
      stored_key_count: 2,
    });
  });

  it('refuses an unknown slave SAE with 400 (qkm choice)', async () => {
    await expectError(call(pair.a.url, saeA, '/api/v1/keys/sae-nobody/status'), 400, 'unknown slave_SAE_ID');
    // An SAE of the same KME is not a slave across this link either.
    await expectError(call(pair.b.url, saeB, '/api/v1/keys/sae-c/status'), 400, 'unknown slave_SAE_ID');
  });
});

describe('Get key (§5.3) and Get key with key IDs (§5.4)', () => {
  it('POST enc_keys gives the link keys; the slave gets the same keys by ID, once', async () => {
    const link = supply.push(5);
    const got = container(
      await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { number: 3 } }),
    );
    expect(got.keys).toHaveLength(3);
    // Oldest first, with the link's own UUIDs and bytes (256-bit keys are whole link keys).
    got.keys.forEach((k, i) => {
      expect(k.key_ID).toMatch(UUID);
      expect(k.key_ID).toBe(link[i]!.keyId);
      expect(expectKey(k.key, 32).equals(Buffer.from(link[i]!.key))).toBe(true);
    });
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(2);
    expect(await stored(pair.b.url, saeB, 'sae-a')).toBe(2);

    const fetched = container(
      await call(pair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', {
        body: { key_IDs: got.keys.map((k) => ({ key_ID: k.key_ID })) },
      }),
    );
    expect(fetched).toEqual(got);
    await expectError(
      call(pair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', {
        body: { key_IDs: [{ key_ID: got.keys[0]!.key_ID }] },
      }),
      400,
      NOT_FOUND,
    );
    // Fetching did not touch the pools.
    expect(await stored(pair.b.url, saeB, 'sae-a')).toBe(2);
  });

  it('GET enc_keys?number&size and GET dec_keys?key_ID give the same keys', async () => {
    supply.push(8);
    const got = container(await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys?number=2&size=512'));
    expect(got.keys).toHaveLength(2);
    for (const k of got.keys) {
      expectKey(k.key, 64);
      const one = container(
        await call(pair.b.url, saeB, `/api/v1/keys/sae-a/dec_keys?key_ID=${encodeURIComponent(k.key_ID)}`),
      );
      expect(one.keys).toEqual([k]);
    }
    // A 512-bit key takes two 256-bit link keys.
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(4);
    expect(await stored(pair.b.url, saeB, 'sae-a')).toBe(4);
  });

  it('GET enc_keys with no query gives one key of key_size', async () => {
    supply.push(1);
    const got = container(await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys'));
    expect(got.keys).toHaveLength(1);
    expectKey(got.keys[0]!.key, 32);
  });

  it('composes larger keys from several link keys and cuts smaller ones, with fresh random IDs', async () => {
    const link = supply.push(4);
    const big = container(
      await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { size: 768 } }),
    );
    const raw = expectKey(big.keys[0]!.key, 96);
    expect(raw.equals(Buffer.concat(link.slice(0, 3).map((k) => Buffer.from(k.key))))).toBe(true);
    const small = container(
      await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { size: 64 } }),
    );
    expect(expectKey(small.keys[0]!.key, 8).equals(Buffer.from(link[3]!.key).subarray(0, 8))).toBe(true);
    const linkIds = new Set(link.map((k) => k.keyId));
    for (const k of [...big.keys, ...small.keys]) {
      expect(k.key_ID).toMatch(UUID);
      expect(linkIds.has(k.key_ID)).toBe(false);
    }
    const fetched = container(
      await call(pair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', {
        body: { key_IDs: [{ key_ID: big.keys[0]!.key_ID }, { key_ID: small.keys[0]!.key_ID }] },
      }),
    );
    expect(fetched.keys).toEqual([...big.keys, ...small.keys]);
  });

  it('works in the other direction: master on kme-b, slave on kme-a', async () => {
    supply.push(6);
    const got = container(
      await call(pair.b.url, saeB, '/api/v1/keys/sae-a/enc_keys', { body: { number: 4 } }),
    );
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(2);
    expect(await stored(pair.b.url, saeB, 'sae-a')).toBe(2);
    const fetched = container(
      await call(pair.a.url, saeA, '/api/v1/keys/sae-b/dec_keys', {
        body: { key_IDs: got.keys.map((k) => ({ key_ID: k.key_ID })) },
      }),
    );
    expect(fetched).toEqual(got);
  });

  it('never gives a key to two masters when both sides ask at once', async () => {
    supply.push(40);
    const calls = Array.from({ length: 20 }, (_, i) =>
      i % 2 === 0
        ? call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { number: 2 } })
        : call(pair.b.url, saeB, '/api/v1/keys/sae-a/enc_keys', { body: { number: 2 } }),
    );
    const answers = (await Promise.all(calls)).map(container);
    const ids = answers.flatMap((c) => c.keys.map((k) => k.key_ID));
    expect(new Set(ids).size).toBe(40);
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(0);
    // Each slave gets exactly the keys its masters were given.
    for (const [i, c] of answers.entries()) {
      const [url, who, master] = i % 2 === 0 ? [pair.b.url, saeB, 'sae-a'] : [pair.a.url, saeA, 'sae-b'];
      const fetched = container(
        await call(url, who, `/api/v1/keys/${master}/dec_keys`, {
          body: { key_IDs: c.keys.map((k) => ({ key_ID: k.key_ID })) },
        }),
      );
      expect(fetched).toEqual(c);
    }
  });

  it('a second enc_keys never discards keys the slave has not fetched', async () => {
    supply.push(6);
    const first = container(
      await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { number: 3 } }),
    );
    const second = container(
      await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { number: 3 } }),
    );
    const all = [...first.keys, ...second.keys];
    const fetched = container(
      await call(pair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', {
        body: { key_IDs: all.map((k) => ({ key_ID: k.key_ID })) },
      }),
    );
    expect(fetched.keys).toEqual(all);
  });

  it('accepts an empty Key request (all defaults), with or without Content-Type', async () => {
    supply.push(2);
    const withType = await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
      method: 'POST',
      rawBody: '',
      headers: { 'content-type': 'application/json' },
    });
    expect(container(withType).keys).toHaveLength(1);
    const bare = await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { method: 'POST' });
    expect(container(bare).keys).toHaveLength(1);
  });

  it('accepts and ignores extension_optional', async () => {
    supply.push(1);
    const got = await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
      body: { extension_optional: [{ ext_vendor_route: 'any' }] },
    });
    expect(container(got).keys).toHaveLength(1);
  });
});

describe('errors (§5: 400 with Error, 401 without body, 503 with Error; qkm choices)', () => {
  it('size not a multiple of 8 → 400 with the standard message (POST and GET)', async () => {
    supply.push(4);
    await expectError(
      call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { size: 100 } }),
      400,
      'size shall be a multiple of 8',
    );
    await expectError(
      call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys?size=257'),
      400,
      'size shall be a multiple of 8',
    );
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(4);
  });

  it('size outside [min_key_size, max_key_size] → 400 naming the limits', async () => {
    for (const size of [0, 32, 8200, 16384]) {
      const body = await expectError(
        call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { size } }),
        400,
        'size shall be between min_key_size (64) and max_key_size (8192)',
      );
      expect(body.details).toEqual([{ min_key_size: 64 }, { max_key_size: 8192 }]);
    }
  });

  it('number above max_key_per_request → 400 naming the limit; a non-positive or non-integer number → 400', async () => {
    supply.push(20);
    const body = await expectError(
      call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { number: 17 } }),
      400,
      'number shall not exceed max_key_per_request (16)',
    );
    expect(body.details).toEqual([{ max_key_per_request: 16 }]);
    await expectError(
      call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys?number=17'),
      400,
      /max_key_per_request \(16\)/,
    );
    for (const number of [0, -1, 1.5, '2', null]) {
      await expectError(
        call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { number } }),
        400,
        'number shall be a positive integer',
      );
    }
    await expectError(call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys?number=two'), 400, /number/);
    await expectError(call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys?number=1&number=2'), 400, /number/);
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(20);
  });

  it('fewer keys stored than asked → 503 insufficient key material with the stored count, nothing taken', async () => {
    supply.push(3);
    for (const [url, who, slave] of [
      [pair.a.url, saeA, 'sae-b'],
      [pair.b.url, saeB, 'sae-a'],
    ] as const) {
      const body = await expectError(
        call(url, who, `/api/v1/keys/${slave}/enc_keys`, { body: { number: 4 } }),
        503,
        'insufficient key material',
      );
      expect(body.details).toEqual([{ stored_key_count: 3 }, { requested_key_count: 4 }]);
      // A 1024-bit key needs 4 link keys: also refused whole.
      await expectError(
        call(url, who, `/api/v1/keys/${slave}/enc_keys?size=1024`),
        503,
        'insufficient key material',
      );
    }
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(3);
    expect(await stored(pair.b.url, saeB, 'sae-a')).toBe(3);
  });

  it('an unsupported extension_mandatory → 400 with the standard message', async () => {
    supply.push(1);
    const body = await expectError(
      call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
        body: {
          number: 1,
          extension_mandatory: [{ abc_route_type: 'direct' }, { abc_transfer_method: 'qkd' }],
        },
      }),
      400,
      'not all extension_mandatory parameters are supported',
    );
    expect(body.details).toEqual([{ unsupported: 'abc_route_type' }, { unsupported: 'abc_transfer_method' }]);
    await expectError(
      call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { extension_mandatory: 'x' } }),
      400,
      /extension_mandatory/,
    );
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(1);
  });

  it('malformed JSON → 400 with an Error body', async () => {
    for (const rawBody of ['{"number":', '{number: 1}', '[1,2', 'null x']) {
      await expectError(
        call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
          method: 'POST',
          rawBody,
          headers: { 'content-type': 'application/json' },
        }),
        400,
        'request body is not valid JSON',
      );
    }
    await expectError(
      call(pair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', {
        method: 'POST',
        rawBody: '{"key_IDs": [',
        headers: { 'content-type': 'application/json' },
      }),
      400,
      'request body is not valid JSON',
    );
    // Valid JSON of the wrong shape is a 400 too.
    await expectError(
      call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: [1] }),
      400,
      /Key request/,
    );
  });

  it('a body that is not application/json → 400 with an Error body (qkm choice: 400, not 415)', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      await expectError(
        call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
          method: 'POST',
          rawBody: '{"number":1}',
          headers: { 'content-type': type },
        }),
        400,
        'Content-Type shall be application/json',
      );
    }
    supply.push(1);
    // Media type parameters are fine.
    const ok = await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
      method: 'POST',
      rawBody: '{"number":1}',
      headers: { 'content-type': 'application/json; charset=utf-8' },
    });
    expect(container(ok).keys).toHaveLength(1);
  });

  it('additional_slave_SAE_IDs beyond max_SAE_ID_count (0: no multicast) → 400; an empty list is fine', async () => {
    supply.push(1);
    const body = await expectError(
      call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
        body: { additional_slave_SAE_IDs: ['sae-c'] },
      }),
      400,
      'additional_slave_SAE_IDs shall not exceed max_SAE_ID_count (0)',
    );
    expect(body.details).toEqual([{ max_SAE_ID_count: 0 }]);
    const ok = await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
      body: { additional_slave_SAE_IDs: [] },
    });
    expect(container(ok).keys).toHaveLength(1);
  });

  it('enc_keys for an unknown slave → 400', async () => {
    supply.push(1);
    await expectError(
      call(pair.a.url, saeA, '/api/v1/keys/sae-x/enc_keys', { body: {} }),
      400,
      'unknown slave_SAE_ID',
    );
    await expectError(call(pair.a.url, saeA, '/api/v1/keys/sae-x/enc_keys'), 400, 'unknown slave_SAE_ID');
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(1);
  });

  it('dec_keys by an SAE that was not the slave → 401 without body; the key stays for its slave', async () => {
    supply.push(2);
    const got = container(
      await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { number: 2 } }),
    );
    const ids = { key_IDs: got.keys.map((k) => ({ key_ID: k.key_ID })) };
    // sae-c is served by the same KME as the slave sae-b, but was not named in the request.
    await expectUnauthorized(call(pair.b.url, saeC, '/api/v1/keys/sae-a/dec_keys', { body: ids }));
    await expectUnauthorized(
      call(pair.b.url, saeC, `/api/v1/keys/sae-a/dec_keys?key_ID=${got.keys[0]!.key_ID}`),
    );
    // The master asking its own KME for the keys it was given: no such keys there.
    await expectError(call(pair.a.url, saeA, '/api/v1/keys/sae-b/dec_keys', { body: ids }), 400, NOT_FOUND);
    expect(container(await call(pair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', { body: ids }))).toEqual(
      got,
    );
  });

  it('dec_keys is all-or-nothing: one unknown ID → 400 and the known keys stay', async () => {
    supply.push(1);
    const got = container(await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys'));
    const known = got.keys[0]!.key_ID;
    await expectError(
      call(pair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', {
        body: { key_IDs: [{ key_ID: known }, { key_ID: '00000000-0000-4000-8000-000000000000' }] },
      }),
      400,
      NOT_FOUND,
    );
    // Under the wrong master it is not found either.
    await expectError(
      call(pair.b.url, saeB, `/api/v1/keys/sae-b/dec_keys?key_ID=${known}`),
      400,
      'unknown master_SAE_ID',
    );
    expect(container(await call(pair.b.url, saeB, `/api/v1/keys/sae-a/dec_keys?key_ID=${known}`))).toEqual(
      got,
    );
  });

  it('dec_keys with a malformed Key IDs body or query → 400', async () => {
    const path = '/api/v1/keys/sae-a/dec_keys';
    await expectError(call(pair.b.url, saeB, path, { body: {} }), 400, 'key_IDs shall be a non-empty array');
    await expectError(
      call(pair.b.url, saeB, path, { body: { key_IDs: [] } }),
      400,
      'key_IDs shall be a non-empty array',
    );
    await expectError(call(pair.b.url, saeB, path, { body: { key_IDs: ['x'] } }), 400, /key_ID string/);
    await expectError(call(pair.b.url, saeB, path, { method: 'POST' }), 400, /key_IDs/);
    const dup = '00000000-0000-4000-8000-000000000001';
    await expectError(
      call(pair.b.url, saeB, path, { body: { key_IDs: [{ key_ID: dup }, { key_ID: dup }] } }),
      400,
      'key_IDs contains duplicates',
    );
    const many = Array.from({ length: 17 }, (_, i) => ({
      key_ID: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    }));
    await expectError(
      call(pair.b.url, saeB, path, { body: { key_IDs: many } }),
      400,
      /max_key_per_request \(16\)/,
    );
    await expectError(call(pair.b.url, saeB, path), 400, 'exactly one key_ID query parameter is required');
    await expectError(
      call(pair.b.url, saeB, `${path}?key_ID=${dup}&key_ID=${dup}`),
      400,
      /exactly one key_ID/,
    );
  });

  it('a client certificate from another CA fails the TLS handshake', async () => {
    await expect(call(pair.a.url, foreign, '/api/v1/keys/sae-b/status')).rejects.toThrow();
  });

  it('a client without a certificate fails the TLS handshake', async () => {
    await expect(call(pair.a.url, { ca: saeA.ca }, '/api/v1/keys/sae-b/status')).rejects.toThrow();
  });

  it('presents a KME certificate naming the KME ID, valid only under the pinned CA', async () => {
    const socket = connect({
      host: '127.0.0.1',
      port: pair.b.port,
      ca: saeB.ca,
      cert: saeB.cert,
      key: saeB.key,
    });
    await once(socket, 'secureConnect');
    expect(socket.authorized).toBe(true);
    expect(socket.getPeerCertificate().subject.CN).toBe('kme-b');
    expect(['TLSv1.2', 'TLSv1.3']).toContain(socket.getProtocol());
    socket.destroy();
    // A client pinning another CA refuses the KME.
    const otherCa = identity(join(dir, 'foreign'), 'sae-a', join(dir, 'foreign', 'foreign-ca.pem')).ca;
    await expect(call(pair.a.url, { ...saeA, ca: otherCa }, '/api/v1/keys/sae-b/status')).rejects.toThrow(
      /certificate/,
    );
  });

  it('a certificate from the right CA naming an SAE this KME does not serve → 401 without body everywhere', async () => {
    supply.push(1);
    for (const path of [
      '/api/v1/keys/sae-b/status',
      '/api/v1/keys/sae-b/enc_keys',
      '/api/v1/keys/sae-a/dec_keys?key_ID=x',
      '/nowhere',
    ]) {
      await expectUnauthorized(call(pair.a.url, saeZ, path));
    }
    await expectUnauthorized(call(pair.a.url, saeZ, '/api/v1/keys/sae-b/enc_keys', { body: { number: 1 } }));
    // An SAE of the other KME, and a KME certificate, are not SAEs of this KME either.
    await expectUnauthorized(call(pair.a.url, saeB, '/api/v1/keys/sae-a/status'));
    await expectUnauthorized(call(pair.a.url, kmeBAsClient, '/api/v1/keys/sae-b/status'));
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(1);
  });

  it('unknown routes → 404 with an Error body (qkm choice)', async () => {
    await expectError(call(pair.a.url, saeA, '/api/v1/keys/sae-b/other'), 404, 'no such route');
    await expectError(call(pair.a.url, saeA, '/api/v2/keys/sae-b/status'), 404, 'no such route');
  });

  it('a known route with another method → 405 with Allow and an Error body', async () => {
    for (const [path, method, allow] of [
      ['/api/v1/keys/sae-b/status', 'DELETE', 'GET'],
      ['/api/v1/keys/sae-b/status', 'POST', 'GET'],
      ['/api/v1/keys/sae-b/enc_keys', 'PUT', 'GET, POST'],
      ['/api/v1/keys/sae-a/dec_keys?key_ID=x', 'DELETE', 'GET, POST'],
    ] as const) {
      const answer = call(pair.a.url, saeA, path, {
        method,
        ...(method === 'DELETE' ? {} : { body: {} }),
      });
      const a = await answer;
      expect(a.headers.allow, `${method} ${path}`).toBe(allow);
      await expectError(Promise.resolve(a), 405, 'method not allowed on this route');
    }
  });
});

describe('listener separation', () => {
  it('internal and admin routes do not exist on the SAE port (404)', async () => {
    for (const path of INTERNAL_ROUTES) {
      for (const url of [pair.a.url, pair.b.url]) {
        const who = url === pair.a.url ? saeA : saeB;
        await expectError(call(url, who, path), 404, 'no such route');
        await expectError(call(url, who, path, { body: {} }), 404, 'no such route');
      }
    }
  });

  it('the KME-to-KME port answers only the peer KME', async () => {
    await expectUnauthorized(call(pair.a.internalUrl, saeA, '/admin/v1/pool'));
    await expectUnauthorized(call(pair.a.internalUrl, saeB, '/internal/v1/allocate', { body: {} }));
    await expect(call(pair.a.internalUrl, foreign, '/admin/v1/pool')).rejects.toThrow();
    // An SAE cannot open the sync stream either; the peer KME must ask for the upgrade.
    const upgrade = { connection: 'Upgrade', upgrade: 'qkm-kme-sync/1' };
    await expectUnauthorized(call(pair.a.internalUrl, saeA, '/internal/v1/sync', { headers: upgrade }));
    await expectUnauthorized(call(pair.b.internalUrl, saeB, '/internal/v1/sync', { headers: upgrade }));
    expect((await call(pair.a.internalUrl, kmeBAsClient, '/internal/v1/sync')).status).toBe(400);
    // The SAE API does not exist there.
    await expectError(
      call(pair.a.internalUrl, kmeBAsClient, '/api/v1/keys/sae-b/status'),
      404,
      'no such route',
    );
    supply.push(3);
    const pool = await call(pair.a.internalUrl, kmeBAsClient, '/admin/v1/pool');
    expect(pool.status).toBe(200);
    expect(pool.json).toMatchObject({ kme_ID: 'kme-a', role: 'primary', stored_key_count: 3 });
  });
});

describe('pools and capacity', () => {
  // A pair of its own: the shared one holds keys earlier tests left for their slaves.
  let cpair: KmePair;
  let csupply: ManualKeySupply;
  beforeAll(async () => {
    csupply = new ManualKeySupply();
    cpair = await startKmePair({
      certsDir: dir,
      supply: csupply,
      limits: { maxKeyCount: 64 },
      a: { port: 0 },
      b: { port: 0 },
    });
  });
  afterAll(async () => cpair?.stop());

  it('drops link keys beyond max_key_count at both ends alike, and never drops reserved keys', async () => {
    const pair = cpair;
    const supply = csupply;
    const before = pair.feederStats()!;
    const link = supply.push(80);
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(64);
    expect(await stored(pair.b.url, saeB, 'sae-a')).toBe(64);
    const after = pair.feederStats()!;
    expect(after.keysDroppedFull - before.keysDroppedFull).toBe(16);
    for (const k of link.slice(0, 64)) {
      expect(pair.a.core.pool.has(k.keyId) && pair.b.core.pool.has(k.keyId)).toBe(true);
    }
    for (const k of link.slice(64)) {
      expect(pair.a.core.pool.has(k.keyId) || pair.b.core.pool.has(k.keyId)).toBe(false);
    }
    // 10 keys handed to the master stay held for the slave and still take room at kme-b.
    const got = container(
      await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { number: 10 } }),
    );
    supply.push(10);
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(54);
    expect(await stored(pair.b.url, saeB, 'sae-a')).toBe(54);
    const fetched = container(
      await call(pair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', {
        body: { key_IDs: got.keys.map((k) => ({ key_ID: k.key_ID })) },
      }),
    );
    expect(fetched).toEqual(got);
    supply.push(10);
    expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(64);
    expect(await stored(pair.b.url, saeB, 'sae-a')).toBe(64);
  });

  it('stored_key_count goes down by exactly what each request took, on both KMEs', async () => {
    supply.push(30);
    const steps: Array<[string, number]> = [
      ['number=1', 1],
      ['number=3', 3],
      ['size=512', 2],
      ['number=2&size=320', 4],
      ['size=128', 1],
    ];
    let expected = 30;
    for (const [query, units] of steps) {
      container(await call(pair.a.url, saeA, `/api/v1/keys/sae-b/enc_keys?${query}`));
      expected -= units;
      expect(await stored(pair.a.url, saeA, 'sae-b')).toBe(expected);
      expect(await stored(pair.b.url, saeB, 'sae-a')).toBe(expected);
    }
  });
});

describe('multicast (max_SAE_ID_count > 0)', () => {
  let mpair: KmePair;
  let msupply: ManualKeySupply;
  beforeAll(async () => {
    msupply = new ManualKeySupply();
    mpair = await startKmePair({
      certsDir: dir,
      supply: msupply,
      limits: { maxSaeIdCount: 1 },
      a: { port: 0 },
      b: { port: 0, saes: ['sae-b', 'sae-c'] },
    });
  });
  afterAll(async () => mpair?.stop());

  it('gives the same keys to each named slave, once each, and to nobody else', async () => {
    msupply.push(4);
    const status = await call(mpair.a.url, saeA, '/api/v1/keys/sae-b/status');
    expect((status.json as { max_SAE_ID_count: number }).max_SAE_ID_count).toBe(1);
    const got = container(
      await call(mpair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
        body: { number: 2, additional_slave_SAE_IDs: ['sae-c'] },
      }),
    );
    const ids = { key_IDs: got.keys.map((k) => ({ key_ID: k.key_ID })) };
    expect(container(await call(mpair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', { body: ids }))).toEqual(
      got,
    );
    await expectError(call(mpair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', { body: ids }), 400, NOT_FOUND);
    expect(container(await call(mpair.b.url, saeC, '/api/v1/keys/sae-a/dec_keys', { body: ids }))).toEqual(
      got,
    );
    await expectError(call(mpair.b.url, saeC, '/api/v1/keys/sae-a/dec_keys', { body: ids }), 400, NOT_FOUND);
    await expectError(
      call(mpair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
        body: { additional_slave_SAE_IDs: ['sae-c', 'sae-x'] },
      }),
      400,
      'additional_slave_SAE_IDs shall not exceed max_SAE_ID_count (1)',
    );
    await expectError(
      call(mpair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys', {
        body: { additional_slave_SAE_IDs: ['sae-x'] },
      }),
      400,
      'unknown SAE in additional_slave_SAE_IDs',
    );
  });
});

const execFileP = promisify(execFile);
const hasCurl = ['/usr/bin/curl', '/usr/local/bin/curl', '/bin/curl'].some((p) => existsSync(p));

describe.skipIf(!hasCurl)('a third-party client: curl', () => {
  const curl = async (sae: string, url: string, extra: string[] = []) => {
    const args = [
      '-sS',
      '--cacert',
      join(dir, 'ca.pem'),
      '--cert',
      join(dir, `${sae}.pem`),
      '--key',
      join(dir, `${sae}.key`),
    ];
    const { stdout } = await execFileP('curl', [...args, ...extra, url], { timeout: 10_000 });
    return JSON.parse(stdout) as unknown;
  };

  it('reads the status, gets keys (GET and POST) and fetches them by ID on the other side', async () => {
    supply.push(4);
    expect(await curl('sae-a', A('/api/v1/keys/sae-b/status'))).toMatchObject({ stored_key_count: 4 });
    const got = (await curl('sae-a', A('/api/v1/keys/sae-b/enc_keys?number=2&size=256'))) as Container;
    const posted = (await curl('sae-a', A('/api/v1/keys/sae-b/enc_keys'), [
      '-H',
      'Content-Type: application/json',
      '-d',
      '{"number":1,"size":512}',
    ])) as Container;
    expect(got.keys).toHaveLength(2);
    expectKey(posted.keys[0]!.key, 64);
    const one = await curl('sae-b', B(`/api/v1/keys/sae-a/dec_keys?key_ID=${got.keys[0]!.key_ID}`));
    expect(one).toEqual({ keys: [got.keys[0]] });
    const rest = await curl('sae-b', B('/api/v1/keys/sae-a/dec_keys'), [
      '-H',
      'Content-Type: application/json',
      '-d',
      JSON.stringify({ key_IDs: [got.keys[1], posted.keys[0]].map((k) => ({ key_ID: k!.key_ID })) }),
    ]);
    expect(rest).toEqual({ keys: [got.keys[1], posted.keys[0]] });
  });

  it('is refused at the handshake with a certificate from another CA', async () => {
    const args = [
      '-sS',
      '--cacert',
      join(dir, 'ca.pem'),
      '--cert',
      join(dir, 'foreign', 'sae-a.pem'),
      '--key',
      join(dir, 'foreign', 'sae-a.key'),
      A('/api/v1/keys/sae-b/status'),
    ];
    await expect(execFileP('curl', args, { timeout: 10_000 })).rejects.toThrow();
  });
});
