/**
 * ETSI GS QKD 014 v1.1.1 client: this appliance as an SAE talking to its KME over HTTPS with
 * mutual TLS. Implements `QkdKeySource`; see `drivers/qkd/interface.ts` for the contract.
 *
 * Trust: `ca` is the only trust anchor (Node's bundled roots are not consulted when `ca` is
 * given), certificate verification is always on, and the KME certificate must name `kmeId`
 * (CN or subjectAltName DNS/URI). The hostname is not checked; see `identity.ts`.
 *
 * Retries (with exponential back-off and jitter, within one deadline per call):
 * - `status` is a GET with no effect: retried on 503, 504 and network errors. A timeout ends
 *   the call: each attempt may use all that is left of the deadline.
 * - `enc_keys` and `dec_keys` are POSTs that consume keys on the KME. Retrying one the KME has
 *   already processed would burn keys (enc_keys: the first batch is gone for everyone but the
 *   slave, which never learns its IDs) or fail outright (dec_keys: the keys were deleted on
 *   delivery, so the retry gets 400 "not found" and the keys are lost). So they are retried only
 *   when the KME certainly did not act: a 503 answer (the KME says it could not serve; qkm's
 *   simulator never hands out a partial container), or a connection that failed before the TLS
 *   handshake completed on a fresh socket (refused, DNS, reset during connect). Never after the
 *   request may have been written: timeouts while waiting, resets on a reused socket, 504.
 *   Such failures carry `maybeProcessed: true`.
 */
import { randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { QkdCallOptions, QkdKey, QkdKeyRequest, QkdKeySource, QkdLinkStatus } from '../interface.js';
import {
  kindForStatus,
  markMaybeProcessed,
  parseErrorBody,
  QkdError,
  type QkdErrorKind,
  type QkdOperation,
} from './errors.js';
import { type Etsi014Health, HealthTracker } from './health.js';
import { KME_ID_MISMATCH, kmeIdentityCheck } from './identity.js';
import { isUuid, keyIdsBody, keyRequestBody, parseKeyContainer, parseStatus } from './wire.js';

export interface Etsi014ClientOptions {
  /** The KME's base URL, `https://host[:port]` (a trailing `/api/v1/keys` is accepted and dropped). */
  kmeUrl: string | URL;
  /** The KME ID expected in the KME's certificate and in Status `source_KME_ID`. */
  kmeId: string;
  /** This SAE's ID, as the KME reads it from `cert`; checked against Status `master_SAE_ID`. */
  saeId: string;
  /** PEM of the CA that issued the KME certificate: the only trust anchor. */
  ca: string | Buffer;
  /** PEM client certificate and private key of this SAE. */
  cert: string | Buffer;
  key: string | Buffer;
  /** Default overall deadline per call, retries included, ms. Default 5000. */
  timeoutMs?: number;
  /** Retries after the first attempt, for failures that are safe to retry. Default 3. */
  retries?: number;
  /** First back-off delay, ms; doubles per retry, with jitter. Default 100. */
  backoffMs?: number;
  /** Pooled keep-alive connections to the KME. Default 8. */
  maxSockets?: number;
  /**
   * Idle pooled connections are closed after this many ms (or 1 s before the KME's own
   * `Keep-Alive: timeout=` hint), so a request is not sent on a connection the KME is closing at
   * that moment: such a reset could not be retried for enc_keys/dec_keys. Default 4000, below
   * the 5 s idle timeout of Node and uvicorn servers.
   */
  idleSocketMs?: number;
  /** Largest response body accepted, bytes; more is a `protocol` error. Default 8 MiB. */
  maxResponseBytes?: number;
}

export interface Etsi014FileOptions extends Omit<Etsi014ClientOptions, 'ca' | 'cert' | 'key'> {
  caPath: string;
  certPath: string;
  keyPath: string;
}

type RetryPolicy = 'idempotent' | 'unprocessed-only';

interface Route {
  operation: QkdOperation;
  method: 'GET' | 'POST';
  /** The SAE ID in the path: the slave for status and enc_keys, the master for dec_keys. */
  saeId: string;
  body?: Record<string, unknown>;
  policy: RetryPolicy;
}

interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A transport failure plus whether the KME may have acted on the request. */
interface AttemptFailure {
  error: QkdError;
  maybeProcessed: boolean;
}

const API_PATH = '/api/v1/keys/';
const DEFAULT_MAX_RESPONSE = 8 * 1024 * 1024;
/** OpenSSL verify results and TLS-layer error codes; all mean "the TLS session did not verify". */
const TLS_ERROR_CODE =
  /^(ERR_SSL_|ERR_TLS_|ERR_OSSL_|CERT_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|HOSTNAME_MISMATCH|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH_EXCEEDED|EPROTO$)/;

export class Etsi014Client implements QkdKeySource {
  readonly saeId: string;
  readonly kmeId: string;
  private readonly baseUrl: URL;
  private readonly agent: Agent;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxResponseBytes: number;
  private closed = false;
  /** Cancel hooks of in-flight attempts and back-off sleeps, run by `close()`. */
  private readonly cancelers = new Set<() => void>();
  private readonly tracker = new HealthTracker();

  constructor(options: Etsi014ClientOptions) {
    this.kmeId = requireId(options.kmeId, 'kmeId');
    this.saeId = requireId(options.saeId, 'saeId');
    this.baseUrl = apiBase(options.kmeUrl);
    this.timeoutMs = requireInt(options.timeoutMs ?? 5000, 'timeoutMs', 1);
    this.retries = requireInt(options.retries ?? 3, 'retries', 0);
    this.backoffMs = requireInt(options.backoffMs ?? 100, 'backoffMs', 0);
    this.maxResponseBytes = requireInt(
      options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE,
      'maxResponseBytes',
      1,
    );
    for (const name of ['ca', 'cert', 'key'] as const) {
      const pem = options[name];
      if (typeof pem !== 'string' && !Buffer.isBuffer(pem))
        throw new TypeError(`${name} must be a PEM string or Buffer`);
    }
    this.agent = new Agent({
      keepAlive: true,
      maxSockets: requireInt(options.maxSockets ?? 8, 'maxSockets', 1),
      // Node's agent uses `timeout` as the idle limit of free sockets (and enables the
      // Keep-Alive hint); on a busy socket it only emits 'timeout', which nothing here acts on.
      timeout: requireInt(options.idleSocketMs ?? 4000, 'idleSocketMs', 1),
      ca: options.ca,
      cert: options.cert,
      key: options.key,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      checkServerIdentity: kmeIdentityCheck(this.kmeId),
    });
  }

  /** Builds a client from PEM files (read once, now). */
  static async fromFiles(options: Etsi014FileOptions): Promise<Etsi014Client> {
    const { caPath, certPath, keyPath, ...rest } = options;
    const [ca, cert, key] = await Promise.all([readFile(caPath), readFile(certPath), readFile(keyPath)]);
    return new Etsi014Client({ ...rest, ca, cert, key });
  }

  /** Connection state for `qkm status` and metrics; a snapshot. */
  health(): Etsi014Health {
    return this.tracker.snapshot();
  }

  async status(slaveSaeId: string, options: QkdCallOptions = {}): Promise<QkdLinkStatus> {
    requireId(slaveSaeId, 'slaveSaeId');
    const route: Route = { operation: 'status', method: 'GET', saeId: slaveSaeId, policy: 'idempotent' };
    return this.call(route, options, (body) => {
      const status = parseStatus(body, this.kmeId);
      this.checkStatusIdentity(status, slaveSaeId);
      return { value: status, keys: 0, status };
    });
  }

  async getKeys(
    slaveSaeId: string,
    keyRequest: QkdKeyRequest = {},
    options: QkdCallOptions = {},
  ): Promise<QkdKey[]> {
    requireId(slaveSaeId, 'slaveSaeId');
    checkKeyRequest(keyRequest);
    const count = keyRequest.number ?? 1;
    // Without an explicit size the KME uses its key_size; check against the last Status seen.
    const last = this.tracker.lastStatus;
    const sizeBits = keyRequest.size ?? (last?.slaveSaeId === slaveSaeId ? last.keySize : undefined);
    const body = keyRequestBody(keyRequest);
    const route: Route = {
      operation: 'enc_keys',
      method: 'POST',
      saeId: slaveSaeId,
      body,
      policy: 'unprocessed-only',
    };
    return this.call(route, options, (answer) => {
      const keys = parseKeyContainer(answer, {
        operation: 'enc_keys',
        kmeId: this.kmeId,
        count,
        ...(sizeBits === undefined ? {} : { sizeBits }),
      });
      return { value: keys, keys: keys.length };
    });
  }

  async getKeysById(masterSaeId: string, keyIds: string[], options: QkdCallOptions = {}): Promise<QkdKey[]> {
    requireId(masterSaeId, 'masterSaeId');
    checkKeyIds(keyIds);
    const asked = [...keyIds];
    const body = keyIdsBody(asked);
    const route: Route = {
      operation: 'dec_keys',
      method: 'POST',
      saeId: masterSaeId,
      body,
      policy: 'unprocessed-only',
    };
    return this.call(route, options, (answer) => {
      const keys = parseKeyContainer(answer, { operation: 'dec_keys', kmeId: this.kmeId, keyIds: asked });
      return { value: keys, keys: keys.length };
    });
  }

  /** Destroys pooled connections; pending and later calls reject with `canceled`. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const cancel of [...this.cancelers]) cancel();
    this.agent.destroy();
  }

  private checkStatusIdentity(status: QkdLinkStatus, slaveSaeId: string): void {
    const mismatch = (field: string, got: string, want: string) =>
      new QkdError(
        'protocol',
        `status: ${field} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`,
        {
          operation: 'status',
          kmeId: this.kmeId,
          status: 200,
        },
      );
    if (status.sourceKmeId !== this.kmeId) throw mismatch('source_KME_ID', status.sourceKmeId, this.kmeId);
    if (status.masterSaeId !== this.saeId) throw mismatch('master_SAE_ID', status.masterSaeId, this.saeId);
    if (status.slaveSaeId !== slaveSaeId) throw mismatch('slave_SAE_ID', status.slaveSaeId, slaveSaeId);
  }

  /** One ETSI 014 call: attempts with retries within the deadline, then parses the 200 body. */
  private async call<T>(
    route: Route,
    options: QkdCallOptions,
    parse: (body: unknown) => { value: T; keys: number; status?: QkdLinkStatus },
  ): Promise<T> {
    const timeoutMs =
      options.timeoutMs === undefined ? this.timeoutMs : requireInt(options.timeoutMs, 'timeoutMs', 1);
    const deadline = Date.now() + timeoutMs;
    const retries = options.retries === undefined ? this.retries : requireInt(options.retries, 'retries', 0);
    const { operation, method, policy } = route;
    // ETSI 014 §5.1: IDs in paths are URL-encoded.
    const url = new URL(`${encodeURIComponent(route.saeId)}/${operation}`, this.baseUrl);
    const payload = route.body === undefined ? undefined : JSON.stringify(route.body);
    try {
      for (let attempt = 0; ; attempt++) {
        this.throwIfCanceled(operation, options.signal);
        let failure: AttemptFailure;
        let retryAfterMs: number | undefined;
        try {
          this.tracker.requestSent();
          const answer = await this.attempt(operation, method, url, payload, deadline, options.signal);
          if (answer.status === 200) {
            const parsed = parse(parseJson(answer.body, operation, this.kmeId));
            this.tracker.callSucceeded(parsed.keys, parsed.status);
            return parsed.value;
          }
          // A 4xx or 503 is the KME declining the request; other 5xx may come after it acted.
          const maybeProcessed = answer.status >= 500 && answer.status !== 503;
          failure = { error: this.statusError(operation, answer), maybeProcessed };
          retryAfterMs = retryAfter(answer.headers);
        } catch (error) {
          failure = isAttemptFailure(error)
            ? error
            : { error: asQkdError(error, operation, this.kmeId), maybeProcessed: true };
        }
        this.tracker.requestFailed(failure.error);
        const delay = Math.max(this.backoff(attempt), retryAfterMs ?? 0);
        if (
          attempt >= retries ||
          !mayRetry(failure, policy) ||
          Date.now() + delay >= deadline ||
          this.closed
        ) {
          if (policy === 'unprocessed-only' && failure.maybeProcessed) {
            markMaybeProcessed(failure.error);
          }
          throw failure.error;
        }
        await this.sleep(delay, operation, options.signal);
      }
    } catch (error) {
      const qkdError = asQkdError(error, operation, this.kmeId);
      this.tracker.callFailed(qkdError);
      throw qkdError;
    }
  }

  /** One HTTP exchange. Resolves with any status; rejects with an `AttemptFailure`. */
  private attempt(
    operation: QkdOperation,
    method: 'GET' | 'POST',
    url: URL,
    payload: string | undefined,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<HttpAnswer> {
    return new Promise<HttpAnswer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let received = 0;
      let written = false;
      let settled = false;
      let socketRef: TLSSocket | undefined;
      const onSecureConnect = () => {
        written = true;
      };
      const headers: Record<string, string | number> = { accept: 'application/json' };
      if (payload !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = Buffer.byteLength(payload);
      }
      const req = request(url, { method, agent: this.agent, headers });

      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.cancelers.delete(onAbort);
        socketRef?.off('secureConnect', onSecureConnect);
        for (const c of chunks) c.fill(0);
      };
      const fail = (error: QkdError, maybeProcessed = written) => {
        if (settled) return;
        settled = true;
        cleanup();
        req.destroy();
        reject({ error, maybeProcessed } satisfies AttemptFailure);
      };
      const onAbort = () => {
        fail(this.canceledError(operation, this.closed));
      };
      const remaining = deadline - Date.now();
      const timer = setTimeout(
        () =>
          fail(
            new QkdError('timeout', `${operation}: no complete answer from the KME within the deadline`, {
              operation,
              kmeId: this.kmeId,
            }),
          ),
        Math.max(remaining, 0),
      );
      timer.unref();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.cancelers.add(onAbort);

      req.on('socket', (socket) => {
        // A socket that finished its handshake (reused from the pool, or handed over from a
        // finished request) carries the request at once; a fresh one only after the handshake.
        // Until then the KME cannot have seen the request. (`reusedSocket` alone misses sockets
        // the agent hands straight to a queued request.)
        const tlsSocket = socket as TLSSocket;
        if (req.reusedSocket || tlsSocket.authorized) written = true;
        else {
          socketRef = tlsSocket;
          tlsSocket.once('secureConnect', onSecureConnect);
        }
      });
      req.on('error', (error) => fail(this.transportError(operation, error)));
      req.on('response', (res) => {
        written = true;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received > this.maxResponseBytes) {
            fail(
              new QkdError('protocol', `${operation}: response body exceeds ${this.maxResponseBytes} bytes`, {
                operation,
                kmeId: this.kmeId,
                ...(res.statusCode === undefined ? {} : { status: res.statusCode }),
              }),
            );
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (error) => fail(this.transportError(operation, error)));
        res.on('aborted', () =>
          fail(
            new QkdError('network', `${operation}: the KME closed the connection mid-response`, {
              operation,
              kmeId: this.kmeId,
            }),
          ),
        );
        res.on('end', () => {
          if (settled) return;
          const body = Buffer.concat(chunks);
          const text = body.toString('utf8');
          body.fill(0);
          settled = true;
          cleanup();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text });
        });
      });
      if (remaining <= 0) return; // the timer fires at once
      req.end(payload);
    });
  }

  private statusError(operation: QkdOperation, answer: HttpAnswer): QkdError {
    const kind = kindForStatus(answer.status);
    const parsed = parseErrorBody(answer.body);
    const text = parsed.message === undefined ? '' : `: ${parsed.message}`;
    return new QkdError(kind, `${operation}: KME answered ${answer.status}${text}`, {
      operation,
      kmeId: this.kmeId,
      status: answer.status,
      ...(parsed.message === undefined ? {} : { kmeMessage: parsed.message }),
      ...(parsed.details === undefined ? {} : { kmeDetails: parsed.details }),
    });
  }

  private transportError(operation: QkdOperation, error: Error & { code?: string }): QkdError {
    if (error instanceof QkdError) return error;
    const code = typeof error.code === 'string' ? error.code : '';
    const tls = code === KME_ID_MISMATCH || TLS_ERROR_CODE.test(code);
    const kind: QkdErrorKind = tls ? 'tls' : 'network';
    const what = tls ? 'TLS with the KME failed' : 'connection to the KME failed';
    return new QkdError(kind, `${operation}: ${what}${code ? ` (${code})` : ''}: ${error.message}`, {
      operation,
      kmeId: this.kmeId,
      cause: error,
    });
  }

  private canceledError(operation: QkdOperation, byClose: boolean): QkdError {
    return new QkdError(
      'canceled',
      `${operation}: ${byClose ? 'the client was closed' : 'aborted by the caller'}`,
      {
        operation,
        kmeId: this.kmeId,
      },
    );
  }

  private throwIfCanceled(operation: QkdOperation, signal: AbortSignal | undefined): void {
    if (this.closed) throw this.canceledError(operation, true);
    if (signal?.aborted) throw this.canceledError(operation, false);
  }

  /** Exponential back-off with "equal jitter": half fixed, half uniform from node:crypto. */
  private backoff(attempt: number): number {
    const base = Math.min(this.backoffMs * 2 ** attempt, 60_000);
    const half = Math.floor(base / 2);
    return half + (half > 0 ? randomInt(half + 1) : 0);
  }

  private sleep(ms: number, operation: QkdOperation, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.cancelers.delete(onAbort);
      };
      const onAbort = () => {
        done();
        reject(this.canceledError(operation, this.closed));
      };
      const timer = setTimeout(() => {
        done();
        resolve();
      }, ms);
      timer.unref();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.cancelers.add(onAbort);
    });
  }
}

function mayRetry(failure: AttemptFailure, policy: RetryPolicy): boolean {
  if (!failure.error.retryable) return false;
  if (policy === 'idempotent') return true;
  return failure.error.kind === 'unavailable' || !failure.maybeProcessed;
}

function isAttemptFailure(value: unknown): value is AttemptFailure {
  return typeof value === 'object' && value !== null && (value as AttemptFailure).error instanceof QkdError;
}

function asQkdError(error: unknown, operation: QkdOperation, kmeId: string): QkdError {
  if (error instanceof QkdError) return error;
  if (isAttemptFailure(error)) return error.error;
  // Not expected: a bug in parsing. Keep the message (ours, no key bytes) and the cause.
  const message = error instanceof Error ? error.message : String(error);
  return new QkdError('protocol', `${operation}: ${message}`, { operation, kmeId, cause: error });
}

function parseJson(text: string, operation: QkdOperation, kmeId: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // The body may hold key material: say only how long it was.
    throw new QkdError('protocol', `${operation}: 200 body is not JSON (${text.length} characters)`, {
      operation,
      kmeId,
      status: 200,
    });
  }
}

/** `Retry-After` in seconds (the HTTP-date form is ignored), ms. */
function retryAfter(headers: IncomingHttpHeaders): number | undefined {
  const value = headers['retry-after'];
  if (typeof value !== 'string' || !/^\d{1,6}$/.test(value)) return undefined;
  return Number(value) * 1000;
}

function apiBase(kmeUrl: string | URL): URL {
  const url = new URL(String(kmeUrl));
  if (url.protocol !== 'https:') throw new RangeError('kmeUrl must be an https: URL');
  if (url.username || url.password || url.search || url.hash) {
    throw new RangeError('kmeUrl must not carry credentials, a query or a fragment');
  }
  const path = url.pathname.replace(/\/+$/, '').replace(/\/api\/v1\/keys$/, '');
  url.pathname = `${path}${API_PATH}`;
  return url;
}

function requireId(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0)
    throw new TypeError(`${name} must be a non-empty string`);
  return value;
}

function requireInt(value: unknown, name: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${name} must be an integer >= ${min}`);
  }
  return value;
}

function checkKeyRequest(r: QkdKeyRequest): void {
  if (typeof r !== 'object' || r === null) throw new TypeError('key request must be an object');
  if (r.number !== undefined) requireInt(r.number, 'number', 1);
  if (r.size !== undefined) {
    requireInt(r.size, 'size', 8);
    if (r.size % 8 !== 0) throw new RangeError('size is in bits and must be a multiple of 8');
  }
  if (r.additionalSlaveSaeIds !== undefined) {
    if (!Array.isArray(r.additionalSlaveSaeIds))
      throw new TypeError('additionalSlaveSaeIds must be an array');
    for (const [i, id] of r.additionalSlaveSaeIds.entries()) requireId(id, `additionalSlaveSaeIds[${i}]`);
  }
  for (const name of ['extensionMandatory', 'extensionOptional'] as const) {
    const list = r[name];
    if (list === undefined) continue;
    if (
      !Array.isArray(list) ||
      !list.every((e) => typeof e === 'object' && e !== null && !Array.isArray(e))
    ) {
      throw new TypeError(`${name} must be an array of objects`);
    }
  }
}

function checkKeyIds(keyIds: unknown): void {
  if (!Array.isArray(keyIds) || keyIds.length === 0) throw new TypeError('keyIds must be a non-empty array');
  const seen = new Set<string>();
  for (const id of keyIds) {
    if (!isUuid(id)) throw new RangeError('every key ID must be a UUID');
    const canonical = id.toLowerCase();
    if (seen.has(canonical)) throw new RangeError(`key ID ${id} is repeated`);
    seen.add(canonical);
  }
}
