import { createServer } from 'node:net';

/** The listen address is taken (another qkm, or anything else, is bound to it). */
export class PortInUseError extends Error {
  readonly code = 'PORT_IN_USE';
  constructor(
    readonly host: string,
    readonly port: number,
  ) {
    super(
      `${host.includes(':') ? `[${host}]` : host}:${port} is already in use (another qkm running?); ` +
        'choose another with --port or QKM_PORT. Nothing was written.',
    );
    this.name = 'PortInUseError';
  }
}

/**
 * Binds `host:port` and lets it go again, so that start-up can refuse a taken port before it
 * writes anything (data dir, KEK, token files, node identity, audit records). Another process
 * may still take the port between this check and the real listen; then the listen fails as
 * before, after the state was created — the check narrows that window, it cannot close it.
 * Port 0 (any free port) is never taken, so it is not checked. Errors other than EADDRINUSE
 * (EACCES on a privileged port, EADDRNOTAVAIL for a foreign address) are thrown as they are.
 */
export async function ensurePortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // exclusive: a cluster primary's shared handle must not make a taken port look free.
      server.listen({ host, port, exclusive: true }, () => resolve());
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new PortInUseError(host, port);
    throw err;
  } finally {
    await new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  }
}
