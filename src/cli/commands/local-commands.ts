import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { loadConfig } from '../../core/config.js';
import type { EntropySourceFactory } from '../../../drivers/entropy/interface.js';
import { osEntropyFactory } from '../../../drivers/entropy/os/index.js';
import { SIMULATED_QUANTIS_SERIAL, createSimulatedQuantis } from '../../../simulators/quantis/index.js';
import { type CavpReport, formatCavpReport, runCavp } from '../../entropy/cavp.js';
import { type DrbgMechanism, parseMechanism } from '../../entropy/drbg/index.js';
import {
  hardwareFactories,
  listAllSources,
  type SourceListing,
  type SourceTestReport,
  testSource,
} from '../../entropy/source-check.js';
import { CliError, type GlobalOptions, print } from '../context.js';
import { progressOf } from '../progress.js';

/**
 * Commands that run on this host without the appliance: `selftest drbg` (NIST CAVP known
 * answers through our SP 800-90A DRBGs) and `sources list|test` (what entropy hardware the
 * drivers see, and whether one device passes the SP 800-90B health tests).
 */

/**
 * Serial number of the simulated Quantis the CLI adds in simulator mode: the appliance's own,
 * so that `sources list --simulated` prints the id `qkm status` shows and `sources test` finds.
 */
export const CLI_SIMULATED_QUANTIS_SERIAL = SIMULATED_QUANTIS_SERIAL;

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new CliError(`${name} must be a positive integer`, 2);
  return n;
};

function parseMechanismOption(v: string): DrbgMechanism {
  const m = parseMechanism(v);
  if (m === undefined) throw new CliError('--mechanism must be CTR_DRBG, HMAC_DRBG or Hash_DRBG', 2);
  return m;
}

/** Reads a text file the operator named; a missing or unreadable file is a one-line CLI error. */
async function readOperatorFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'ENOENT'
        ? 'no such file'
        : e.code === 'EACCES'
          ? 'permission denied'
          : e.code === 'EISDIR'
            ? 'is a directory'
            : (e.code ?? e.message);
    throw new CliError(`cannot read ${what} ${path}: ${why}`, 1, 'FILE_UNREADABLE');
  }
}

/** Why a CAVP run does not count as a pass, or undefined when it does. */
export function cavpVerdict(report: CavpReport): string | undefined {
  const unsupported = report.sections.filter((s) => s.unsupported !== undefined).map((s) => s.name);
  const problems: string[] = [];
  if (report.failed > 0) problems.push(`${report.failed} case(s) failed`);
  if (unsupported.length > 0) problems.push(`unsupported section(s): ${unsupported.join(', ')}`);
  // A file with no test cases proves nothing; do not let it pass silently.
  if (report.passed === 0 && report.failed === 0) problems.push('no test cases found');
  return problems.length > 0 ? problems.join('; ') : undefined;
}

/**
 * The entropy source families `sources` looks at: the hardware drivers (libusb Quantis, serial
 * TRNGs incl. `QKM_SERIAL_RNG` paths), the OS CSPRNG, and in simulator mode a simulated Quantis
 * driven by the real Quantis driver.
 */
export function cliSourceFactories(options: { simulated?: boolean } = {}): EntropySourceFactory[] {
  const factories = [...hardwareFactories(), osEntropyFactory];
  if (options.simulated === true || process.env.QKM_MODE === 'simulator') {
    factories.push(createSimulatedQuantis({ serial: CLI_SIMULATED_QUANTIS_SERIAL }).factory);
  }
  return factories;
}

/**
 * The factory that owns `id`: the one that lists it, else the family named by the id's prefix
 * (a configured serial path may be openable without being enumerable).
 */
async function factoryFor(factories: readonly EntropySourceFactory[], id: string) {
  for (const f of factories) {
    const listed = await f.list().catch(() => []);
    if (listed.some((d) => d.id === id)) return f;
  }
  return factories.find((f) => id === f.driver || id.startsWith(`${f.driver}:`));
}

function formatListing(listing: SourceListing): string {
  const lines: string[] = [];
  if (listing.sources.length === 0) lines.push('no entropy sources found');
  else {
    const rows = listing.sources.map((s) => [s.id, s.driver, s.simulated ? 'yes' : 'no', s.description]);
    const header = ['ID', 'DRIVER', 'SIMULATED', 'DESCRIPTION'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) =>
      cells
        .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd();
    lines.push(line(header), ...rows.map(line));
  }
  for (const e of listing.errors) lines.push(`warning: ${e.driver} could not list devices: ${e.message}`);
  return lines.join('\n');
}

function formatSourceReport(r: SourceTestReport): string {
  const info = r.info;
  const lines = [
    info === undefined
      ? `source ${r.id}`
      : `source ${r.id}: ${info.description} [${info.kind}${info.simulated ? ', simulated' : ''}]`,
  ];
  const kbps = (r.rate / 1000).toFixed(1);
  const ratio = r.rateRatio === undefined ? '' : ` (${r.rateRatio.toFixed(2)} × nominal)`;
  lines.push(`  read ${r.bytesRead} bytes in ${r.seconds.toFixed(3)} s: ${kbps} kB/s${ratio}`);
  if (r.error === undefined || r.bytesRead > 0) {
    lines.push(`  start-up test: ${r.startup.passed ? 'pass' : `FAIL: ${r.startup.failure ?? 'not run'}`}`);
    const c = r.continuous;
    const cut = `RCT cutoff ${c.rctCutoff}, APT cutoff ${c.aptCutoff}/${c.aptWindow}`;
    lines.push(
      `  continuous tests (${cut}): ${
        c.passed ? 'pass' : `FAIL${c.test ? ` (${c.test})` : ''}: ${c.failure ?? 'not completed'}`
      }`,
    );
  }
  if (r.claimedMinEntropy !== undefined || r.mcvEstimate !== undefined) {
    lines.push(
      `  min-entropy: claimed ${r.claimedMinEntropy ?? '?'} bits/sample` +
        `${r.mcvEstimate === undefined ? '' : `, MCV estimate ${r.mcvEstimate.toFixed(3)} (SP 800-90B §6.3.1)`}`,
    );
  }
  if (r.error !== undefined) lines.push(`  error (${r.error.failure}): ${r.error.message}`);
  lines.push(`verdict: ${r.verdict === 'pass' ? 'PASS' : 'FAIL'}`);
  return lines.join('\n');
}

export function registerLocalCommands(program: Command): void {
  const selftest = program.command('selftest').description('local known-answer self-tests');
  selftest
    .command('drbg')
    .description('run a NIST CAVP DRBG response file (.rsp) through the SP 800-90A DRBGs')
    .requiredOption('--vectors <file>', 'CAVP .rsp file (e.g. CTR_DRBG.rsp, HMAC_DRBG.rsp, Hash_DRBG.rsp)')
    .option(
      '--mechanism <name>',
      'CTR_DRBG | HMAC_DRBG | Hash_DRBG (default: from the file header)',
      parseMechanismOption,
    )
    .action(async (o: { vectors: string; mechanism?: DrbgMechanism }, cmd: Command) => {
      const opts = globals(cmd);
      const text = await readOperatorFile(o.vectors, 'vectors file');
      const progress = progressOf(opts);
      const report = runCavp(text, {
        ...(o.mechanism === undefined ? {} : { mechanism: o.mechanism }),
        onGroup: (g) => progress.step(`selftest: [${g.name}] (${g.casesDone}/${g.casesTotal} cases done)`),
      });
      progress.done();
      print(opts, report, () => formatCavpReport(report).join('\n'));
      const problem = cavpVerdict(report);
      if (problem !== undefined)
        throw new CliError(`DRBG self-test failed: ${problem}`, 1, 'SELFTEST_FAILED');
    });

  const sources = program.command('sources').description('entropy sources on this host');
  sources
    .command('list')
    .description('list the entropy sources the drivers can see')
    .option('--simulated', 'include the simulated Quantis (also when QKM_MODE=simulator)')
    .action(async (o: { simulated?: boolean }, cmd: Command) => {
      const opts = globals(cmd);
      const listing = await listAllSources(cliSourceFactories(o));
      print(opts, listing, () => formatListing(listing));
    });
  sources
    .command('test <id>')
    .description('read a sample from one source and run the SP 800-90B health tests on it')
    .option('--samples <bytes>', 'bytes to read (default 262144)', positiveInt('--samples'))
    .option('--simulated', 'include the simulated Quantis (also when QKM_MODE=simulator)')
    .action(async (id: string, o: { samples?: number; simulated?: boolean }, cmd: Command) => {
      const opts = globals(cmd);
      const factory = await factoryFor(cliSourceFactories(o), id);
      if (factory === undefined)
        throw new CliError(`no entropy source ${id} (see \`qkm sources list\`)`, 1, 'SOURCE_NOT_FOUND');
      // The same α as the appliance this host runs (its config file, env), default 2⁻⁴⁰.
      const config = loadConfig({ overrides: opts.data ? { dataDir: opts.data } : {} });
      const progress = progressOf(opts);
      progress.step(`sources test: opening ${id}`);
      const report = await testSource(factory, id, {
        ...(o.samples === undefined ? {} : { samples: o.samples }),
        alphaLog2: config.entropy.healthAlphaLog2,
        onProgress: (done, total) =>
          progress.tick(`sources test: ${id}: ${done}/${total} bytes read and tested`),
      });
      progress.done();
      print(opts, report, () => formatSourceReport(report));
      if (report.verdict !== 'pass') {
        const why =
          report.error?.message ??
          (report.startup.passed ? report.continuous.failure : report.startup.failure) ??
          'health tests failed';
        throw new CliError(`source ${id} failed: ${why}`, 1, 'SOURCE_TEST_FAILED');
      }
    });
}
