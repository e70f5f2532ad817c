/**
 * `otk-issuance` benchmark (issue #12): one-time prekeys handed out per second by the Provider's
 * directory on its default storage (LevelDB, synced writes), each request checking the
 * responder's contact policy, counting its budget and removing exactly one OTK; and, for
 * scale, how many OTKs per second a node can make and sign (ML-KEM-768 keygen + ML-DSA-65).
 * Then the same through the Provider's API over loopback HTTP: `qkm provider start` in its own
 * process (LevelDB), an initiator node's `ProviderClient` signing each request and verifying each
 * answer (Provider signature, the responder's identity bundle and prekey signature) — one
 * client in sequence, and four at once. No goal: these are capacity numbers. Bounded: 400
 * prekeys, about 30 s.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Provenance } from '../../src/core/provenance.js';
import {
  type PrekeyIndexEntry,
  type PrekeyRecord,
  PrekeyStore,
  type SignedPrekey,
} from '../../src/governance/prekeys.js';
import { Directory } from '../../src/provider/directory.js';
import { type NodeIdentity, identityFromSeed } from '../../src/session/identity.js';
import { ProviderClient } from '../../src/provider/client.js';
import { freePort } from '../helpers/etcd-cluster.js';
import { startProviderProcess } from '../helpers/provider-process.js';
import { openLevelBackend } from '../../src/store/level.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import type { BenchRecord } from './types.js';

const COUNT = 400;
const PROVENANCE: Provenance = {
  seedOrigin: 'os',
  sources: [],
  entropyCredited: 0,
  drbg: {
    name: 'bench',
    instance: 'bench',
    reseedCounter: 0,
    seededAt: new Date(0).toISOString(),
    predictionResistance: false,
  },
  degraded: true,
  reason: 'benchmark',
  at: new Date(0).toISOString(),
};

export default async function run(): Promise<BenchRecord[]> {
  const identity = identityFromSeed(
    new Uint8Array(96).fill(1),
    { region: 'EU', created: new Date(0).toISOString() },
    PROVENANCE,
  );
  const nodeId = identity.nodeId;
  const nodeStore = createMemoryBackend();
  const prekeys = new PrekeyStore({
    signer: identity,
    keys: nodeStore.keys,
    records: nodeStore.records<PrekeyRecord>('prekeys'),
    index: nodeStore.records<PrekeyIndexEntry>('prekey-ids'),
    seed: async (n) => ({ data: new Uint8Array(randomBytes(n)), provenance: PROVENANCE }),
  });
  const aid = 'bob@example.com:calendar';
  const batch: SignedPrekey[] = [];
  let t0 = performance.now();
  for (let i = 0; i < COUNT; i += 100) batch.push(...(await prekeys.publishBatch(aid, 100)));
  const makeRate = COUNT / ((performance.now() - t0) / 1000);

  const dir = await mkdtemp(join(tmpdir(), 'qkm-bench-otk-'));
  const store = await openLevelBackend({ path: join(dir, 'db'), kek: new Uint8Array(randomBytes(32)) });
  try {
    const directory = new Directory({ store });
    await directory.enroll(identity.bundle);
    await directory.registerAgent(nodeId, aid, 'http://127.0.0.1:1');
    await directory.setPolicy(nodeId, aid, [{ pattern: '*', budget: COUNT }]);
    for (let i = 0; i < COUNT; i += 100) await directory.uploadPrekeys(nodeId, aid, batch.slice(i, i + 100));
    t0 = performance.now();
    for (let i = 0; i < COUNT; i++) await directory.bundle(aid, `u${i % 20}@example.com:agent`);
    const issueRate = COUNT / ((performance.now() - t0) / 1000);
    const http = await overHttp(identity, batch, aid);
    return [
      ...http,
      {
        bench: 'otk-issuance',
        metric: 'provider bundles (one OTK each) per second, LevelDB',
        value: Math.round(issueRate),
        unit: '/s',
      },
      {
        bench: 'otk-issuance',
        metric: 'node OTKs made and signed per second',
        value: Math.round(makeRate),
        unit: '/s',
      },
    ];
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Bundles through the Provider process's API: sequential, then four clients at once. */
async function overHttp(responder: NodeIdentity, batch: SignedPrekey[], aid: string): Promise<BenchRecord[]> {
  const dir = await mkdtemp(join(tmpdir(), 'qkm-bench-provider-'));
  const provider = await startProviderProcess({ dir, port: await freePort(), config: { logLevel: 'warn' } });
  try {
    const initiator = identityFromSeed(
      new Uint8Array(96).fill(2),
      { region: 'EU', created: new Date(0).toISOString() },
      PROVENANCE,
    );
    const admin = new ProviderClient({
      url: provider.url,
      publicKey: provider.publicKey,
      adminToken: provider.adminToken,
    });
    await admin.enrol(responder.bundle);
    await admin.enrol(initiator.bundle);
    const as = (signer: NodeIdentity) =>
      new ProviderClient({ url: provider.url, publicKey: provider.publicKey, signer });
    const b = as(responder);
    await b.registerAgent(aid, 'http://127.0.0.1:1');
    await b.setPolicy(aid, [{ pattern: '*', budget: COUNT }]);
    for (let i = 0; i < COUNT; i += 100) await b.uploadPrekeys(aid, batch.slice(i, i + 100));
    const initiators = ['u0', 'u1', 'u2', 'u3'].map((u) => `${u}@example.com:agent`);
    const a = as(initiator);
    for (const u of initiators) await a.registerAgent(u, 'http://127.0.0.1:2');
    const half = COUNT / 2;
    const latencies: number[] = [];
    let t0 = performance.now();
    for (let i = 0; i < half; i++) {
      const t = performance.now();
      await a.bundle(aid, initiators[i % 4]!);
      latencies.push(performance.now() - t);
    }
    const sequential = half / ((performance.now() - t0) / 1000);
    t0 = performance.now();
    await Promise.all(
      initiators.map(async (u) => {
        const client = as(initiator);
        for (let i = 0; i < half / 4; i++) await client.bundle(aid, u);
      }),
    );
    const parallel = half / ((performance.now() - t0) / 1000);
    latencies.sort((x, y) => x - y);
    return [
      {
        bench: 'otk-issuance',
        metric: 'bundles per second over HTTP, one client (signed request, signed answer, bundle verified)',
        value: Math.round(sequential),
        unit: '/s',
      },
      {
        bench: 'otk-issuance',
        metric: 'bundle over HTTP p50 latency, one client',
        value: Math.round((latencies[Math.floor(latencies.length / 2)] ?? 0) * 100) / 100,
        unit: 'ms',
      },
      {
        bench: 'otk-issuance',
        metric: 'bundles per second over HTTP, four clients at once',
        value: Math.round(parallel),
        unit: '/s',
        note: 'clients and Provider share the machine',
      },
    ];
  } finally {
    await provider.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
