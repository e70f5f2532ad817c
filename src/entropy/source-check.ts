/**
 * What `qkm sources list` and `qkm sources test <id>` do: find every entropy source the
 * drivers can see, and check one device — read a sample, run the SP 800-90B start-up and
 * continuous health tests (RCT + APT) with the source's claimed min-entropy, and compute the
 * §6.3.1 most-common-value min-entropy estimate so an operator can compare it with the claim.
 * The report never contains sample values.
 */
import type {
  EntropySourceDescriptor,
  EntropySourceFactory,
  EntropySourceInfo,
} from '../../drivers/entropy/interface.js';
import { createQuantisFactory } from '../../drivers/entropy/quantis-usb/index.js';
import { createSerialTrngFactory } from '../../drivers/entropy/serial-trng/index.js';
import { HealthTester, MONITOR_ALPHA_LOG2, runStartupTest, startupBytes } from './health.js';
import { mostCommonValueEstimate } from './min-entropy.js';

/** The hardware driver families (Quantis USB over libusb, serial TRNGs over the platform binding). */
export function hardwareFactories(): EntropySourceFactory[] {
  return [createQuantisFactory(), createSerialTrngFactory()];
}

export interface SourceListing {
  sources: EntropySourceDescriptor[];
  /** Families whose `list()` threw (a broken host setup); the others are still listed. */
  errors: Array<{ driver: string; message: string }>;
}

/** Lists every device of every family; one family failing does not hide the others. */
export async function listAllSources(factories: readonly EntropySourceFactory[]): Promise<SourceListing> {
  const out: SourceListing = { sources: [], errors: [] };
  const results = await Promise.allSettled(factories.map((f) => f.list()));
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') out.sources.push(...r.value);
    else
      out.errors.push({
        driver: factories[i]!.driver,
        message: r.reason instanceof Error ? r.reason.message : String(r.reason),
      });
  });
  return out;
}

export interface SourceTestOptions {
  /** Bytes to read (default 256 KiB; at least the 1024-sample start-up test). */
  samples?: number;
  /** Bytes per read (default 16 KiB). */
  chunk?: number;
  /** Override the claimed min-entropy for the test. */
  claimedMinEntropy?: number;
  /** −log2 of the health tests' α per sample (default MONITOR_ALPHA_LOG2, as the running appliance). */
  alphaLog2?: number;
  /** Called after each read (the CLI's progress line). */
  onProgress?: (bytesRead: number, samples: number) => void;
}

export interface SourceTestReport {
  id: string;
  info?: EntropySourceInfo;
  bytesRead: number;
  seconds: number;
  /** Measured bytes/s. */
  rate: number;
  /** Measured rate over the device's nominal rate, when it states one. */
  rateRatio?: number;
  startup: { passed: boolean; failure?: string };
  continuous: {
    passed: boolean;
    test?: 'RCT' | 'APT';
    failure?: string;
    rctCutoff: number;
    aptCutoff: number;
    aptWindow: number;
  };
  /** SP 800-90B §6.3.1 MCV estimate over everything read, bits per sample. */
  mcvEstimate?: number;
  claimedMinEntropy?: number;
  /** The read failed: which flag and why (no sample values). */
  error?: { failure: 'disconnected' | 'canceled' | 'timeout' | 'io' | 'other'; message: string };
  verdict: 'pass' | 'fail';
}

/**
 * Opens `id` with `factory`, reads `samples` bytes and tests them. Never throws for device
 * faults: they land in `report.error` with verdict `fail`.
 */
export async function testSource(
  factory: EntropySourceFactory,
  id: string,
  options: SourceTestOptions = {},
): Promise<SourceTestReport> {
  const samples = Math.max(options.samples ?? 256 * 1024, startupBytes(8));
  const chunk = options.chunk ?? 16 * 1024;
  const report: SourceTestReport = {
    id,
    bytesRead: 0,
    seconds: 0,
    rate: 0,
    startup: { passed: false },
    continuous: { passed: false, rctCutoff: 0, aptCutoff: 0, aptWindow: 0 },
    verdict: 'fail',
  };
  let source: Awaited<ReturnType<EntropySourceFactory['open']>> | undefined;
  const collected: Uint8Array[] = [];
  const t0 = performance.now();
  try {
    source = await factory.open(
      options.claimedMinEntropy === undefined ? { id } : { id, claimedMinEntropy: options.claimedMinEntropy },
    );
    const info = source.info();
    report.info = info;
    report.claimedMinEntropy = info.claimedMinEntropy;
    const testerOptions = {
      sampleBits: info.sampleBits,
      claimedMinEntropy: info.claimedMinEntropy,
      alphaLog2: options.alphaLog2 ?? MONITOR_ALPHA_LOG2,
    };
    const tester = new HealthTester(testerOptions);
    report.continuous.rctCutoff = tester.rctCutoff;
    report.continuous.aptCutoff = tester.aptCutoff;
    report.continuous.aptWindow = tester.aptWindow;

    const first = await source.read(startupBytes(info.sampleBits));
    collected.push(first);
    report.bytesRead += first.length;
    options.onProgress?.(report.bytesRead, samples);
    const startupFailure = runStartupTest(first, testerOptions);
    report.startup = startupFailure ? { passed: false, failure: startupFailure.message } : { passed: true };

    let failure = null;
    while (report.bytesRead < samples) {
      const bytes = await source.read(Math.min(chunk, samples - report.bytesRead));
      collected.push(bytes);
      report.bytesRead += bytes.length;
      failure ??= tester.feed(bytes);
      options.onProgress?.(report.bytesRead, samples);
    }
    report.continuous.passed = failure === null;
    if (failure) {
      report.continuous.test = failure.test;
      report.continuous.failure = failure.message;
    }
  } catch (err) {
    const e = err as {
      disconnected?: boolean;
      canceled?: boolean;
      timeout?: boolean;
      io?: boolean;
      message?: string;
    };
    const failure = e.disconnected
      ? 'disconnected'
      : e.canceled
        ? 'canceled'
        : e.timeout
          ? 'timeout'
          : e.io
            ? 'io'
            : 'other';
    report.error = { failure, message: e.message ?? String(err) };
  } finally {
    await source?.close().catch(() => undefined);
  }
  report.seconds = (performance.now() - t0) / 1000;
  report.rate = report.seconds > 0 ? report.bytesRead / report.seconds : 0;
  const nominal = report.info?.nominalRate;
  if (nominal) report.rateRatio = report.rate / nominal;
  if (report.bytesRead >= 2 && report.info?.sampleBits === 8) {
    const all = new Uint8Array(report.bytesRead);
    let off = 0;
    for (const c of collected) {
      all.set(c, off);
      off += c.length;
      c.fill(0);
    }
    report.mcvEstimate = mostCommonValueEstimate(all);
    all.fill(0);
  }
  report.verdict = !report.error && report.startup.passed && report.continuous.passed ? 'pass' : 'fail';
  return report;
}
