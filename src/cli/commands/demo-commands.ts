import type { Command } from 'commander';
import type { TwoNodeSetup } from '../../demo/setup.js';
import { CliError, type GlobalOptions, setLongRunning } from '../context.js';
import { progressOf } from '../progress.js';

/**
 * `qkm demo`: two qkm nodes, the KME pair and the BB84 link (in a child process) on loopback; two
 * agents establish a session under each posture and exchange sealed messages. `--hold` instead prints one JSON line
 * describing the running setup and keeps it up until SIGINT/SIGTERM.
 */

interface DemoOptions {
  hold?: boolean;
  distance?: number;
  timeScale?: number;
  dir?: string;
}

const positive = (name: string) => (v: string) => {
  const n = v.trim() === '' ? Number.NaN : Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new CliError(`${name} must be a positive number`, 2);
  return n;
};

/** Stops the setup on SIGINT/SIGTERM, then exits 0; a second signal exits at once. */
function holdUntilSignal(setup: TwoNodeSetup): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(130);
    stopping = true;
    process.stderr.write(`qkm demo: ${signal}, stopping\n`);
    // A wedged connection must not keep the process alive forever.
    setTimeout(() => process.exit(1), 10_000).unref();
    setup.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`qkm demo: stop failed: ${(err as Error)?.message ?? String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

async function demoAction(o: DemoOptions, g: GlobalOptions): Promise<void> {
  // The demo (simulated KMEs, X.509, two appliances) loads only when it runs (start-up cost).
  const [{ formatReport, runDemo }, { startTwoNodeSetup }] = await Promise.all([
    import('../../demo/run.js'),
    import('../../demo/setup.js'),
  ]);
  const progress = progressOf(g);
  progress.step('demo: starting the KME pair, the BB84 link, a Provider and two nodes');
  const setup = await startTwoNodeSetup({
    // The KMEs are other machines: in a process of their own, the timings the demo reports do
    // not include their work.
    kmeProcess: true,
    // Three governed agents on the two nodes and one Provider (allowed, blocked, resumed).
    provider: true,
    // The demo run pins the nodes for its plain part and unpins them for the governed one;
    // a held setup is driven by someone else, for either: pinned, as before.
    ...(o.hold ? { pinPeers: true } : {}),
    ...(o.dir ? { baseDir: o.dir } : {}),
    ...(o.distance !== undefined ? { distanceKm: o.distance } : {}),
    ...(o.timeScale !== undefined ? { timeScale: o.timeScale } : {}),
  });
  if (o.hold) {
    progress.done();
    setLongRunning();
    holdUntilSignal(setup);
    process.stdout.write(`${JSON.stringify(setup.describe())}\n`);
    return;
  }
  try {
    const report = await runDemo(setup, { onProgress: (stage) => progress.step(stage) });
    progress.done();
    process.stdout.write(g.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
    if (!report.ok) process.exitCode = 1;
  } finally {
    await setup.stop();
  }
}

export function registerDemoCommands(program: Command): void {
  program
    .command('demo')
    .description(
      'two nodes, the KME pair, a BB84 link and a Provider on loopback; sessions under each posture, then governed agents (allowed, blocked, token-resumed)',
    )
    .option('--hold', 'print one JSON line describing the running setup and run until SIGINT/SIGTERM')
    .option('--distance <km>', 'fibre length of the BB84 link (default 25)', positive('--distance'))
    .option(
      '--time-scale <x>',
      'simulated seconds per real second of the link (default 20)',
      positive('--time-scale'),
    )
    .option('--dir <dir>', 'keep certificates and data dirs here (default: a temp dir removed on exit)')
    .action(async (o: DemoOptions, cmd: Command) => demoAction(o, cmd.optsWithGlobals() as GlobalOptions));
}
