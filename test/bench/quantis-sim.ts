/**
 * quantis-sim: (1) sustained bytes/s through the full driver path the appliance runs — Quantis
 * driver over the simulated USB device at its default 4 Mbit/s → SourceMonitor (reads in APT
 * windows, SP 800-90B RCT/APT, rolling MCV estimate) → HMAC-SHA-256 conditioning in blocks of
 * whole APT windows (what EntropyService.gather does) — as a ratio of the device's rate (goal
 * ≥ 0.95); (2) the throughput of that same per-window health testing + conditioning alone, on
 * bytes already in memory (goal ≥ 50× the device rate, so they never limit it).
 *
 * Baseline for both: the device rate the driver reads from the device in this run (request
 * 0x16, `info().nominalRate`), 500 000 B/s by default.
 */
import { randomBytes } from 'node:crypto';
import { HmacConditioner } from '../../src/entropy/conditioner.js';
import { HealthTester, MONITOR_ALPHA_LOG2, windowBytes } from '../../src/entropy/health.js';
import { RollingMcvEstimator } from '../../src/entropy/min-entropy.js';
import { SourceMonitor } from '../../src/entropy/source-monitor.js';
import { createSimulatedQuantis } from '../../simulators/quantis/index.js';
import type { BenchRecord } from './types.js';

const BENCH = 'quantis-sim';
const PIPELINE_MS = 6000;
const ALONE_MS = 2000;
/** Bytes taken from the monitor per request: 32 APT windows of 8-bit samples. */
const TAKE_WINDOWS = 32;

export default async function run(): Promise<BenchRecord[]> {
  const { factory } = createSimulatedQuantis({ serial: 'BENCH0001' });
  const conditioner = new HmacConditioner();

  // (1) full path through the monitor, as EntropyService runs it.
  const monitor = new SourceMonitor({ factory, open: { serial: 'BENCH0001' } });
  await monitor.start();
  if (monitor.state !== 'healthy') throw new Error(`simulated Quantis not healthy: ${monitor.reason}`);
  const info = monitor.info!;
  const deviceRate = info.nominalRate ?? 500_000;
  const perByte = monitor.entropyPerByte;
  const window = monitor.windowBytes;
  const blockBytes = conditioner.blockBytesFor(perByte, window);
  const takeBytes = TAKE_WINDOWS * window;
  // Drain the pool the start-up filled, so the measurement starts from an empty buffer.
  await monitor.take(takeBytes);
  let bytes = 0;
  let credited = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < PIPELINE_MS) {
    const raw = await monitor.take(takeBytes);
    credited += conditioner.conditionBlocks(raw, blockBytes, perByte).creditedBits;
    bytes += raw.length;
  }
  const pipelineRate = bytes / ((performance.now() - t0) / 1000);
  const pipelineFailures = monitor.counters.healthFailures;
  await monitor.stop();

  // (2) the monitor's per-window work (RCT/APT + MCV) + conditioning, on bytes in memory.
  const sampleBits = info.sampleBits;
  const tester = new HealthTester({
    sampleBits,
    claimedMinEntropy: info.claimedMinEntropy,
    alphaLog2: MONITOR_ALPHA_LOG2,
  });
  const mcv = new RollingMcvEstimator({ sampleBits, window: 65_536 });
  const data = new Uint8Array(randomBytes(1 << 20));
  const w = windowBytes(sampleBits);
  let trips = 0;
  let alone = 0;
  const t1 = performance.now();
  while (performance.now() - t1 < ALONE_MS) {
    for (let off = 0; off + w <= data.length; off += w) {
      const win = data.subarray(off, off + w);
      mcv.feed(win);
      if (tester.feed(win)) {
        trips++;
        tester.reset();
      }
    }
    conditioner.conditionBlocks(data, blockBytes, perByte);
    alone += data.length;
  }
  const aloneRate = alone / ((performance.now() - t1) / 1000);

  // (3) stages alone, to show which one limits (2).
  tester.reset();
  let healthOnly = 0;
  const t2 = performance.now();
  while (performance.now() - t2 < ALONE_MS / 4) {
    if (tester.feed(data)) tester.reset();
    healthOnly += data.length;
  }
  const healthRate = healthOnly / ((performance.now() - t2) / 1000);
  let condOnly = 0;
  const t3 = performance.now();
  while (performance.now() - t3 < ALONE_MS / 4) {
    conditioner.conditionBlocks(data, blockBytes, perByte);
    condOnly += data.length;
  }
  const condRate = condOnly / ((performance.now() - t3) / 1000);

  const pipelineRatio = pipelineRate / deviceRate;
  const aloneRatio = aloneRate / deviceRate;
  return [
    {
      bench: BENCH,
      metric: 'driver → health → conditioning, sustained',
      value: Math.round(pipelineRate),
      unit: 'B/s',
      baseline: deviceRate,
      ratio: Number(pipelineRatio.toFixed(3)),
      goal: 'ratio ≥ 0.95 of the device rate',
      pass: pipelineRatio >= 0.95,
      note: `${PIPELINE_MS / 1000} s through SourceMonitor.take(${takeBytes}) + conditionBlocks; H = ${info.claimedMinEntropy}/sample; ${Math.round(credited / 8 / (PIPELINE_MS / 1000))} B/s of full-entropy output credited; ${pipelineFailures} RCT/APT trips (expected 0 at the monitors' α = 2^-40 per sample; at 2^-20 an ideal 4 Mbit/s stream would trip RCT about every 30 s)`,
    },
    {
      bench: BENCH,
      metric: 'health tests + conditioning alone',
      value: Math.round(aloneRate),
      unit: 'B/s',
      baseline: deviceRate,
      ratio: Number(aloneRatio.toFixed(1)),
      goal: 'ratio ≥ 50× the device rate',
      pass: aloneRatio >= 50,
      note: `per ${w}-byte APT window: RCT+APT + rolling MCV (as SourceMonitor does), then HMAC-SHA-256 over ${blockBytes}-byte blocks (n_in = ${blockBytes * 8}, h_in = ${blockBytes * perByte} ≥ 320 → 256 bits full entropy each, as EntropyService does); ${trips} trips`,
    },
    {
      bench: BENCH,
      metric: 'health tests alone (RCT+APT)',
      value: Math.round(healthRate),
      unit: 'B/s',
      baseline: deviceRate,
      ratio: Number((healthRate / deviceRate).toFixed(1)),
      goal: 'ratio ≥ 50× the device rate',
      pass: healthRate / deviceRate >= 50,
    },
    {
      bench: BENCH,
      metric: 'conditioning alone (HMAC-SHA-256)',
      value: Math.round(condRate),
      unit: 'B/s',
      baseline: deviceRate,
      ratio: Number((condRate / deviceRate).toFixed(1)),
      goal: 'ratio ≥ 50× the device rate',
      pass: condRate / deviceRate >= 50,
      note: `${blockBytes}-byte blocks per HMAC call`,
    },
  ];
}
