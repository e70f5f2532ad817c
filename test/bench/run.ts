import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpus, totalmem } from 'node:os';
import { createInterface } from 'node:readline';
import { progressOf } from '../../src/cli/progress.js';
import type { BenchRecord } from './types.js';

/**
 * `npm run bench [name ...]`: runs each benchmark module in turn, prints one JSON object per
 * line on stdout (machine-readable), then a human summary. Every goal is a ratio against a
 * baseline measured in the same run, so the numbers mean the same on a noisy machine.
 * Which benchmark is running goes to stderr, as for the CLI's long commands (src/cli/progress.ts):
 * on a terminal, or with `--progress`; never with `--quiet`.
 */
const BENCHES = [
  'drbg',
  'entropy-api',
  'quantis-sim',
  'kme',
  'bb84-rate',
  'session',
  'session-floor',
  'pqc-memory',
  'store-etcd',
  'otk-issuance',
  'session-resumed',
] as const;
/** Run only when named (`npm run bench -- soak [--minutes=N]`): minutes long, not part of the default set. */
const ON_DEMAND = ['soak'] as const;

/**
 * Each benchmark runs in a child process of its own (same Node flags, so the same loader): one
 * benchmark's leftovers — heap, JIT state, libuv threads, timers of closed servers — must not
 * tax the next one's measurement.
 */
async function runIsolated(name: string): Promise<BenchRecord[]> {
  // (The soak's appliance, which it forks, gets --expose-gc there: its own process needs none.)
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1] as string, name], {
    env: { ...process.env, QKM_BENCH_CHILD: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const records: BenchRecord[] = [];
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    // Only the child's records: anything else it prints (logs) is not ours to parse.
    if (!line.startsWith('{"bench":')) return;
    try {
      const r = JSON.parse(line) as BenchRecord;
      if (r.bench !== 'machine') records.push(r);
    } catch {
      // a truncated line: the exit code below reports the failure
    }
  });
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0 && records.length === 0) {
    return [{ bench: name, metric: 'error', value: 0, unit: '', pass: false, note: `exited with ${code}` }];
  }
  return records;
}

async function runHere(name: string): Promise<BenchRecord[]> {
  try {
    const mod = (await import(`./${name}.js`)) as { default: () => Promise<BenchRecord[]> };
    return await mod.default();
  } catch (err) {
    return [{ bench: name, metric: 'error', value: 0, unit: '', pass: false, note: (err as Error).message }];
  }
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const minutes = wanted.find((a) => a.startsWith('--minutes='));
  if (minutes) process.env.QKM_SOAK_SECONDS = String(Number(minutes.slice('--minutes='.length)) * 60);
  // Flags (`--quiet`, `--progress`, `--minutes=N`) are not benchmark names.
  const named = wanted.filter((a) => !a.startsWith('--'));
  const names = named.length > 0 ? [...BENCHES, ...ON_DEMAND].filter((b) => named.includes(b)) : [...BENCHES];
  if (process.env.QKM_BENCH_CHILD === '1') {
    for (const name of names) for (const r of await runHere(name)) console.log(JSON.stringify(r));
    return;
  }
  const machine = {
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
  console.log(JSON.stringify({ bench: 'machine', ...machine }));
  const all: BenchRecord[] = [];
  const progress = progressOf({ quiet: wanted.includes('--quiet'), progress: wanted.includes('--progress') });
  for (const [i, name] of names.entries()) {
    progress.step(`bench ${i + 1}/${names.length}: ${name}`);
    const records = await runIsolated(name);
    progress.done();
    for (const r of records) {
      console.log(JSON.stringify(r));
      all.push(r);
    }
  }
  console.log('\nsummary');
  for (const r of all) {
    const ci = r.ratioCi95 ? ` (95% ${r.ratioCi95[0].toFixed(2)}–${r.ratioCi95[1].toFixed(2)})` : '';
    const ratio = r.ratio !== undefined ? ` ratio ${r.ratio.toFixed(3)}${ci}` : '';
    const goal = r.goal ? ` (goal ${r.goal}: ${r.pass ? 'met' : 'NOT met'})` : '';
    console.log(`  ${r.bench.padEnd(12)} ${r.metric.padEnd(34)} ${fmt(r.value)} ${r.unit}${ratio}${goal}`);
  }
}

function fmt(v: number): string {
  return Math.abs(v) >= 1000 ? v.toExponential(3) : v.toFixed(3);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
