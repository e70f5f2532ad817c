/**
 * The soak's appliance (test/bench/soak.ts), in a process of its own as in production: the
 * memory the soak measures is the appliance's alone, not the load generator's (its HTTP client,
 * its JIT, its latency samples). Started with --expose-gc by the soak; prints one JSON line
 * `{url, token, admin}` once listening, then answers IPC requests:
 * - `sample`: a forced GC, then process.memoryUsage(), the V8 heap spaces' used bytes, LevelDB's
 *   block cache + memtables and /proc/self/smaps's RSS split (anonymous, file-backed, mapped SSTs);
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
  /** The part of rssFile that is LevelDB's table files (SSTs it maps to read them). */
  rssTables?: number;
  spaces: Record<string, number>;
}

/**
 * Anonymous and file-backed RSS, and the part of the latter that is LevelDB's mapped table files,
 * from /proc/self/smaps (Linux). Not /proc/self/status: its RssAnon/RssFile come from per-thread
 * counters the kernel folds in lazily, which were seen 15 MB off smaps in this process.
 */
function procMemory(): { rssAnon?: number; rssFile?: number; rssTables?: number } {
  let text: string;
  try {
    text = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return {};
  }
  let rss = 0;
  let anon = 0;
  let tables = 0;
  let isTable = false;
  for (const line of text.split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      isTable = line.endsWith('.ldb') || line.endsWith('.sst');
    } else if (line.startsWith('Rss:')) {
      const kb = Number(line.slice(4).trim().split(/\s+/)[0]) * 1024;
      rss += kb;
      if (isTable) tables += kb;
    } else if (line.startsWith('Anonymous:')) {
      anon += Number(line.slice(10).trim().split(/\s+/)[0]) * 1024;
    }
  }
  return { rssAnon: anon, rssFile: rss - anon, rssTables: tables };
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
          ...procMemory(),
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
