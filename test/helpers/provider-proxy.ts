import { type IncomingMessage, type Server, createServer, request } from 'node:http';

/**
 * A loopback HTTP proxy in front of a Provider, for tests of what a node does with answers it
 * cannot trust: `drop(req)` closes the connection (the Provider is "down"); `rewrite(req, body)`
 * may change the answer's bytes in place (same length, so Content-Length still holds and only
 * the Provider's signature can tell).
 */
export function startProviderProxy(
  upstreamPort: () => number,
  hooks: {
    drop?: (req: IncomingMessage) => boolean;
    rewrite?: (req: IncomingMessage, body: Buffer) => void;
    /** When the Provider cannot be reached: answer an (unsigned) 502, or drop the connection. */
    upstreamError?: '502' | 'drop';
  } = {},
): Promise<Server> {
  const server = createServer((req, res) => {
    if (hooks.drop?.(req)) {
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const port = upstreamPort();
      const up = request(
        {
          host: '127.0.0.1',
          port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: `127.0.0.1:${port}` },
        },
        (upRes) => {
          const body: Buffer[] = [];
          upRes.on('data', (c) => body.push(c));
          upRes.on('end', () => {
            const raw = Buffer.concat(body);
            hooks.rewrite?.(req, raw);
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            res.end(raw);
          });
        },
      );
      up.on('error', () => {
        if (hooks.upstreamError === 'drop' || res.headersSent) res.socket?.destroy();
        else {
          res.writeHead(502);
          res.end();
        }
      });
      up.end(Buffer.concat(chunks));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}
