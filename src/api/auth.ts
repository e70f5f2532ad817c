import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { AgentInfo, AgentRegistry, Scope } from '../agents/registry.js';
import { QkmError } from '../core/errors.js';
import { UI_COOKIE, type UiSessions, cookieValue } from './ui-login.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: the route needs no bearer token (health, the static status page, the OpenAPI document). */
    auth?: boolean;
    /** Scope the caller's token must hold; `admin` implies every scope. */
    scope?: Scope;
    /**
     * true: a GET also accepts the status-page login cookie instead of a bearer token. Only for
     * read routes (status, its history, metrics): the cookie must never create or take anything.
     */
    uiCookie?: boolean;
  }
  interface FastifyRequest {
    agent?: AgentInfo;
  }
  interface FastifyInstance {
    /**
     * Checks a token presented outside the Authorization header (the status-page login), with
     * the same bad-token gate as every request: the live agent, or a QkmError to answer with.
     */
    checkToken(request: FastifyRequest, token: string): AgentInfo | QkmError;
  }
}

export interface AuthOptions {
  agents: AgentRegistry;
  /** Host header values accepted (with port), or a function of the listening port that yields them. */
  allowedHosts: string[] | ((port: number) => string[]);
  /** Invalid tokens accepted per client address per minute before it is refused outright (default 60). */
  badTokensPerMinute?: number;
  /** Monotonic clock in ms (default performance.now); injectable for tests. */
  now?: () => number;
  /** Status-page logins, accepted on `uiCookie` routes; none: the cookie is never accepted. */
  uiSessions?: UiSessions;
  /** Told of every request refused for its credentials (UNAUTHORIZED, FORBIDDEN): the audit. */
  refused?: (code: string, reason: string, actor: string) => void;
}

/**
 * Counts invalid tokens per client address. Once an address has sent `max` in a window, every
 * token-bearing request from it is refused RATE_LIMITED until the window ends — before its
 * token is even looked at, valid or not (fail closed: a guesser gets no answer either way).
 * On loopback every local client shares one address, so a local process spraying bad tokens
 * locks the others out for the rest of the minute; that is the price of failing closed.
 */
/** Addresses the gate tracks at once; beyond, new addresses share one window (see `fail`). */
export const GATE_MAX_TRACKED = 10_000;
const GATE_OVERFLOW = '\0overflow';

export class BadTokenGate {
  private readonly windows = new Map<string, { start: number; count: number }>();
  constructor(
    readonly max: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}
  /** ms until `address` may try again, or 0. */
  blockedFor(address: string): number {
    const w =
      this.windows.get(address) ??
      (this.windows.size >= GATE_MAX_TRACKED ? this.windows.get(GATE_OVERFLOW) : undefined);
    if (!w) return 0;
    const left = w.start + this.windowMs - this.now();
    if (left <= 0) {
      this.windows.delete(address);
      return 0;
    }
    return w.count >= this.max ? left : 0;
  }
  fail(address: string): void {
    const t = this.now();
    if (this.windows.size >= GATE_MAX_TRACKED && !this.windows.has(address)) {
      for (const [k, w] of this.windows) if (t - w.start >= this.windowMs) this.windows.delete(k);
      // Still full: addresses beyond the bound share one window (fail closed, bounded memory).
      if (this.windows.size >= GATE_MAX_TRACKED) address = GATE_OVERFLOW;
    }
    const w = this.windows.get(address);
    if (!w || t - w.start >= this.windowMs) this.windows.set(address, { start: t, count: 1 });
    else w.count++;
  }
}

/** The Host values a loopback listener on `port` answers to, plus configured extras. */
export function allowedHostsFor(host: string, port: number, extra: string[] = []): string[] {
  const names = new Set([host, '127.0.0.1', 'localhost', '[::1]']);
  if (host.includes(':') && !host.startsWith('[')) names.add(`[${host}]`);
  const out = new Set<string>();
  for (const n of names) {
    out.add(`${n}:${port}`.toLowerCase());
    if (port === 80) out.add(n.toLowerCase());
  }
  for (const e of extra) out.add(e.toLowerCase());
  return [...out];
}

function bearer(request: FastifyRequest): string | undefined {
  const h = request.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(h);
  return m?.[1];
}

/**
 * Two checks on every request, before any body is parsed:
 * 1. the Host header must name this appliance, so a web page that rebinds its own DNS name to
 *    127.0.0.1 cannot drive the API from a browser (DNS rebinding);
 * 2. a bearer token of a live agent holding the route's scope, except on routes marked `auth: false`.
 */
export const authPlugin = fp<AuthOptions>(
  async (app: FastifyInstance, opts: AuthOptions) => {
    let allowed: Set<string> | undefined;
    const allowedNow = (): Set<string> => {
      if (allowed) return allowed;
      const list = opts.allowedHosts;
      if (Array.isArray(list)) {
        allowed = new Set(list.map((h) => h.toLowerCase()));
        return allowed;
      }
      const addr = app.server.address();
      const port = addr && typeof addr === 'object' ? addr.port : 0;
      const set = new Set(list(port).map((h) => h.toLowerCase()));
      if (port !== 0) allowed = set;
      return set;
    };
    const gate = new BadTokenGate(
      opts.badTokensPerMinute ?? 60,
      60_000,
      opts.now ?? (() => performance.now()),
    );
    /** The live agent of `token` (undefined: a malformed header), or why it is refused. */
    const checkToken = (request: FastifyRequest, token: string | undefined): AgentInfo | QkmError => {
      const wait = gate.blockedFor(request.ip);
      if (wait > 0) {
        return new QkmError(
          'RATE_LIMITED',
          `too many invalid tokens from this address; retry in ${Math.ceil(wait / 1000)} s`,
        );
      }
      const agent = token ? opts.agents.authenticate(token) : undefined;
      if (!agent) {
        gate.fail(request.ip);
        return new QkmError(
          'UNAUTHORIZED',
          token
            ? 'invalid or revoked token'
            : 'malformed Authorization header (Authorization: Bearer <token>)',
        );
      }
      return agent;
    };
    app.decorate('checkToken', (request: FastifyRequest, token: string) => {
      const checked = checkToken(request, token);
      // A wrong token at the status-page login is audited like one in an Authorization header.
      if (checked instanceof QkmError && checked.code === 'UNAUTHORIZED') {
        opts.refused?.(
          checked.code,
          `${request.method} ${request.routeOptions.url ?? '(no route)'}: ${checked.message}`,
          'unauthenticated',
        );
      }
      return checked;
    });
    /** Why the request may not proceed, or undefined when it may. */
    const refusal = (request: FastifyRequest): QkmError | undefined => {
      const host = (request.headers.host ?? '').toLowerCase();
      if (!allowedNow().has(host)) {
        return new QkmError('HOST_NOT_ALLOWED', 'the Host header does not name this appliance');
      }
      const config = request.routeOptions.config;
      if (config?.auth === false) return undefined;
      const token = bearer(request);
      let agent: AgentInfo | undefined;
      if (!token && request.headers.authorization === undefined) {
        const session = cookieValue(request.headers.cookie, UI_COOKIE);
        if (session === undefined) {
          return new QkmError('UNAUTHORIZED', 'missing bearer token (Authorization: Bearer <token>)');
        }
        const readRoute = request.method === 'GET' || request.method === 'HEAD';
        if (config?.uiCookie !== true || !readRoute || !opts.uiSessions) {
          return new QkmError(
            'UNAUTHORIZED',
            'missing bearer token (Authorization: Bearer <token>); the status-page login is accepted on read routes only',
          );
        }
        const tokenHash = opts.uiSessions.lookup(session);
        agent = tokenHash === undefined ? undefined : opts.agents.authenticateHash(tokenHash);
        if (!agent) {
          return new QkmError(
            'UNAUTHORIZED',
            'status-page login expired, logged out or its token revoked; log in again',
          );
        }
      } else {
        const checked = checkToken(request, token);
        if (checked instanceof QkmError) return checked;
        agent = checked;
      }
      request.agent = agent;
      const scope = config?.scope;
      if (scope && !agent.scopes.includes(scope) && !agent.scopes.includes('admin')) {
        return new QkmError('FORBIDDEN', `this route needs the '${scope}' scope`);
      }
      return undefined;
    };
    // Callback style rather than async: this runs on every request and the check is synchronous,
    // so a promise per request would be pure overhead.
    app.addHook('onRequest', (request, _reply, done) => {
      let err: Error | undefined;
      try {
        err = refusal(request);
      } catch (e) {
        err = e as Error;
      }
      if (err instanceof QkmError && (err.code === 'UNAUTHORIZED' || err.code === 'FORBIDDEN'))
        opts.refused?.(
          err.code,
          `${request.method} ${request.routeOptions.url ?? '(no route)'}: ${err.message}`,
          request.agent?.name ?? 'unauthenticated',
        );
      done(err);
    });
  },
  { name: 'qkm-auth', fastify: '5.x' },
);
