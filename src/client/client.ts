import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Provenance } from '../core/provenance.js';
import type { ApplianceStatus } from '../status.js';
import type { KeyMetadata, KeyState } from '../keys/interface.js';

/**
 * Typed client for the qkm REST API, for agents and for the `qkm` CLI. One method per route;
 * every failure is a `QkmApiError` (HTTP answered with an error body) or `QkmTransportError`
 * (no usable answer: refused, timed out, not JSON).
 */

/** Shared keep-alive pools: one TCP connection per concurrent request, reused across calls. */
const HTTP_AGENT = new HttpAgent({ keepAlive: true, maxSockets: 64 });
const HTTPS_AGENT = new HttpsAgent({ keepAlive: true, maxSockets: 64 });

export class QkmApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'QkmApiError';
  }
}

export class QkmTransportError extends Error {
  constructor(
    message: string,
    readonly timeout: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'QkmTransportError';
  }
}

export interface QkmClientOptions {
  /** e.g. http://127.0.0.1:7300 */
  url: string;
  token: string;
  /** Per-request timeout, default 10 s. */
  timeoutMs?: number;
}

export interface EntropyResponse {
  data: Uint8Array;
  bytes: number;
  provenance: Provenance;
}

export type Posture = 'PQC' | 'PQC+QRNG' | 'QKD+PQC+QRNG';

export interface SessionProvenance {
  degraded: boolean;
  reason?: string;
  [k: string]: unknown;
}

export interface InitiatedSession {
  session_id: string;
  /** Empty when `key_pending` (requireConfirm): `confirm` returns the key. */
  key: Uint8Array;
  key_pending?: boolean;
  handshake: string;
  posture: Posture;
  provenance: SessionProvenance;
}

export interface AcceptedSession {
  session_id: string;
  key: Uint8Array;
  posture: Posture;
  provenance: SessionProvenance;
  confirm: string;
  /** The initiator's node id. */
  peer: string;
  /** The initiating agent, as the signed handshake names it. */
  peer_agent: string;
  /** The initiator's context string, as bound into the transcript. */
  context: string;
}

export interface AgentInfo {
  name: string;
  scopes: string[];
  created: string;
  revoked?: string;
  aid?: string;
}

export class QkmClient {
  private readonly base: string;
  private readonly token: string;
  private readonly timeoutMs: number;

  constructor(options: QkmClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  private async request<T>(
    method: string,
    path: string,
    options: {
      body?: unknown;
      query?: Record<string, string | number | boolean | undefined>;
      auth?: boolean;
    } = {},
  ): Promise<T> {
    const url = new URL(this.base + path);
    for (const [k, v] of Object.entries(options.query ?? {}))
      if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.auth !== false) headers.authorization = `Bearer ${this.token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const payload = options.body !== undefined ? JSON.stringify(options.body) : undefined;
    if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
    const res = await this.send(url, method, headers, payload);
    let body: unknown;
    try {
      body = res.text.length > 0 ? JSON.parse(res.text) : undefined;
    } catch {
      throw new QkmTransportError(`qkm answered HTTP ${res.status} with a body that is not JSON`, false);
    }
    if (res.status < 200 || res.status >= 300) {
      const b = (body ?? {}) as { error?: string; message?: string; details?: Record<string, unknown> };
      throw new QkmApiError(
        res.status,
        b.error ?? `HTTP_${res.status}`,
        b.message ?? `HTTP ${res.status}`,
        b.details,
      );
    }
    return body as T;
  }

  /**
   * One HTTP exchange on a pooled keep-alive connection. node:http rather than fetch: agents
   * call qkm in tight loops on loopback, where undici's per-request overhead dominates.
   */
  private send(
    url: URL,
    method: string,
    headers: Record<string, string>,
    payload: string | undefined,
  ): Promise<{ status: number; text: string }> {
    const transport = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = transport(
        url,
        {
          method,
          headers,
          agent: url.protocol === 'https:' ? HTTPS_AGENT : HTTP_AGENT,
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', (err) =>
            reject(new QkmTransportError(`qkm at ${this.base}: ${err.message}`, false, { cause: err })),
          );
        },
      );
      req.on('timeout', () => {
        req.destroy();
        reject(new QkmTransportError(`qkm at ${this.base} did not answer within ${this.timeoutMs} ms`, true));
      });
      req.on('error', (err) =>
        reject(new QkmTransportError(`cannot reach qkm at ${this.base}`, false, { cause: err })),
      );
      req.end(payload);
    });
  }

  health(): Promise<{ status: 'ok'; version: string }> {
    return this.request('GET', '/v1/health', { auth: false });
  }

  status(): Promise<ApplianceStatus> {
    return this.request('GET', '/v1/status');
  }

  async entropy(
    bytes: number,
    options: { require?: 'quantum' | 'any'; predictionResistance?: boolean } = {},
  ): Promise<EntropyResponse> {
    const r = await this.request<{ data: string; bytes: number; provenance: Provenance }>(
      'GET',
      '/v1/entropy',
      {
        query: { bytes, require: options.require, prediction_resistance: options.predictionResistance },
      },
    );
    return { data: new Uint8Array(Buffer.from(r.data, 'base64')), bytes: r.bytes, provenance: r.provenance };
  }

  readonly keys = {
    create: (
      options: { size?: number; ttlSeconds?: number; label?: string; require?: 'quantum' | 'any' } = {},
    ) =>
      this.request<KeyMetadata>('POST', '/v1/keys', {
        body: {
          ...(options.size !== undefined ? { size: options.size } : {}),
          ...(options.ttlSeconds !== undefined ? { ttl_seconds: options.ttlSeconds } : {}),
          ...(options.label !== undefined ? { label: options.label } : {}),
          ...(options.require !== undefined ? { require: options.require } : {}),
        },
      }),
    take: async (id: string): Promise<KeyMetadata & { key: Uint8Array }> => {
      const r = await this.request<KeyMetadata & { key: string }>(
        'POST',
        `/v1/keys/${encodeURIComponent(id)}/take`,
      );
      return { ...r, key: new Uint8Array(Buffer.from(r.key, 'base64')) };
    },
    list: async (query: { state?: KeyState; limit?: number; after?: string } = {}) =>
      (await this.request<{ keys: KeyMetadata[] }>('GET', '/v1/keys', { query })).keys,
  };

  readonly agents = {
    list: async () => (await this.request<{ agents: AgentInfo[] }>('GET', '/v1/agents')).agents,
    add: (name: string, scopes?: string[], aid?: string) =>
      this.request<{ agent: AgentInfo; token: string }>('POST', '/v1/agents', {
        body: { name, ...(scopes ? { scopes } : {}), ...(aid ? { aid } : {}) },
      }),
    /** `force` revokes even the last agent with the admin scope (else 409 LAST_ADMIN). */
    revoke: async (name: string, options: { force?: boolean } = {}) =>
      (
        await this.request<{ agent: AgentInfo }>('DELETE', `/v1/agents/${encodeURIComponent(name)}`, {
          query: options.force ? { force: true } : {},
        })
      ).agent,
  };

  identity<T = Record<string, unknown>>(): Promise<T> {
    return this.request('GET', '/v1/identity');
  }

  readonly peers = {
    list: async <T = Record<string, unknown>>() =>
      (await this.request<{ peers: T[] }>('GET', '/v1/peers')).peers,
    add: <T = Record<string, unknown>>(
      bundle: unknown,
      options: { label?: string; minPosture?: Posture } = {},
    ) =>
      this.request<T>('POST', '/v1/peers', {
        body: {
          bundle,
          ...(options.label !== undefined ? { label: options.label } : {}),
          ...(options.minPosture !== undefined ? { min_posture: options.minPosture } : {}),
        },
      }),
    remove: (nodeId: string) =>
      this.request<{ removed: string }>('DELETE', `/v1/peers/${encodeURIComponent(nodeId)}`),
  };

  /** Contact policies of governed agents (issue #12); admin token. */
  readonly contacts = {
    get: <T = Record<string, unknown>>(aid: string) =>
      this.request<T>('GET', `/v1/contact-policies/${encodeURIComponent(aid)}`),
    set: <T = Record<string, unknown>>(aid: string, rules: Array<{ pattern: string; budget: number }>) =>
      this.request<T>('PUT', `/v1/contact-policies/${encodeURIComponent(aid)}`, { body: { rules } }),
    decision: <T = Record<string, unknown>>(aid: string, initiator: string) =>
      this.request<T>('GET', `/v1/contact-policies/${encodeURIComponent(aid)}/decision`, {
        query: { initiator },
      }),
  };

  /** One-time and last-resort prekeys of this node's governed agents (issue #12); admin token. */
  readonly prekeys = {
    publish: async <T = Record<string, unknown>>(aid: string, count: number) =>
      (
        await this.request<{ prekeys: T[] }>('POST', `/v1/prekeys/${encodeURIComponent(aid)}`, {
          body: { count },
        })
      ).prekeys,
    list: async <T = Record<string, unknown>>(aid: string) =>
      (await this.request<{ prekeys: T[] }>('GET', `/v1/prekeys/${encodeURIComponent(aid)}`)).prekeys,
    lastResort: <T = Record<string, unknown>>(aid: string) =>
      this.request<T>('GET', `/v1/prekeys/${encodeURIComponent(aid)}/last-resort`),
  };

  readonly policy = {
    explain: <T = Record<string, unknown>>(peer: string, options: { minPosture?: Posture } = {}) =>
      this.request<T>('GET', `/v1/policy/${encodeURIComponent(peer)}`, {
        query: { min_posture: options.minPosture },
      }),
  };

  readonly sessions = {
    initiate: async (options: {
      peer: string;
      /** The agent on the peer node that may accept (signed into the handshake). */
      responderAgent: string;
      minPosture?: Posture;
      /** Return no key now (`key` empty, `key_pending`): `confirm` returns it once the tag matches. */
      requireConfirm?: boolean;
      context?: string;
    }): Promise<InitiatedSession> => {
      const r = await this.request<Omit<InitiatedSession, 'key'> & { key?: string }>('POST', '/v1/sessions', {
        body: {
          peer: options.peer,
          responder_agent: options.responderAgent,
          ...(options.requireConfirm ? { require_confirm: true } : {}),
          ...(options.minPosture ? { min_posture: options.minPosture } : {}),
          ...(options.context !== undefined ? { context: options.context } : {}),
        },
      });
      return { ...r, key: new Uint8Array(Buffer.from(r.key ?? '', 'base64')) };
    },
    accept: async (handshake: string): Promise<AcceptedSession> => {
      const r = await this.request<Omit<AcceptedSession, 'key'> & { key: string }>(
        'POST',
        '/v1/sessions/accept',
        {
          body: { handshake },
        },
      );
      return { ...r, key: new Uint8Array(Buffer.from(r.key, 'base64')) };
    },
    /** With `requireConfirm` at initiate, the (first) successful confirm also returns the key. */
    confirm: async (
      sessionId: string,
      confirm: string,
    ): Promise<{ session_id: string; confirmed: boolean; key?: Uint8Array }> => {
      const r = await this.request<{ session_id: string; confirmed: boolean; key?: string }>(
        'POST',
        `/v1/sessions/${encodeURIComponent(sessionId)}/confirm`,
        { body: { confirm } },
      );
      return { ...r, ...(r.key ? { key: new Uint8Array(Buffer.from(r.key, 'base64')) } : {}) } as {
        session_id: string;
        confirmed: boolean;
        key?: Uint8Array;
      };
    },
  };

  readonly audit = {
    export: async <T = Record<string, unknown>>(options: { after?: number; limit?: number } = {}) =>
      (await this.request<{ records: T[] }>('GET', '/v1/audit', { query: options })).records,
  };

  /** Fault injection into the simulated Quantis (admin token, simulator mode only). */
  readonly sim = {
    faults: async () => this.request<SimFaults>('GET', '/v1/sim/faults'),
    fault: async (kind: string, fraction?: number) =>
      this.request<SimFaults>('POST', '/v1/sim/faults', {
        body: { kind, ...(fraction !== undefined ? { fraction } : {}) },
      }),
  };
}

export interface SimFaults {
  stall: boolean;
  shortPacket: boolean;
  stuck: boolean;
  bias: number;
  statusNotReady: boolean;
  attached: boolean;
  ais31Pending: boolean;
}
