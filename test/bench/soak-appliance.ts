/**
 * The soak's appliance (test/bench/soak.ts), in a process of its own as in production: the
 * memory the soak measures is the appliance's alone, not the load generator's (its HTTP client,
 * its JIT, its latency samples). Started with --expose-gc by the soak; prints one JSON line
 * `{url, token, admin}` once listening, then answers IPC requests:
 * - `sample`: a forced GC, then process.memoryUsage(), the V8 heap spaces' used bytes, LevelDB's
 *   block cache + memtables and /proc/self/status's RSS split (anonymous vs file-backed);
 * - `snapshot`: writes a V8 heap snapshot into the directory given, answers its path (diagnosis:
 *   QKM_SOAK_HEAP_SNAPSHOTS=dir makes the soak take one after warm-up and one at the end; writing
 *   one raises RSS by about 100 MB for the rest of the run, so such a run's RSS slope means nothing);
 * - `audit`: the audit log's stats; `close`: closes the appliance and exits.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { loadConfig } from '../../src/core/config.js';

export interface SoakSample {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** LevelDB block cache + memtables (bytes); NaN off LevelDB. */
  level: number;
  /** /proc/self/status, bytes; absent off Linux. */
  rssAnon?: number;
  rssFile?: number;
  spaces: Record<string, number>;
}

/** RssAnon / RssFile from /proc/self/status (Linux): heap and mallocs vs mapped files (code, SSTs). */
function procStatus(): { rssAnon?: number; rssFile?: number } {
  try {
    const text = readFileSync('/proc/self/status', 'utf8');
    const kb = (name: string) => {
      const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
      return m ? Number(m[1]) * 1024 : undefined;
    };
    const rssAnon = kb('RssAnon');
    const rssFile = kb('RssFile');
    return { ...(rssAnon === undefined ? {} : { rssAnon }), ...(rssFile === undefined ? {} : { rssFile }) };
  } catch {
    return {};
  }
}

async function main(): Promise<void> {
  const dataDir = process.argv[2];
  if (!dataDir || !process.send) throw new Error('usage: forked by soak.ts with a data dir');
  const appliance = await Appliance.start({
    simulator: simulatedQuantis,
    config: loadConfig({
      env: {},
      overrides: {
        dataDir,
        port: 0,
        logLevel: 'warn',
        // Experiments with the store's memory: QKM_SOAK_STORE='{"backend":"level","maxOpenFiles":32}'.
        ...(process.env.QKM_SOAK_STORE ? { store: JSON.parse(process.env.QKM_SOAK_STORE) } : {}),
        // Closed keys keep the default retention unless QKM_SOAK_KEYS='{"retentionSeconds":60}' asks
        // for a store that reaches its steady-state size within the run (a month compressed).
        keys: {
          defaultTtlSeconds: 3600,
          sweepCron: '*/5 * * * * *',
          retentionSeconds: 7 * 24 * 3600,
          ...(process.env.QKM_SOAK_KEYS ? JSON.parse(process.env.QKM_SOAK_KEYS) : {}),
        },
        api: {
          bodyLimit: 262144,
          rateLimitPerMinute: 100_000_000,
          requestTimeoutMs: 30_000,
          badTokensPerMinute: 60,
        },
      },
    }),
  });
  const gc = (globalThis as { gc?: () => void }).gc;
  const store = appliance.store as { approximateMemoryUsage?: () => number };
  const token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
  const admin = (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim();
  process.on(
    'message',
    async (msg: { id: number; op: 'sample' | 'snapshot' | 'audit' | 'close'; dir?: string }) => {
      const reply = (value: unknown) => process.send!({ id: msg.id, value });
      if (msg.op === 'sample') {
        gc?.();
        const m = process.memoryUsage();
        const sample: SoakSample = {
          rss: m.rss,
          heapUsed: m.heapUsed,
          heapTotal: m.heapTotal,
          external: m.external,
          arrayBuffers: m.arrayBuffers,
          level: store.approximateMemoryUsage?.() ?? Number.NaN,
          ...procStatus(),
          spaces: Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, s.space_used_size])),
        };
        reply(sample);
      } else if (msg.op === 'snapshot' && msg.dir) {
        gc?.();
        reply(writeHeapSnapshot(join(msg.dir, `soak-${Date.now()}.heapsnapshot`)));
      } else if (msg.op === 'audit') {
        await appliance.status();
        reply({ ...appliance.audit.stats(), gc: gc !== undefined });
      } else if (msg.op === 'close') {
        await appliance.close();
        reply(true);
        process.disconnect();
      }
    },
  );
  process.send({ id: 0, value: { url: appliance.url, token, admin } });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
