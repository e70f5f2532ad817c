/**
 * The KME-to-KME channel: a second HTTPS listener per KME, on its own port, with mutual TLS under
 * the same pinned CA, that answers only the peer KME (client certificate CN = peer KME ID; anyone
 * else, SAEs included, gets 401). Routes:
 * - `GET /internal/v1/sync` with `Upgrade: qkm-kme-sync/1` → 101, then a persistent stream of
 *   newline-delimited JSON frames on the same mutual-TLS connection:
 *   request `{id, op: 'assign' | 'allocate', body}` → reply `{id, ok: true, result}` or
 *   `{id, ok: false, status, message, details?}`. `assign` (to the secondary) carries an
 *   {@link AssignMessage}; `allocate` (to the primary) an {@link AllocateMessage} and returns an
 *   {@link AllocateAnswer}. A stream rather than one HTTPS request per call because the
 *   KME-to-KME hop sits inside every enc_keys: an HTTP exchange per hop halved the pair's
 *   throughput, while frames on an open connection cost little more than the JSON itself;
 * - `GET /admin/v1/pool` — pool counters (no key material).
 * None of these exists on the SAE listener.
 */
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { checkServerIdentity, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { badRequest, EtsiHttpError, type EtsiStatusCode } from './errors.js';
import { callerOf, createMtlsServer, sendUnauthorized, type TlsMaterial } from './http-common.js';
import type { AllocateAnswer, AllocateMessage, AssignMessage, KmeCore, PeerChannel } from './kme-core.js';

export const SYNC_PATH = '/internal/v1/sync';
export const SYNC_PROTOCOL = 'qkm-kme-sync/1';
export const INTERNAL_ROUTES = [SYNC_PATH, '/admin/v1/pool'] as const;

/** Largest frame accepted (a full allocate answer is ~ max_key_per_request × 32 × 40 bytes). */
const MAX_FRAME_CHARS = 4 * 1024 * 1024;

type Op = 'assign' | 'allocate';
interface RequestFrame {
  id: number;
  op: Op;
  body: unknown;
}
type ReplyFrame =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; status: EtsiStatusCode; message: string; details?: Record<string, unknown>[] };

/**
 * Splits a stream into newline-delimited JSON frames. Calls `onFrame` for each; a frame that is
 * not JSON, or a line longer than the limit, ends the stream (the peer is broken, not merely slow).
 */
function readFrames(stream: Duplex, onFrame: (frame: unknown) => void, initial?: Buffer): void {
  let buffered = '';
  const take = (chunk: Buffer | string) => {
    buffered += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let at = buffered.indexOf('\n');
    // Replies to all frames of this chunk leave in one TLS write.
    stream.cork();
    process.nextTick(() => stream.uncork());
    while (at >= 0) {
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      let frame: unknown;
      try {
        frame = JSON.parse(line);
      } catch {
        stream.destroy(new Error('malformed KME-to-KME frame'));
        return;
      }
      onFrame(frame);
      at = buffered.indexOf('\n');
    }
    if (buffered.length > MAX_FRAME_CHARS) stream.destroy(new Error('KME-to-KME frame too large'));
  };
  if (initial !== undefined && initial.length > 0) take(initial);
  stream.on('data', take);
}

function answer(core: KmeCore, frame: RequestFrame): ReplyFrame {
  try {
    if (frame.op === 'assign') {
      core.handleAssign(frame.body as AssignMessage);
      return { id: frame.id, ok: true, result: null };
    }
    if (frame.op === 'allocate') {
      return { id: frame.id, ok: true, result: core.handleAllocate(frame.body as AllocateMessage) };
    }
    throw badRequest('unknown KME-to-KME operation');
  } catch (err) {
    const e = err instanceof EtsiHttpError ? err : new EtsiHttpError(503, 'internal KME error');
    return e.details === undefined
      ? { id: frame.id, ok: false, status: e.status, message: e.message }
      : { id: frame.id, ok: false, status: e.status, message: e.message, details: e.details };
  }
}

/** Builds (does not start) the KME-to-KME listener of `core`. */
export function buildInternalApi(core: KmeCore, tls: TlsMaterial): FastifyInstance {
  const app = createMtlsServer(tls);
  const streams = new Set<Duplex>();

  app.addHook('onRequest', async (request, reply) => {
    if (callerOf(request) !== core.peerId) return sendUnauthorized(reply);
  });
  app.get(SYNC_PATH, async (_request, reply) =>
    reply.code(400).send({ message: `upgrade to ${SYNC_PROTOCOL} required` }),
  );
  app.get('/admin/v1/pool', async () => ({
    kme_ID: core.id,
    role: core.role,
    stored_key_count: core.pool.storedCount,
    reserved_key_count: core.pool.reservedKeyCount,
    free_capacity: core.pool.freeCapacity,
    ...core.counters,
  }));

  // Upgrade requests bypass fastify's routing and hooks, so the same checks are made here.
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const tlsSocket = req.socket as TLSSocket;
    const cn = tlsSocket.authorized ? (tlsSocket.getPeerCertificate()?.subject?.CN as unknown) : undefined;
    const url = new URL(req.url ?? '/', 'https://kme');
    if (cn !== core.peerId) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    if (url.pathname !== SYNC_PATH || req.headers.upgrade !== SYNC_PROTOCOL) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${SYNC_PROTOCOL}\r\nConnection: Upgrade\r\n\r\n`,
    );
    streams.add(socket);
    socket.on('close', () => streams.delete(socket));
    socket.on('error', () => socket.destroy());
    readFrames(
      socket,
      (frame) => {
        const f = frame as Partial<RequestFrame>;
        if (typeof f !== 'object' || f === null || typeof f.id !== 'number') {
          socket.destroy(new Error('malformed KME-to-KME frame'));
          return;
        }
        socket.write(JSON.stringify(answer(core, f as RequestFrame)) + '\n');
      },
      head,
    );
  });
  // Upgraded sockets are no longer HTTP connections, so server.close() would wait for them:
  // end them before it.
  app.addHook('preClose', async () => {
    for (const s of streams) s.destroy();
  });
  return app;
}

export interface PeerClientOptions {
  /** `https://127.0.0.1:<port>` of the peer's internal listener. */
  url: string;
  /** The peer's KME ID: its server certificate's CN must match. */
  peerId: string;
  /** Our KME certificate and key (presented as the client certificate) and the pinned CA. */
  tls: TlsMaterial;
  /** Per call, ms (default 5000). */
  timeoutMs?: number;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * {@link PeerChannel} over one upgraded mutual-TLS connection to the peer's internal listener,
 * opened on first use and again after it drops. Calls are pipelined and matched by frame ID.
 * Refusals by the peer reject with {@link EtsiHttpError}; a dropped connection or a timeout
 * rejects with a plain Error (the caller answers its SAE 503).
 */
export class PeerClient implements PeerChannel {
  private readonly options: PeerClientOptions;
  private readonly timeoutMs: number;
  private stream: Promise<Duplex> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private corked = false;

  constructor(options: PeerClientOptions) {
    this.options = options;
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  async assign(message: AssignMessage): Promise<void> {
    await this.call('assign', message);
  }

  async allocate(message: AllocateMessage): Promise<AllocateAnswer> {
    return (await this.call('allocate', message)) as AllocateAnswer;
  }

  /** Drops the connection; pending and later calls fail. Idempotent. */
  close(): void {
    this.closed = true;
    this.failAll(new Error('peer channel closed'));
    void this.stream?.then((s) => s.destroy()).catch(() => undefined);
    this.stream = undefined;
  }

  private async call(op: Op, body: unknown): Promise<unknown> {
    if (this.closed) throw new Error('peer channel closed');
    const stream = await this.connect();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('peer KME timed out'));
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
      // Calls made in the same event-loop turn (e.g. enc_keys requests from several SAE
      // connections read in one poll phase) share one TLS write, and the peer answers them with
      // one: fewer records and syscalls per key, for at most one turn of extra latency.
      if (!this.corked) {
        this.corked = true;
        stream.cork();
        setImmediate(() => {
          this.corked = false;
          stream.uncork();
        });
      }
      stream.write(JSON.stringify({ id, op, body } satisfies RequestFrame) + '\n');
    });
  }

  private connect(): Promise<Duplex> {
    if (this.stream !== undefined) return this.stream;
    const { url, peerId, tls } = this.options;
    const opened = new Promise<Duplex>((resolve, reject) => {
      const req = httpsRequest(new URL(SYNC_PATH, url), {
        method: 'GET',
        agent: false,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        minVersion: 'TLSv1.2',
        timeout: this.timeoutMs,
        headers: { connection: 'Upgrade', upgrade: SYNC_PROTOCOL },
        checkServerIdentity: (host: string, cert: PeerCertificate) => {
          const err = checkServerIdentity(host, cert);
          if (err !== undefined) return err;
          if (cert.subject?.CN !== peerId) return new Error(`peer KME certificate does not name ${peerId}`);
          return undefined;
        },
      });
      req.on('upgrade', (_res, socket: Duplex, head: Buffer) => {
        req.setTimeout(0);
        socket.on('close', () => this.dropped(opened, new Error('peer KME connection closed')));
        socket.on('error', () => socket.destroy());
        readFrames(socket, (frame) => this.onReply(frame as ReplyFrame), head);
        resolve(socket);
      });
      req.on('response', (res) => {
        res.resume();
        reject(new EtsiHttpError(503, `peer KME refused the sync channel (${res.statusCode})`));
      });
      req.on('timeout', () => req.destroy(new Error('peer KME timed out')));
      req.on('error', reject);
      req.end();
    });
    this.stream = opened;
    opened.catch(() => this.dropped(opened, undefined));
    return opened;
  }

  private onReply(frame: ReplyFrame): void {
    const p = this.pending.get(frame?.id);
    if (p === undefined) return; // timed out already
    this.pending.delete(frame.id);
    clearTimeout(p.timer);
    if (frame.ok) p.resolve(frame.result);
    else p.reject(new EtsiHttpError(frame.status, frame.message, frame.details));
  }

  /** Forgets a dead connection (so the next call reconnects) and fails the calls waiting on it. */
  private dropped(which: Promise<Duplex>, err: Error | undefined): void {
    if (this.stream === which) this.stream = undefined;
    if (err !== undefined) this.failAll(err);
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err);
      this.pending.delete(id);
    }
  }
}
