import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isQkmError } from '../../src/core/errors.js';
import { ProviderClient } from '../../src/provider/client.js';
import { EtcdCluster, etcdUnavailableReason, freePort } from '../helpers/etcd-cluster.js';
import { type ProviderProcess, startProviderProcess } from '../helpers/provider-process.js';
import { testNode } from '../helpers/provider-fixtures.js';

/**
 * The Provider on a 3-member etcd cluster (issue #14, "Provider on etcd"): `qkm provider start`
 * with `store.backend: "etcd"`; one member is killed with -9 mid-run, the Provider keeps
 * handing out bundles (after at most a leader election) and never hands out one OTK twice nor
 * loses one; then the Provider itself is killed and restarted on the two surviving members and
 * finds its identity, directory and budgets. Bounded: 40 prekeys, a 20 s unavailability budget.
 */

const SKIP = etcdUnavailableReason();
const BOB = 'bob@example.com:calendar';
const ALICE = 'alice@example.com:mail';
const STOCK = 40;

const node = (fill: number) => testNode(fill, new Date(0).toISOString());

let dir: string;
let providerDir: string;
let port: number;
let cluster: EtcdCluster;
let provider: ProviderProcess;
const A = node(0x1a);
const B = node(0x1b);

const nodeClient = (id: typeof A.identity) =>
  new ProviderClient({ url: provider.url, publicKey: provider.publicKey, signer: id, timeoutMs: 4000 });

async function start(): Promise<ProviderProcess> {
  return startProviderProcess({
    dir: providerDir,
    port,
    config: {
      logLevel: 'warn',
      store: {
        backend: 'etcd',
        endpoints: cluster.endpoints,
        prefix: 'provider-e2e/',
        requestTimeoutMs: 2000,
      },
    },
  });
}

/** One bundle, retrying while the store is unavailable (a member just died); the wait is reported. */
async function bundleRetrying(deadline: number): Promise<{ id: string; waitedMs: number }> {
  const t0 = Date.now();
  for (;;) {
    try {
      const b = await nodeClient(A.identity).bundle(BOB, ALICE);
      return { id: b.prekey.id, waitedMs: Date.now() - t0 };
    } catch (err) {
      const retryable = isQkmError(err, 'STORE_UNAVAILABLE') || isQkmError(err, 'PROVIDER_UNAVAILABLE');
      if (!retryable || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe.skipIf(SKIP !== undefined)(
  `Provider on a 3-member etcd cluster${SKIP ? ` (skipped: ${SKIP})` : ''}`,
  () => {
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'qkm-provider-etcd-'));
      providerDir = join(dir, 'provider');
      await mkdir(providerDir, { recursive: true });
      port = await freePort();
      cluster = await EtcdCluster.start();
      provider = await start();
      const admin = new ProviderClient({
        url: provider.url,
        publicKey: provider.publicKey,
        adminToken: provider.adminToken,
      });
      await admin.enrol(A.identity.bundle, 'node A');
      await admin.enrol(B.identity.bundle, 'node B');
      const a = nodeClient(A.identity);
      const b = nodeClient(B.identity);
      await a.registerAgent(ALICE, 'http://127.0.0.1:7302');
      await b.registerAgent(BOB, 'http://127.0.0.1:7301');
      await b.setPolicy(BOB, [{ pattern: '*@example.com:*', budget: 1000 }]);
      await b.uploadPrekeys(BOB, await B.prekeys.publishBatch(BOB, STOCK));
    }, 90_000);

    afterAll(async () => {
      await provider?.kill();
      await cluster?.stop();
      await rm(dir, { recursive: true, force: true });
    }, 30_000);

    it('keeps serving through kill -9 of one member: no OTK twice, none lost', async () => {
      const handed: string[] = [];
      for (let i = 0; i < 10; i++) handed.push((await bundleRetrying(Date.now() + 5000)).id);
      await cluster.kill(0);
      let worstWaitMs = 0;
      const deadline = Date.now() + 20_000;
      for (let i = 0; i < 10; i++) {
        const r = await bundleRetrying(deadline);
        worstWaitMs = Math.max(worstWaitMs, r.waitedMs);
        handed.push(r.id);
      }
      expect(new Set(handed).size).toBe(handed.length);
      const stock = await nodeClient(B.identity).stock(BOB);
      expect(stock.otks + handed.length).toBe(STOCK);
      // The unavailability window after the kill (a leader election at most): reported, not asserted.
      console.info(
        `provider on etcd: longest wait for a bundle after kill -9 of a member: ${worstWaitMs} ms`,
      );
    }, 60_000);

    it('a Provider killed with -9 and restarted on the surviving members keeps identity, directory and budgets', async () => {
      const before = provider.publicKey;
      await provider.kill();
      provider = await start();
      expect(provider.publicKey).toBe(before);
      const admin = new ProviderClient({
        url: provider.url,
        publicKey: provider.publicKey,
        adminToken: provider.adminToken,
      });
      expect(await admin.status()).toMatchObject({ store: 'etcd', nodes: 2, agents: 2, otks: STOCK - 20 });
      const next = await bundleRetrying(Date.now() + 10_000);
      expect(next.id).toBeTruthy();
      expect((await nodeClient(A.identity).bundle(BOB, ALICE)).decision.used).toBe(22);
    }, 60_000);
  },
);
