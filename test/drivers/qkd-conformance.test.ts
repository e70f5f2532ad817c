/**
 * The conformance suite of `QkdKeySource` (drivers/qkd/interface.ts): one suite, run against every
 * implementation through a harness that gives a master and a slave key source on the two ends of
 * one link. Today: the ETSI 014 client talking to the KME simulator pair over real mutual TLS on
 * loopback, fed by a hand-driven key supply so every count is exact.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Etsi014Client, QkdError } from '../../drivers/qkd/etsi014/index.js';
import type { QkdKey, QkdKeySource } from '../../drivers/qkd/interface.js';
import { generateSimCerts } from '../../simulators/kme/certs.js';
import { type KmePair, startKmePair } from '../../simulators/kme/pair.js';
import { ManualKeySupply } from '../../simulators/kme/supply.js';

/** Two ends of one QKD link, as the suite needs them. */
interface QkdLinkHarness {
  /** The key source of SAE A (master in most tests) and of SAE B (its slave). */
  a: QkdKeySource;
  b: QkdKeySource;
  /** Another SAE served by B's KME, never named as a slave: must not get B's keys. */
  c: QkdKeySource;
  /** Makes `count` more link keys of `keySize` bits available at both ends. */
  supply(count: number): void;
  readonly keySize: number;
  readonly maxKeyPerRequest: number;
  /** Pending keys are left in the pools between tests; `drain` empties them. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

type HarnessFactory = () => Promise<QkdLinkHarness>;

const SPEC_NOT_FOUND = 'one or more keys specified are not found on KME';
const hex = (k: QkdKey) => Buffer.from(k.key).toString('hex');

async function failure(promise: Promise<unknown>): Promise<QkdError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(QkdError);
  return error as QkdError;
}

function qkdKeySourceConformance(name: string, factory: HarnessFactory): void {
  describe(`QkdKeySource conformance: ${name}`, () => {
    let h: QkdLinkHarness;
    beforeAll(async () => {
      h = await factory();
    });
    afterEach(async () => {
      await h.drain();
    });
    afterAll(async () => {
      await h?.close();
    });

    it('status names both ends and the limits, sizes in bits', async () => {
      h.supply(10);
      const s = await h.a.status(h.b.saeId);
      expect(s).toMatchObject({
        sourceKmeId: h.a.kmeId,
        targetKmeId: h.b.kmeId,
        masterSaeId: h.a.saeId,
        slaveSaeId: h.b.saeId,
        keySize: h.keySize,
        storedKeyCount: 10,
        maxKeyPerRequest: h.maxKeyPerRequest,
      });
      expect(s.keySize % 8).toBe(0);
      expect(s.minKeySize).toBeLessThanOrEqual(s.keySize);
      expect(s.maxKeySize).toBeGreaterThanOrEqual(s.keySize);
      expect(s.storedKeyCount).toBeLessThanOrEqual(s.maxKeyCount);
      expect(Number.isInteger(s.maxSaeIdCount)).toBe(true);
      const fromB = await h.b.status(h.a.saeId);
      expect(fromB).toMatchObject({ sourceKmeId: h.b.kmeId, targetKmeId: h.a.kmeId, storedKeyCount: 10 });
    });

    it('keys fetched by ID on the slave equal the master’s: same IDs, same bytes', async () => {
      h.supply(20);
      const master = await h.a.getKeys(h.b.saeId, { number: 5 });
      expect(master).toHaveLength(5);
      for (const k of master) expect(k.key).toHaveLength(h.keySize / 8);
      const slave = await h.b.getKeysById(
        h.a.saeId,
        master.map((k) => k.keyId),
      );
      expect(slave.map((k) => k.keyId)).toEqual(master.map((k) => k.keyId));
      expect(slave.map(hex)).toEqual(master.map(hex));
    });

    it.each([1, 2, 4])('keys of %i× key_size bits match at both ends', async (multiple) => {
      const size = h.keySize * multiple;
      h.supply(3 * multiple);
      const master = await h.a.getKeys(h.b.saeId, { number: 3, size });
      for (const k of master) expect(k.key).toHaveLength(size / 8);
      const slave = await h.b.getKeysById(
        h.a.saeId,
        master.map((k) => k.keyId),
      );
      expect(slave.map(hex)).toEqual(master.map(hex));
      expect(new Set(master.map(hex)).size).toBe(3);
    });

    it('works in both directions (B as master, A as slave)', async () => {
      h.supply(4);
      const master = await h.b.getKeys(h.a.saeId, { number: 2 });
      const slave = await h.a.getKeysById(h.b.saeId, master.map((k) => k.keyId).reverse());
      expect(slave.map(hex)).toEqual(master.map(hex).reverse());
    });

    it('delivered keys leave the pool; dec_keys a second time fails with the spec message', async () => {
      h.supply(6);
      const master = await h.a.getKeys(h.b.saeId, { number: 2 });
      expect((await h.a.status(h.b.saeId)).storedKeyCount).toBe(4);
      const ids = master.map((k) => k.keyId);
      await h.b.getKeysById(h.a.saeId, ids);
      const again = await failure(h.b.getKeysById(h.a.saeId, ids));
      expect(again).toMatchObject({
        kind: 'bad-request',
        status: 400,
        kmeMessage: SPEC_NOT_FOUND,
        retryable: false,
      });
      const one = await failure(h.b.getKeysById(h.a.saeId, [ids[0]!]));
      expect(one.kind).toBe('bad-request');
    });

    it('only the slave may fetch keys by ID', async () => {
      h.supply(2);
      const [key] = await h.a.getKeys(h.b.saeId, { number: 1 });
      // C shares B's KME but was not the slave of the Get key call (ETSI 014 §5.4: 401).
      const e = await failure(h.c.getKeysById(h.a.saeId, [key!.keyId]));
      expect(e).toMatchObject({ kind: 'unauthorized', status: 401 });
      // A asks its own KME for the key as if it were B's slave: its KME holds no such key for A.
      const own = await failure(h.a.getKeysById(h.b.saeId, [key!.keyId]));
      expect(['unauthorized', 'bad-request']).toContain(own.kind);
      // Neither refusal consumed the key.
      const slave = await h.b.getKeysById(h.a.saeId, [key!.keyId]);
      expect(hex(slave[0]!)).toBe(hex(key!));
    });

    it('an unknown key ID → bad-request "not found"', async () => {
      const e = await failure(h.b.getKeysById(h.a.saeId, ['00000000-0000-4000-8000-000000000000']));
      expect(e).toMatchObject({ kind: 'bad-request', kmeMessage: SPEC_NOT_FOUND });
    });

    it('key IDs are never reused, also with both masters asking at once', async () => {
      h.supply(60);
      const results = await Promise.all([
        ...Array.from({ length: 5 }, () => h.a.getKeys(h.b.saeId, { number: 6 })),
        ...Array.from({ length: 5 }, () => h.b.getKeys(h.a.saeId, { number: 6 })),
      ]);
      const ids = results.flat().map((k) => k.keyId);
      expect(ids).toHaveLength(60);
      expect(new Set(ids).size).toBe(60);
      expect(new Set(results.flat().map(hex)).size).toBe(60);
      expect((await h.a.status(h.b.saeId)).storedKeyCount).toBe(0);
      const fetchedByB = await Promise.all(
        results.slice(0, 5).map((r) =>
          h.b.getKeysById(
            h.a.saeId,
            r.map((k) => k.keyId),
          ),
        ),
      );
      expect(fetchedByB.flat().map(hex)).toEqual(results.slice(0, 5).flat().map(hex));
      const fetchedByA = await Promise.all(
        results.slice(5).map((r) =>
          h.a.getKeysById(
            h.b.saeId,
            r.map((k) => k.keyId),
          ),
        ),
      );
      expect(fetchedByA.flat().map(hex)).toEqual(results.slice(5).flat().map(hex));
    });

    it('a second enc_keys does not discard keys the slave has not fetched yet', async () => {
      h.supply(4);
      const first = await h.a.getKeys(h.b.saeId, { number: 2 });
      await h.a.getKeys(h.b.saeId, { number: 2 });
      const slave = await h.b.getKeysById(
        h.a.saeId,
        first.map((k) => k.keyId),
      );
      expect(slave.map(hex)).toEqual(first.map(hex));
    });

    it('more keys than the pool holds → unavailable (503), and nothing is taken', async () => {
      h.supply(2);
      const e = await failure(h.a.getKeys(h.b.saeId, { number: 3 }, { timeoutMs: 500 }));
      expect(e).toMatchObject({ kind: 'unavailable', status: 503, retryable: true });
      expect((await h.a.status(h.b.saeId)).storedKeyCount).toBe(2);
    });

    it('number above max_key_per_request → bad-request', async () => {
      const e = await failure(h.a.getKeys(h.b.saeId, { number: h.maxKeyPerRequest + 1 }));
      expect(e).toMatchObject({ kind: 'bad-request', status: 400 });
    });

    it('an unsupported extension_mandatory is refused, not ignored', async () => {
      h.supply(2);
      const e = await failure(
        h.a.getKeys(h.b.saeId, { number: 1, extensionMandatory: [{ xyz_unknown: true }] }),
      );
      expect(e).toMatchObject({
        kind: 'bad-request',
        kmeMessage: 'not all extension_mandatory parameters are supported',
      });
      expect((await h.a.status(h.b.saeId)).storedKeyCount).toBe(2);
    });

    it('an unknown slave SAE → bad-request', async () => {
      const e = await failure(h.a.getKeys('sae-nobody', { number: 1 }));
      expect(e.kind).toBe('bad-request');
    });
  });
}

// --- implementation: Etsi014Client ↔ simulators/kme pair -------------------------------------

async function etsi014WithSimulatorPair(): Promise<QkdLinkHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'qkm-qkd-conf-'));
  await generateSimCerts(dir, { saes: ['sae-a', 'sae-b', 'sae-c'] });
  const supply = new ManualKeySupply(256);
  let pair: KmePair | undefined;
  const clients: Etsi014Client[] = [];
  try {
    pair = await startKmePair({
      certsDir: dir,
      supply,
      a: { port: 0 },
      b: { port: 0, saes: ['sae-b', 'sae-c'] },
    });
    const ca = await readFile(join(dir, 'ca.pem'), 'utf8');
    const client = async (sae: string, kme: { id: string; url: string }) => {
      const c = new Etsi014Client({
        kmeUrl: kme.url,
        kmeId: kme.id,
        saeId: sae,
        ca,
        cert: await readFile(join(dir, `${sae}.pem`), 'utf8'),
        key: await readFile(join(dir, `${sae}.key`), 'utf8'),
        timeoutMs: 3000,
        backoffMs: 10,
      });
      clients.push(c);
      return c;
    };
    const a = await client('sae-a', pair.a);
    const b = await client('sae-b', pair.b);
    const c = await client('sae-c', pair.b);
    const limits = pair.a.core.limits;
    const running = pair;
    return {
      a,
      b,
      c,
      supply: (count) => void supply.push(count),
      keySize: 256,
      maxKeyPerRequest: limits.maxKeyPerRequest,
      async drain() {
        // Keys left in a pool would skew the next test's counts: take them all as a master.
        for (const [master, slave] of [
          [a, b],
          [b, a],
        ] as const) {
          let stored = (await master.status(slave.saeId)).storedKeyCount;
          while (stored > 0) {
            await master.getKeys(slave.saeId, { number: Math.min(stored, limits.maxKeyPerRequest) });
            stored = (await master.status(slave.saeId)).storedKeyCount;
          }
        }
      },
      async close() {
        await Promise.all(clients.map((c) => c.close()));
        await running.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await Promise.all(clients.map((c) => c.close()));
    await pair?.stop();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

qkdKeySourceConformance('Etsi014Client ↔ KME simulator pair', etsi014WithSimulatorPair);

describe('Etsi014Client against the simulator: health surface', () => {
  it('reports up, the last Status and counters; down with the last error when the KME cannot serve', async () => {
    const h = await etsi014WithSimulatorPair();
    try {
      const a = h.a as Etsi014Client;
      expect(a.health()).toMatchObject({ up: false, counters: { requests: 0, failures: 0, keysFetched: 0 } });
      h.supply(3);
      await a.status('sae-b');
      await a.getKeys('sae-b', { number: 3 });
      const up = a.health();
      expect(up).toMatchObject({
        up: true,
        lastStatus: { storedKeyCount: 3 },
        counters: { requests: 2, keysFetched: 3 },
      });
      expect(up.lastOkAt).toBeInstanceOf(Date);
      const e = await failure(a.getKeys('sae-b', { number: 1 }, { timeoutMs: 200 }));
      expect(e.kind).toBe('unavailable');
      const down = a.health();
      expect(down.up).toBe(false);
      expect(down.lastError).toMatchObject({ kind: 'unavailable', status: 503 });
      expect(JSON.stringify(down)).not.toMatch(/"key"/);
    } finally {
      await h.close();
    }
  });
});
