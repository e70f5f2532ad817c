import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isQkmError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import type { Provenance } from '../../src/core/provenance.js';
import { type PrekeyIndexEntry, type PrekeyRecord, PrekeyStore } from '../../src/governance/prekeys.js';
import { ProviderClient } from '../../src/provider/client.js';
import { loadProviderConfig } from '../../src/provider/config.js';
import { ProviderService } from '../../src/provider/service.js';
import { toBase64url } from '../../src/session/encoding.js';
import { identityFromSeed } from '../../src/session/identity.js';
import { createMemoryBackend } from '../../src/store/memory.js';

/**
 * A node that asks for too many bundles a minute is refused (RATE_LIMITED) before the directory
 * spends anything; and the Provider's log, at debug level over a whole run, never holds the
 * administrator token or a node's or the Provider's secret key.
 */

const PROVENANCE: Provenance = {
  seedOrigin: 'quantum',
  sources: [],
  entropyCredited: 512,
  drbg: {
    name: 't',
    instance: 't',
    reseedCounter: 1,
    seededAt: new Date(0).toISOString(),
    predictionResistance: false,
  },
  degraded: false,
  at: new Date(0).toISOString(),
};
const BOB = 'bob@example.com:calendar';
const ALICE = 'alice@example.com:mail';
const node = (fill: number) =>
  identityFromSeed(
    new Uint8Array(96).fill(fill),
    { region: 'EU', created: new Date(0).toISOString() },
    PROVENANCE,
  );
const A = node(0x2a);
const B = node(0x2b);

let dir: string;
let service: ProviderService;
let log = '';

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isQkmError(err) ? err.code : String(err);
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-provider-limits-'));
  const destination = new Writable({
    write(chunk, _enc, done) {
      log += String(chunk);
      done();
    },
  });
  service = await ProviderService.start({
    config: loadProviderConfig({
      env: {},
      overrides: { dataDir: join(dir, 'p'), port: 0, bundlesPerNodePerMinute: 3 },
    }),
    logger: createLogger({ level: 'debug', destination }),
  });
}, 30_000);

afterAll(async () => {
  await service?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('Provider limits and logs', () => {
  it('refuses a node past its bundles per minute, spending nothing', async () => {
    const publicKey = toBase64url(service.identity.publicKey);
    const adminToken = (await readFile(service.adminTokenFile, 'utf8')).trim();
    const admin = new ProviderClient({ url: service.url, publicKey, adminToken });
    await admin.enrol(A.bundle);
    await admin.enrol(B.bundle);
    expect(
      await code(new ProviderClient({ url: service.url, publicKey, adminToken: 'qkmp_x' }).nodes()),
    ).toBe('UNAUTHORIZED');
    const a = new ProviderClient({ url: service.url, publicKey, signer: A });
    const b = new ProviderClient({ url: service.url, publicKey, signer: B });
    await a.registerAgent(ALICE, 'http://127.0.0.1:2');
    await b.registerAgent(BOB, 'http://127.0.0.1:1');
    await b.setPolicy(BOB, [{ pattern: '*', budget: 10 }]);
    const store = createMemoryBackend();
    const prekeys = new PrekeyStore({
      signer: B,
      keys: store.keys,
      records: store.records<PrekeyRecord>('prekeys'),
      index: store.records<PrekeyIndexEntry>('prekey-ids'),
      seed: async (n) => ({ data: new Uint8Array(randomBytes(n)), provenance: PROVENANCE }),
    });
    await b.uploadPrekeys(BOB, await prekeys.publishBatch(BOB, 5));
    for (let i = 0; i < 3; i++) await a.bundle(BOB, ALICE);
    expect(await code(a.bundle(BOB, ALICE))).toBe('RATE_LIMITED');
    expect((await b.stock(BOB)).otks).toBe(2);

    // The log: refusals are there (route, status, node id), secrets are not.
    expect(log).toContain('provider request refused');
    for (const secret of [
      adminToken,
      toBase64url(A.signing.secretKey),
      toBase64url(service.identity.secretKey),
    ])
      expect(log).not.toContain(secret);
    expect(log).not.toContain(Buffer.from(service.identity.secretKey).toString('hex').slice(0, 64));
  });
});
