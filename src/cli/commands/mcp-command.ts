import type { Command } from 'commander';
import { type GlobalOptions, clientOf, urlOf } from '../context.js';

/** `qkm mcp`: the appliance's tools for an MCP host (Claude Desktop, IDE agents), over stdio. */
export function registerMcpCommand(program: Command): void {
  program
    .command('mcp')
    .description(
      'serve get_entropy, create_key, take_key, establish_session, seal, open and status to an MCP host over stdio',
    )
    .action(async (_o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      // Same URL and token resolution as every client command; stdout belongs to the protocol.
      const client = await clientOf(opts);
      process.stderr.write(`qkm mcp: serving ${urlOf(opts)} over stdio\n`);
      // Loaded on use: the MCP SDK and zod would add to every other command's start-up.
      const { serveStdio } = await import('../../mcp/stdio.js');
      await serveStdio({ client });
    });
}
