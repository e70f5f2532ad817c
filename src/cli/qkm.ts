import { Command, CommanderError } from 'commander';
import { QkmApiError, QkmTransportError } from '../client/client.js';
import { VERSION } from '../core/version.js';
import { registerApplianceCommands } from './commands/appliance-commands.js';
import { registerClientCommands } from './commands/client-commands.js';
import { registerDemoCommands } from './commands/demo-commands.js';
import { registerGovernanceCommands } from './commands/governance-commands.js';
import { registerLocalCommands } from './commands/local-commands.js';
import { registerMcpCommand } from './commands/mcp-command.js';
import { registerProviderCommands } from './commands/provider-commands.js';
import { registerSessionCommands } from './commands/session-commands.js';
import { registerSimCommands } from './commands/sim-commands.js';
import { ConfigError } from '../core/config.js';
import { PortInUseError } from '../core/port.js';
import { CliError, EXIT } from './context.js';

/**
 * `qkm`: the operator's and agent's command line. Commands that need the store talk to the
 * running appliance over its API (LevelDB allows one process per data dir); `start`, `init`,
 * `selftest`, `sources` and `sim` run locally.
 */
export function buildProgram(argv: readonly string[] = []): Command {
  const program = new Command('qkm')
    .description('quantum-secure key manager')
    .version(VERSION)
    .option('--url <url>', 'appliance URL (default $QKM_URL or http://127.0.0.1:$QKM_PORT|7300)')
    .option('--data <dir>', 'data directory (default $QKM_DATA or ./.qkm)')
    .option('--token <token>', 'agent bearer token (default $QKM_TOKEN or the data dir token file)')
    .option('--token-file <file>', 'file holding the agent token')
    .option('--json', 'machine-readable JSON output; errors are {error, message} on stderr')
    .option('--quiet', 'no progress output on stderr')
    .option('--progress', 'progress on stderr even when it is not a terminal')
    .exitOverride();
  const json = wantsJson(argv);
  if (json) {
    // Commander's own usage errors become the JSON error `main` writes, not text and help.
    program.configureOutput({ outputError: () => undefined });
  } else {
    program.showHelpAfterError();
  }
  registerApplianceCommands(program);
  registerClientCommands(program);
  registerSessionCommands(program);
  registerGovernanceCommands(program);
  registerLocalCommands(program);
  registerProviderCommands(program);
  registerSimCommands(program);
  registerDemoCommands(program);
  registerMcpCommand(program);
  return program;
}

/** `--json` anywhere before `--` (the global option may follow the subcommand). */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/** What a failure is called (`error` in JSON), what to say, and the exit code (see EXIT). */
function describeFailure(err: unknown): { error: string; message: string; exitCode: number } {
  if (err instanceof CommanderError) {
    // Commander's messages start with "error: "; the JSON field already says so.
    return { error: 'USAGE', message: err.message.replace(/^error: /, ''), exitCode: EXIT.USAGE };
  }
  if (err instanceof QkmApiError) return { error: err.code, message: err.message, exitCode: EXIT.FAILED };
  if (err instanceof QkmTransportError) {
    return { error: 'UNREACHABLE', message: err.message, exitCode: EXIT.UNREACHABLE };
  }
  if (err instanceof CliError) return { error: err.code, message: err.message, exitCode: err.exitCode };
  if (err instanceof ConfigError) return { error: 'CONFIG', message: err.message, exitCode: EXIT.FAILED };
  if (err instanceof PortInUseError) {
    return { error: 'PORT_IN_USE', message: err.message, exitCode: EXIT.FAILED };
  }
  return { error: 'FAILED', message: (err as Error)?.message ?? String(err), exitCode: EXIT.FAILED };
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram(argv);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    // --help and --version end through exitOverride with code 0.
    if (err instanceof CommanderError && err.exitCode === 0) return 0;
    const f = describeFailure(err);
    if (wantsJson(argv)) {
      process.stderr.write(`${JSON.stringify({ error: f.error, message: f.message })}\n`);
    } else if (!(err instanceof CommanderError)) {
      // Commander has already written its own message (and the help hint).
      process.stderr.write(`qkm: ${err instanceof QkmApiError ? `${err.code}: ` : ''}${f.message}\n`);
    }
    return f.exitCode;
  }
}
