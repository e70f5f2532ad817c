import { cpus, totalmem } from 'node:os';
import type { BenchRecord } from './types.js';

/**
 * `npm run bench [name ...]`: runs each benchmark module in turn, prints one JSON object per
 * line on stdout (machine-readable), then a human summary. Every goal is a ratio against a
 * baseline measured in the same run, so the numbers mean the same on a noisy machine.
 */
const BENCHES = ['drbg', 'entropy-api', 'quantis-sim', 'kme', 'bb84-rate', 'session'] as const;

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const names = wanted.length > 0 ? BENCHES.filter((b) => wanted.includes(b)) : [...BENCHES];
  const machine = {
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
  console.log(JSON.stringify({ bench: 'machine', ...machine }));
  const all: BenchRecord[] = [];
  for (const name of names) {
    let records: BenchRecord[];
    try {
      const mod = (await import(`./${name}.js`)) as { default: () => Promise<BenchRecord[]> };
      records = await mod.default();
    } catch (err) {
      records = [
        { bench: name, metric: 'error', value: 0, unit: '', pass: false, note: (err as Error).message },
      ];
    }
    for (const r of records) {
      console.log(JSON.stringify(r));
      all.push(r);
    }
  }
  console.log('\nsummary');
  for (const r of all) {
    const ratio = r.ratio !== undefined ? ` ratio ${r.ratio.toFixed(3)}` : '';
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
