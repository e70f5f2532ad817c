import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSimCerts } from '../../simulators/kme/certs.js';
import { loadConfig } from '../../src/core/config.js';
import { openEtcdBackend } from '../../src/store/etcd.js';
import { openStore } from '../../src/store/open.js';
import { EtcdCluster, etcdUnavailableReason } from '../helpers/etcd-cluster.js';
import { newKey, T0 } from '../keys/helpers.js';

/** etcd-specific behaviour beyond the shared conformance suites: fail closed, mTLS, sharing. */

const SKIP = etcdUnavailableReason();

if (SKIP !== undefined) {
  describe('etcd backend', () => {
    it.skip(`skipped: ${SKIP}`, () => undefined);
  });
}

describe.skipIf(SKIP !== undefined)('etcd backend: a partitioned minority fails closed', () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await EtcdCluster.start();
  }, 30_000);
  afterAll(() => cluster?.stop(), 30_000);

  it('a member cut off from the other two refuses writes and reads (STORE_UNAVAILABLE), then recovers', async () => {
    const kek = randomBytes(32);
    const prefix = 'partition/';
    // The appliance reaches only member 0 (its side of the partition).
    const minority = await openEtcdBackend({
      endpoints: [cluster.endpoint(0)],
      kek,
      prefix,
      requestTimeoutMs: 1000,
    });
    const majority = await openEtcdBackend({
      endpoints: [cluster.endpoint(1), cluster.endpoint(2)],
      kek,
      prefix,
      requestTimeoutMs: 3000,
    });
    try {
      const before = newKey();
      await minority.keys.put(before);
      cluster.freeze(1);
      cluster.freeze(2);
      const t0 = performance.now();
      await expect(minority.keys.put(newKey())).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      // No stale read either: the key's state is not served from the minority's copy.
      await expect(minority.keys.take(before.meta.id, T0)).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
      });
      await expect(minority.records('x').putIfAbsent('n', 1)).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
      });
      console.log(`etcd partition: minority refused in ${(performance.now() - t0).toFixed(0)} ms`);
      cluster.thaw(1);
      cluster.thaw(2);
      await cluster.waitHealthy();
      // After the partition heals the key is still active, and taken exactly once.
      const got = await majority.keys.take(before.meta.id, T0);
      expect(Buffer.from(got.material).equals(Buffer.from(before.material))).toBe(true);
      // The formerly cut-off member converges: a client of it alone sees the majority's take
      // (etcd3's circuit breaker keeps the old client's calls refused for a while: see README).
      const healed = performance.now();
      const deadline = Date.now() + 20_000;
      let code: string | undefined;
      while (Date.now() < deadline) {
        const fresh = await openEtcdBackend({
          endpoints: [cluster.endpoint(0)],
          kek,
          prefix,
          requestTimeoutMs: 2000,
        }).catch(() => undefined);
        code = await (
          fresh?.keys.take(before.meta.id, T0) ?? Promise.reject({ code: 'STORE_UNAVAILABLE' })
        ).then(
          () => 'SERVED',
          (e: { code?: string }) => e.code,
        );
        await fresh?.close();
        if (code !== 'STORE_UNAVAILABLE') break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(code).toBe('KEY_ALREADY_TAKEN');
      console.log(
        `etcd partition: cut-off member serving again ${(performance.now() - healed).toFixed(0)} ms after heal`,
      );
    } finally {
      cluster.thaw(1);
      cluster.thaw(2);
      await minority.close();
      await majority.close();
    }
  }, 40_000);

  it('two backends on one cluster share keys: one take wins across them', async () => {
    const kek = randomBytes(32);
    const a = await openEtcdBackend({ endpoints: cluster.endpoints, kek, prefix: 'shared/' });
    const b = await openEtcdBackend({ endpoints: cluster.endpoints.reverse(), kek, prefix: 'shared/' });
    try {
      const keys = Array.from({ length: 20 }, () => newKey());
      for (const k of keys) await a.keys.put(k);
      const results = await Promise.allSettled(
        keys.flatMap((k) => [a.keys.take(k.meta.id, T0), b.keys.take(k.meta.id, T0)]),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(20);
      for (const r of results)
        if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'KEY_ALREADY_TAKEN' });
      expect(await b.keys.counts()).toEqual({ active: 0, taken: 20, expired: 0 });
      // A different KEK cannot open the shared store's data key.
      await expect(
        openEtcdBackend({ endpoints: cluster.endpoints, kek: randomBytes(32), prefix: 'shared/' }),
      ).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', problem: 'wrong-key' });
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe.skipIf(SKIP !== undefined)('etcd backend: mTLS', () => {
  let cluster: EtcdCluster;
  let dir: string;
  let certs: Awaited<ReturnType<typeof generateSimCerts>>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qkm-etcd-tls-'));
    // Certificates made now, for this run: a CA, a server certificate for 127.0.0.1, a client one.
    certs = await generateSimCerts(dir, { kmes: ['etcd'], saes: ['qkm'] });
    cluster = await EtcdCluster.start({
      size: 1,
      tls: { ca: certs.ca.cert, serverCert: certs.kmes.etcd!.cert, serverKey: certs.kmes.etcd!.key },
    });
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 30_000);

  it('the appliance config opens the store over mTLS; without a client certificate it is refused', async () => {
    const kek = randomBytes(32);
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        store: {
          backend: 'etcd',
          endpoints: cluster.endpoints,
          // Relative to the data dir.
          tls: { ca: 'ca.pem', cert: 'qkm.pem', key: 'qkm.key' },
        },
      },
    });
    expect(cluster.endpoints[0]).toMatch(/^https:/);
    const deadline = Date.now() + 15_000;
    let backend: Awaited<ReturnType<typeof openStore>> | undefined;
    while (backend === undefined) {
      try {
        backend = await openStore(config, kek);
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    try {
      const key = newKey();
      await backend.keys.put(key);
      const got = await backend.keys.take(key.meta.id, T0);
      expect(Buffer.from(got.material).equals(Buffer.from(key.material))).toBe(true);
    } finally {
      await backend.close();
    }
    await expect(
      openEtcdBackend({
        endpoints: cluster.endpoints,
        kek,
        tls: { ca: certs.ca.cert },
        requestTimeoutMs: 1500,
      }),
    ).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
  }, 30_000);
});
