import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { type QkmMcpOptions, createQkmMcpServer } from './server.js';

/**
 * Serves the MCP tools on this process's stdin/stdout until the host closes stdin (or sends
 * SIGTERM/SIGINT), then wipes the held sessions. Nothing but protocol messages may go to stdout.
 */
export async function serveStdio(options: QkmMcpOptions): Promise<void> {
  const { server, sessions } = createQkmMcpServer(options);
  const transport = new StdioServerTransport();
  await server.connect(transport);
  await new Promise<void>((resolve) => {
    const done = (): void => {
      process.stdin.off('end', done);
      process.off('SIGTERM', done);
      process.off('SIGINT', done);
      resolve();
    };
    process.stdin.once('end', done);
    process.once('SIGTERM', done);
    process.once('SIGINT', done);
  });
  sessions.clear();
  await server.close();
}
