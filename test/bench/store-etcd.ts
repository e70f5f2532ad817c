import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { QkmClient } from '../../src/client/client.js';
import { type QkmConfig, loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { EtcdCluster } from '../helpers/etcd-cluster.js';
import type { BenchRecord } from './types.js';

/**
 * `store-etcd`: keys/s of create+take pairs over real HTTP through qkm appliances whose store is
 * a 3-member etcd cluster on loopback, against one appliance on the embedded LevelDB store in
 * the same run; then the same load spread over 1, 2 and 3 appliances sharing the cluster (all in
 * this one process, so on a small machine they share its cores with etcd).
 */

const SECONDS = Number(process.env.QKM_BENCH_SECONDS ?? 4);
const CONCURRENCY = 8;

async function pairsPerSecond(urls: string[], token: string): Promise<number> {
  const clients = urls.map((url) => new QkmClient({ url, token }));
  const end = performance.now() + SECONDS * 1000;
  let pairs = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      const client = clients[w % clients.length]!;
      while (performance.now() < end) {
        const meta = await client.keys.create({ size: 32 });
        await client.keys.take(meta.id);
        pairs++;
      }
    }),
  );
  return pairs / ((performance.now() - t0) / 1000);
}

function config(dataDir: string, store?: QkmConfig['store']): QkmConfig {
  return loadConfig({
    env: {},
    overrides: { dataDir, port: 0, logLevel: 'silent', mode: 'simulator', ...(store ? { store } : {}) },
  });
}

export default async function run(): Promise<BenchRecord[]> {
  const root = await mkdtemp(join(tmpdir(), 'qkm-bench-etcd-'));
  const logger = createLogger({ level: 'silent' });
  const out: BenchRecord[] = [];
  let cluster: EtcdCluster | undefined;
  const started: Appliance[] = [];
  try {
    const level = await Appliance.start({
      simulator: simulatedQuantis,
      config: config(join(root, 'level')),
      logger,
    });
    started.push(level);
    const levelToken = (await readFile(level.tokenFiles.default!, 'utf8')).trim();
    await pairsPerSecond([level.url], levelToken); // warm-up
    const baseline = await pairsPerSecond([level.url], levelToken);
    await level.close();
    started.pop();

    cluster = await EtcdCluster.start();
    const store = { backend: 'etcd' as const, endpoints: cluster.endpoints, prefix: 'bench/' };
    const first = await Appliance.start({
      simulator: simulatedQuantis,
      config: config(join(root, 'a'), { ...store, node: 'a' }),
      logger,
    });
    started.push(first);
    for (const name of ['b', 'c']) await cp(join(root, 'a'), join(root, name), { recursive: true });
    const token = (await readFile(first.tokenFiles.default!, 'utf8')).trim();
    for (const name of ['b', 'c']) {
      started.push(
        await Appliance.start({
          simulator: simulatedQuantis,
          config: config(join(root, name), { ...store, node: name }),
          logger,
        }),
      );
    }
    const urls = started.map((a) => a.url);
    await pairsPerSecond([urls[0]!], token); // warm-up
    for (const n of [1, 2, 3]) {
      const value = await pairsPerSecond(urls.slice(0, n), token);
      out.push({
        bench: 'store-etcd',
        metric: `keys_per_s_${n}_appliance${n > 1 ? 's' : ''}`,
        value: Math.round(value * 10) / 10,
        unit: 'keys/s',
        baseline: Math.round(baseline * 10) / 10,
        ratio: Math.round((value / baseline) * 1000) / 1000,
        note: `create+take pairs/s, ${CONCURRENCY} concurrent clients, ${SECONDS} s; baseline: one appliance on LevelDB; 3-member etcd on loopback`,
      });
    }
  } finally {
    for (const a of started) await a.close().catch(() => undefined);
    await cluster?.stop();
    await rm(root, { recursive: true, force: true });
  }
  return out;
}
