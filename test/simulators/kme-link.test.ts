/**
 * The KME pair fed by the real BB84 LinkKeyGenerator (simulators/bb84/generator.ts), as
 * `qkm sim kme` runs it: the JSON description, keys arriving from the link, an eavesdropped link
 * yielding nothing, and an unthrottled link paused while the pools are full.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateSimCerts, type RunningKmePair, runKmePairFromCerts } from '../../simulators/kme/index.js';
import { call, type Identity, identity } from './kme-test-client.js';

let dir: string;
let saeA: Identity;
let saeB: Identity;
let running: RunningKmePair | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-kme-link-'));
  await generateSimCerts(dir);
  saeA = identity(dir, 'sae-a');
  saeB = identity(dir, 'sae-b');
});

afterEach(async () => {
  await running?.stop();
  running = undefined;
});

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function stored(url: string): Promise<number> {
  const answer = await call(url, saeA, '/api/v1/keys/sae-b/status');
  return (answer.json as { stored_key_count: number }).stored_key_count;
}

/** Polls until `predicate` holds, at most `ms`. */
async function until(predicate: () => Promise<boolean> | boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('runKmePairFromCerts', () => {
  it('describes the running pair as JSON and serves keys from the link at both ends', async () => {
    running = await runKmePairFromCerts({
      certsDir: dir,
      distanceKm: 25,
      ports: { a: 0, b: 0 },
      link: { timeScale: 20 },
    });
    const d = running.description;
    expect(d.kmes.map((k) => [k.id, k.saes, k.role])).toEqual([
      ['kme-a', ['sae-a'], 'primary'],
      ['kme-b', ['sae-b'], 'secondary'],
    ]);
    for (const k of d.kmes) {
      expect(k.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(k.internal_url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(k.internal_url).not.toBe(k.url);
    }
    expect(d.link).toMatchObject({ distance_km: 25, scheme: 'vacuum-weak', key_size: 256 });
    expect(d.link.model_rate_bps).toBeGreaterThan(0);
    expect(d.curl[0]).toBe(
      `curl --cacert ${join(dir, 'ca.pem')} --cert ${join(dir, 'sae-a.pem')} --key ${join(dir, 'sae-a.key')} ${d.kmes[0]!.url}/api/v1/keys/sae-b/status`,
    );
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);

    await until(async () => (await stored(d.kmes[0]!.url)) >= 4, 10_000);
    const got = await call(d.kmes[0]!.url, saeA, '/api/v1/keys/sae-b/enc_keys', { body: { number: 4 } });
    expect(got.status).toBe(200);
    const ids = (got.json as { keys: Array<{ key_ID: string }> }).keys.map((k) => ({ key_ID: k.key_ID }));
    const fetched = await call(d.kmes[1]!.url, saeB, '/api/v1/keys/sae-a/dec_keys', {
      body: { key_IDs: ids },
    });
    expect(fetched.json).toEqual(got.json);
  });

  it('an intercept-resend eavesdropper on every pulse aborts every block: no key reaches the pools', async () => {
    running = await runKmePairFromCerts({
      certsDir: dir,
      distanceKm: 25,
      ports: { a: 0, b: 0 },
      link: { timeScale: 200, eavesdropper: { fraction: 1 } },
    });
    await until(() => running!.generator.stats().blocksAborted >= 3, 10_000);
    expect(await stored(running.pair.a.url)).toBe(0);
    expect(running.pair.feederStats()!.keysAccepted).toBe(0);
  });

  it('an unthrottled link fills both pools to max_key_count, pauses, and resumes when keys are taken', async () => {
    running = await runKmePairFromCerts({
      certsDir: dir,
      distanceKm: 25,
      ports: { a: 0, b: 0 },
      link: { unthrottled: true },
      limits: { maxKeyCount: 200 },
    });
    const { pair } = running;
    await until(() => pair.feeder!.isPaused, 10_000);
    expect(await stored(pair.a.url)).toBe(200);
    expect(pair.b.core.pool.storedCount).toBe(200);
    const got = await call(pair.a.url, saeA, '/api/v1/keys/sae-b/enc_keys?number=100');
    expect(got.status).toBe(200);
    // kme-b still holds those 100 keys for sae-b, so it has no room and the link stays paused.
    await new Promise((r) => setTimeout(r, 50));
    expect(pair.feeder!.isPaused).toBe(true);
    const ids = (got.json as { keys: Array<{ key_ID: string }> }).keys.map((k) => ({ key_ID: k.key_ID }));
    expect(
      (await call(pair.b.url, saeB, '/api/v1/keys/sae-a/dec_keys', { body: { key_IDs: ids } })).status,
    ).toBe(200);
    await until(async () => (await stored(pair.a.url)) === 200, 10_000);
    expect(pair.b.core.pool.storedCount).toBe(200);
  });
});
