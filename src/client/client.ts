import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type {
  AcceptResponse,
  AccessToken,
  AgentInfo,
  ApplianceStatus,
  ConfirmResponse,
  EntropyResponseBody,
  IdentityBundle,
  InitiateResponse,
  KeyMetadata,
  PinnedPeer,
  PolicyExplanation,
  Posture,
  ResumeStart,
  ResumedSessionResponse,
  TakenKeyResponse,
} from '../api/schemas.js';
import type { HeldTokenInfo } from '../api/schemas.js';

/**
 * The API's wire types, made from the server's response schemas (src/api/schemas.ts): the one
 * definition of each shape, so the SDK's types follow the server's.
 */
export type {
  AcceptResponse,
  AccessToken,
  HeldTokenInfo,
  ResumeStart,
  ResumedSessionResponse,
  AgentInfo,
  ApplianceStatus,
  ConfirmResponse,
  DrbgProvenance,
  EntropyResponseBody,
  ErrorResponse,
  IdentityBundle,
  InitiateResponse,
  KeyMetadata,
  PinnedPeer,
  PolicyExplanation,
  Posture,
  Provenance,
  SessionProvenance,
  SourceKind,
  SourceSnapshot,
  SourceState,
  TakenKeyResponse,
} from '../api/schemas.js';

export type KeyState = KeyMetadata['state'];

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

/** `GET /v1/entropy` with `data` decoded. */
export type EntropyResponse = Omit<EntropyResponseBody, 'data'> & { data: Uint8Array };

/**
 * `POST /v1/sessions` with `key` decoded. `key` is empty when `key_pending` (requireConfirm):
 * `confirm` returns the key.
 */
export type InitiatedSession = Omit<InitiateResponse, 'key'> & { key: Uint8Array };

/**
 * `POST /v1/sessions/accept` with `key` decoded. `peer` is the initiator's node id, `peer_agent`
 * the initiating agent as the signed handshake names it, `context` the initiator's context
 * string as bound into the transcript.
 */
export type AcceptedSession = Omit<AcceptResponse, 'key'> & { key: Uint8Array };

/** `POST /v1/keys/{id}/take` with `key` decoded. */
export type TakenKey = Omit<TakenKeyResponse, 'key'> & { key: Uint8Array };

/** `POST /v1/sessions/{id}/confirm` with `key` (held by requireConfirm) decoded. */
export type ConfirmedSession = Omit<ConfirmResponse, 'key'> & { key?: Uint8Array };

/** Resumed sessions (`/v1/sessions/resume/...`) with `key` (K') decoded. */
export type ResumedSession = Omit<ResumedSessionResponse, 'key'> & { key: Uint8Array };

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
    const r = await this.request<EntropyResponseBody>('GET', '/v1/entropy', {
      query: { bytes, require: options.require, prediction_resistance: options.predictionResistance },
    });
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
    take: async (id: string): Promise<TakenKey> => {
      const r = await this.request<TakenKeyResponse>('POST', `/v1/keys/${encodeURIComponent(id)}/take`);
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

  identity<T = IdentityBundle>(): Promise<T> {
    return this.request('GET', '/v1/identity');
  }

  readonly peers = {
    list: async <T = PinnedPeer>() => (await this.request<{ peers: T[] }>('GET', '/v1/peers')).peers,
    add: <T = PinnedPeer>(bundle: unknown, options: { label?: string; minPosture?: Posture } = {}) =>
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

  /** The node's link to its Provider (issue #12); admin token. */
  readonly provider = {
    sync: <T = Record<string, unknown>>() => this.request<T>('POST', '/v1/provider/sync'),
    get: <T = Record<string, unknown>>() => this.request<T>('GET', '/v1/provider'),
  };

  readonly policy = {
    explain: <T = PolicyExplanation>(peer: string, options: { minPosture?: Posture } = {}) =>
      this.request<T>('GET', `/v1/policy/${encodeURIComponent(peer)}`, {
        query: { min_posture: options.minPosture },
      }),
  };

  readonly sessions = {
    initiate: async (options: {
      /** The responder's node id; optional for a governed session when the node has a Provider. */
      peer?: string;
      /** The agent on the peer node that may accept (signed into the handshake). */
      responderAgent?: string;
      /** Governed session (qkm/v2): the responder by governed id, and its signed prekey. */
      responderAid?: string;
      prekey?: unknown;
      minPosture?: Posture;
      /** Return no key now (`key` empty, `key_pending`): `confirm` returns it once the tag matches. */
      requireConfirm?: boolean;
      context?: string;
    }): Promise<InitiatedSession> => {
      const r = await this.request<InitiateResponse>('POST', '/v1/sessions', {
        body: {
          ...(options.peer !== undefined ? { peer: options.peer } : {}),
          ...(options.responderAgent !== undefined ? { responder_agent: options.responderAgent } : {}),
          ...(options.responderAid !== undefined ? { responder_aid: options.responderAid } : {}),
          ...(options.prekey !== undefined ? { prekey: options.prekey } : {}),
          ...(options.requireConfirm ? { require_confirm: true } : {}),
          ...(options.minPosture ? { min_posture: options.minPosture } : {}),
          ...(options.context !== undefined ? { context: options.context } : {}),
        },
      });
      return { ...r, key: new Uint8Array(Buffer.from(r.key ?? '', 'base64')) };
    },
    accept: async (handshake: string): Promise<AcceptedSession> => {
      const r = await this.request<AcceptResponse>('POST', '/v1/sessions/accept', {
        body: { handshake },
      });
      return { ...r, key: new Uint8Array(Buffer.from(r.key, 'base64')) };
    },
    /** With `requireConfirm` at initiate, the (first) successful confirm also returns the key. */
    confirm: async (sessionId: string, confirm: string, token?: AccessToken): Promise<ConfirmedSession> => {
      const { key, ...rest } = await this.request<ConfirmResponse>(
        'POST',
        `/v1/sessions/${encodeURIComponent(sessionId)}/confirm`,
        { body: { confirm, ...(token ? { token } : {}) } },
      );
      return { ...rest, ...(key ? { key: new Uint8Array(Buffer.from(key, 'base64')) } : {}) };
    },
    /** Resumed sessions: initiator step 1 (hand `resume` to the responder agent). */
    resume: async (tokenId: string): Promise<ResumeStart> =>
      this.request('POST', '/v1/sessions/resume', { body: { token_id: tokenId } }),
    /** Responder step 2: K' and the answer for the initiator. */
    acceptResume: async (resume: string): Promise<ResumedSession> => {
      const r = await this.request<ResumedSessionResponse>('POST', '/v1/sessions/resume/accept', {
        body: { resume },
      });
      return { ...r, key: new Uint8Array(Buffer.from(r.key, 'base64')) };
    },
    /** Initiator step 3: K' once the responder's tag matches. */
    completeResume: async (resumeId: string, answer: string): Promise<ResumedSession> => {
      const r = await this.request<ResumedSessionResponse>(
        'POST',
        `/v1/sessions/resume/${encodeURIComponent(resumeId)}/complete`,
        { body: { answer } },
      );
      return { ...r, key: new Uint8Array(Buffer.from(r.key, 'base64')) };
    },
    /** The access tokens the calling agent holds (no secrets). */
    tokens: async () => (await this.request<{ tokens: HeldTokenInfo[] }>('GET', '/v1/tokens')).tokens,
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
