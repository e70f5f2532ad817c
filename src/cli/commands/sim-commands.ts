import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import {
  BB84_SCHEMES,
  type Bb84Report,
  type Bb84Scheme,
  bb84Report,
  bb84Sweep,
  formatSweepTable,
  renderSweepSvg,
  type SweepRow,
} from '../../../simulators/bb84/index.js';
import type { SimCertFiles } from '../../../simulators/kme/certs.js';
import type { RunningKmePair } from '../../../simulators/kme/pair.js';
import { SIM_FAULT_KINDS } from '../../api/routes/sim.js';
import { CliError, type GlobalOptions, clientOf, print, setLongRunning } from '../context.js';

/**
 * `qkm sim …`: the simulators on their own — the BB84 link model (one distance or a sweep with a
 * chart), the simulator's certificates, and an ETSI GS QKD 014 KME pair for third-party clients.
 */

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

/** Usage errors exit 2, like commander's own. */
const usage = (message: string) => new CliError(message, 2);

const finiteNumber =
  (name: string, min = Number.NEGATIVE_INFINITY) =>
  (v: string) => {
    const n = v.trim() === '' ? Number.NaN : Number(v);
    if (!Number.isFinite(n)) throw usage(`${name} must be a number`);
    if (n < min) throw usage(`${name} must be ≥ ${min}`);
    return n;
  };

const port = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw usage(`${name} must be a port number (0-65535)`);
  return n;
};

function parseScheme(v: string): Bb84Scheme {
  if (!(BB84_SCHEMES as readonly string[]).includes(v))
    throw usage(`--scheme must be one of ${BB84_SCHEMES.join(', ')}`);
  return v as Bb84Scheme;
}

/** `from:to:step`, all in km. */
export function parseSweep(v: string): { from: number; to: number; step: number } {
  const parts = v.split(':');
  const nums = parts.map((p) => (p.trim() === '' ? Number.NaN : Number(p)));
  if (parts.length !== 3 || nums.some((n) => !Number.isFinite(n)))
    throw usage('--sweep must be from:to:step in km, e.g. 0:150:5');
  const [from, to, step] = nums as [number, number, number];
  if (from < 0) throw usage('--sweep: from must be ≥ 0');
  if (!(step > 0)) throw usage('--sweep: step must be > 0');
  if (to < from) throw usage('--sweep: to must be ≥ from');
  return { from, to, step };
}

/** The model's own argument checks (μ range, ν < μ, row limit) surface as usage errors. */
function modelCall<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof RangeError || err instanceof TypeError) throw usage(err.message);
    throw err;
  }
}

function si(bps: number, unit = 'bit/s'): string {
  if (!Number.isFinite(bps)) return '∞';
  if (bps === 0) return `0 ${unit}`;
  const steps: Array<[number, string]> = [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [scale, prefix] of steps)
    if (bps >= scale) return `${(bps / scale).toPrecision(4)} ${prefix}${unit}`;
  return `${bps.toPrecision(4)} ${unit}`;
}

function seconds(s: number): string {
  if (!Number.isFinite(s)) return 'never';
  if (s >= 1) return `${s.toPrecision(4)} s`;
  if (s >= 1e-3) return `${(s * 1e3).toPrecision(4)} ms`;
  return `${(s * 1e6).toPrecision(4)} µs`;
}

const perPulse = (x: number) => (x > 0 ? x.toExponential(3) : '0');

export function formatBb84Report(r: Bb84Report, muPinned: boolean): string {
  const l = r.latency;
  const lines = [
    `BB84, ${r.scheme === 'none' ? 'no decoy (GLLP)' : `${r.scheme} decoy`}, ${r.distanceKm} km of fibre`,
    `  transmittance η      ${r.eta.toExponential(3)}`,
    `  key rate             ${perPulse(r.ratePerPulse)} bits/pulse = ${si(r.bitsPerSecond)}`,
    `  QBER                 ${r.ratePerPulse > 0 ? `${(r.qber * 100).toFixed(2)}%` : `${(r.qber * 100).toFixed(2)}% (no secure key)`}`,
    `  μ                    ${r.muUsed.toFixed(4)} (${muPinned ? 'pinned' : 'optimised for this distance'})`,
    `  ν                    ${r.nuUsed === null ? '- (not used by this scheme)' : r.nuUsed}`,
    `  max distance         ${r.maxDistanceKm.toFixed(1)} km`,
    `  PLOB bound           ${perPulse(r.plobPerPulse)} bits/pulse = ${si(r.plobBitsPerSecond)}`,
    `  latency              first ${l.blockBits}-bit block after ${seconds(l.firstBlockLatencyS)}, ` +
      `then one every ${seconds(l.blockIntervalS)} (${si(l.deliveredRateBps)} delivered` +
      `${l.postProcessingBound ? ', post-processing bound' : ''})`,
    `    accumulation ${seconds(l.accumulationS)}, propagation ${seconds(l.propagationS)}, ` +
      `post-processing ${seconds(l.postProcessingS)}, classical ${seconds(l.classicalS)}`,
  ];
  return lines.join('\n');
}

/** An SVG → PNG converter found on this host. */
interface PngConverter {
  name: string;
  args(svg: string, png: string): [string, string[]];
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; out: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) =>
      done({ ok: err === null, out: `${stdout}${stderr}` }),
    );
  });
}

/**
 * Looks for rsvg-convert, then ImageMagick (`magick`, then `convert`). A `convert` that does not
 * identify itself as ImageMagick on `-version` is not used: some hosts put a stand-in there.
 */
export async function findPngConverter(): Promise<PngConverter | undefined> {
  const rsvg = await run('rsvg-convert', ['--version'], 5000);
  if (rsvg.ok && /rsvg/i.test(rsvg.out))
    return { name: 'rsvg-convert', args: (svg, png) => ['rsvg-convert', ['-f', 'png', '-o', png, svg]] };
  for (const im of ['magick', 'convert']) {
    const v = await run(im, ['-version'], 5000);
    if (v.ok && /ImageMagick/.test(v.out)) return { name: im, args: (svg, png) => [im, [svg, png]] };
  }
  return undefined;
}

async function writePng(svgText: string, pngPath: string): Promise<string> {
  const converter = await findPngConverter();
  if (converter === undefined)
    throw new CliError(
      'no SVG-to-PNG converter found (install librsvg2-bin for rsvg-convert, or ImageMagick); use --svg <file> instead',
    );
  const dir = await mkdtemp(join(tmpdir(), 'qkm-bb84-'));
  try {
    const svg = join(dir, 'keyrate.svg');
    await writeFile(svg, svgText);
    const [cmd, args] = converter.args(svg, resolve(pngPath));
    const r = await run(cmd, args, 60_000);
    if (!r.ok)
      throw new CliError(`${converter.name} could not write ${pngPath}: ${r.out.trim().split('\n')[0]}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return converter.name;
}

interface Bb84Options {
  distance?: number;
  sweep?: { from: number; to: number; step: number };
  scheme?: Bb84Scheme;
  mu?: number;
  nu?: number;
  svg?: string;
  png?: string;
}

async function bb84Action(o: Bb84Options, opts: GlobalOptions): Promise<void> {
  if ((o.distance === undefined) === (o.sweep === undefined))
    throw usage('give exactly one of --distance <km> or --sweep from:to:step');
  if (o.distance !== undefined) {
    if (o.svg !== undefined || o.png !== undefined) throw usage('--svg and --png need --sweep');
    const distanceKm = o.distance;
    const report = modelCall(() =>
      bb84Report({
        distanceKm,
        ...(o.scheme === undefined ? {} : { scheme: o.scheme }),
        ...(o.mu === undefined ? {} : { mu: o.mu }),
        ...(o.nu === undefined ? {} : { nu: o.nu }),
      }),
    );
    print(opts, report, () => formatBb84Report(report, o.mu !== undefined));
    return;
  }
  const sweep = o.sweep!;
  const rows: SweepRow[] = modelCall(() =>
    bb84Sweep({
      ...sweep,
      ...(o.scheme === undefined ? {} : { scheme: o.scheme }),
      ...(o.mu === undefined ? {} : { mu: o.mu }),
      ...(o.nu === undefined ? {} : { nu: o.nu }),
    }),
  );
  const files: { svg?: string; png?: string } = {};
  if (o.svg !== undefined || o.png !== undefined) {
    const svgText = renderSweepSvg(rows);
    if (o.svg !== undefined) {
      await writeFile(o.svg, svgText);
      files.svg = resolve(o.svg);
    }
    if (o.png !== undefined) {
      await writePng(svgText, o.png);
      files.png = resolve(o.png);
    }
  }
  print(opts, { rows, files }, () => formatSweepTable(rows).trimEnd());
  if (!opts.json) for (const f of Object.values(files)) process.stderr.write(`wrote ${f}\n`);
}

function listCertFiles(files: SimCertFiles): string[] {
  const all = [files.ca, ...Object.values(files.kmes), ...Object.values(files.saes)];
  return all.flatMap((f) => [f.cert, f.key]);
}

/** Stops the pair on SIGINT/SIGTERM, then exits 0; a second signal exits at once. */
function stopOnSignal(running: RunningKmePair): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(130);
    stopping = true;
    process.stderr.write(`qkm sim kme: ${signal}, stopping\n`);
    // A wedged peer connection must not keep the process alive forever.
    setTimeout(() => process.exit(1), 5000).unref();
    running.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`qkm sim kme: stop failed: ${(err as Error)?.message ?? String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

export function registerSimCommands(program: Command): void {
  const sim = program.command('sim').description('simulators: BB84 link model, KME pair, certificates');

  sim
    .command('fault <kind>')
    .description(
      `inject a fault into the running appliance's simulated Quantis (admin token; simulator mode only): ${SIM_FAULT_KINDS.join(', ')}`,
    )
    .option(
      '--fraction <f>',
      'bias: share of bytes forced to 0x00 (0-1, default 0.5)',
      finiteNumber('--fraction', 0),
    )
    .action(async (kind: string, o: { fraction?: number }, cmd: Command) => {
      if (!(SIM_FAULT_KINDS as readonly string[]).includes(kind)) {
        throw usage(`fault kind must be one of ${SIM_FAULT_KINDS.join(', ')}`);
      }
      const opts = globals(cmd);
      const faults = await (await clientOf(opts, true)).sim.fault(kind, o.fraction);
      print(opts, faults, () =>
        Object.entries(faults)
          .map(([k, v]) => `${k}=${String(v)}`)
          .join(' '),
      );
    });

  sim
    .command('bb84')
    .description('decoy-state BB84 key rate at one distance, or a sweep with an optional chart')
    .option('--distance <km>', 'fibre length, km', finiteNumber('--distance', 0))
    .option('--sweep <from:to:step>', 'distances in km, e.g. 0:150:5', parseSweep)
    .option(
      '--scheme <scheme>',
      'infinite | vacuum-weak | none (default: vacuum-weak; a sweep shows all three)',
      parseScheme,
    )
    .option('--mu <x>', 'pin the signal intensity μ (default: optimised per distance)', finiteNumber('--mu'))
    .option('--nu <y>', 'weak decoy intensity ν for vacuum-weak (default 0.05)', finiteNumber('--nu'))
    .option('--svg <file>', 'with --sweep: write the key-rate chart as SVG')
    .option('--png <file>', 'with --sweep: write the chart as PNG (needs rsvg-convert or ImageMagick)')
    .action(async (o: Bb84Options, cmd: Command) => bb84Action(o, globals(cmd)));

  sim
    .command('certs')
    .description('write the simulator CA and certificates for kme-a, kme-b, sae-a, sae-b')
    .requiredOption('--out <dir>', 'output directory')
    .action(async (o: { out: string }, cmd: Command) => {
      const opts = globals(cmd);
      // X.509 and the KME simulator load only for the commands that use them (start-up cost).
      const { generateSimCerts } = await import('../../../simulators/kme/certs.js');
      const files = await generateSimCerts(resolve(o.out));
      print(opts, files, () =>
        [`wrote to ${files.dir}:`, ...listCertFiles(files).map((f) => `  ${f}`)].join('\n'),
      );
    });

  sim
    .command('kme')
    .description('run an ETSI GS QKD 014 KME pair fed by a simulated BB84 link (until Ctrl-C)')
    .requiredOption('--certs <dir>', 'directory written by `qkm sim certs`')
    .option('--distance <km>', 'fibre length of the simulated link, km', finiteNumber('--distance', 0), 25)
    .option('--port-a <port>', 'kme-a SAE API port (0 = ephemeral)', port('--port-a'), 8001)
    .option('--port-b <port>', 'kme-b SAE API port (0 = ephemeral)', port('--port-b'), 8002)
    .action(async (o: { certs: string; distance: number; portA: number; portB: number }) => {
      let running: RunningKmePair;
      const { runKmePairFromCerts } = await import('../../../simulators/kme/pair.js');
      try {
        running = await runKmePairFromCerts({
          certsDir: o.certs,
          distanceKm: o.distance,
          ports: { a: o.portA, b: o.portB },
        });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'ENOENT')
          throw new CliError(
            `certificates missing in ${resolve(o.certs)} (${e.path ?? e.message}); run \`qkm sim certs --out ${o.certs}\` first`,
          );
        if (e.code === 'EADDRINUSE') throw new CliError(`port in use: ${e.message}; pick --port-a/--port-b`);
        throw err;
      }
      setLongRunning();
      stopOnSignal(running);
      // Always one JSON line on stdout, so scripts can read the URLs; the hint goes to stderr.
      process.stdout.write(`${JSON.stringify(running.description)}\n`);
      const [a, b] = running.description.kmes;
      process.stderr.write(
        `qkm sim kme: ${a?.id} ${a?.url} (${a?.saes.join(',')}), ${b?.id} ${b?.url} (${b?.saes.join(',')}); ` +
          `${running.description.link.distance_km} km link; Ctrl-C to stop\n`,
      );
    });
}
