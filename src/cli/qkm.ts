import { Command, CommanderError } from 'commander';
import { QkmApiError, QkmTransportError } from '../client/client.js';
import { VERSION } from '../core/version.js';
import { registerApplianceCommands } from './commands/appliance-commands.js';
import { registerClientCommands } from './commands/client-commands.js';
import { registerDemoCommands } from './commands/demo-commands.js';
import { registerGovernanceCommands } from './commands/governance-commands.js';
import { registerLocalCommands } from './commands/local-commands.js';
import { registerProviderCommands } from './commands/provider-commands.js';
import { registerSessionCommands } from './commands/session-commands.js';
import { registerSimCommands } from './commands/sim-commands.js';
import { CliError } from './context.js';

/**
 * `qkm`: the operator's and agent's command line. Commands that need the store talk to the
 * running appliance over its API (LevelDB allows one process per data dir); `start`, `init`,
 * `selftest`, `sources` and `sim` run locally.
 */
export function buildProgram(): Command {
  const program = new Command('qkm')
    .description('quantum-secure key manager')
    .version(VERSION)
    .option('--url <url>', 'appliance URL (default $QKM_URL or http://127.0.0.1:$QKM_PORT|7300)')
    .option('--data <dir>', 'data directory (default $QKM_DATA or ./.qkm)')
    .option('--token <token>', 'agent bearer token (default $QKM_TOKEN or the data dir token file)')
    .option('--token-file <file>', 'file holding the agent token')
    .option('--json', 'machine-readable JSON output')
    .showHelpAfterError()
    .exitOverride();
  registerApplianceCommands(program);
  registerClientCommands(program);
  registerSessionCommands(program);
  registerGovernanceCommands(program);
  registerLocalCommands(program);
  registerProviderCommands(program);
  registerSimCommands(program);
  registerDemoCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof QkmApiError) {
      process.stderr.write(`qkm: ${err.code}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof QkmTransportError || err instanceof CliError) {
      process.stderr.write(`qkm: ${err.message}\n`);
      return err instanceof CliError ? err.exitCode : 1;
    }
    process.stderr.write(`qkm: ${(err as Error)?.message ?? String(err)}\n`);
    return 1;
  }
}
