import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AgentInfo } from '../agents/registry.js';

/**
 * Status-page logins. `POST /ui/login {token}` trades an agent token for a random session id in
 * an HttpOnly, SameSite=Strict cookie (Secure when the request came over TLS), so the page never
 * holds the token and a reload keeps the login. The cookie is a *read* credential only: the auth
 * plugin accepts it on routes marked `uiCookie: true` (GET status, status history, metrics) and
 * nowhere else, so a script injected into the page, or a cross-site form, cannot create keys or
 * agents with it. Sessions live in memory (a restart logs everyone out) and are bounded.
 */

export const UI_COOKIE = 'qkm_ui';
/** Sessions kept at once; beyond, the oldest is dropped (it logs in again). */
export const UI_MAX_SESSIONS = 1000;

interface UiSession {
  /** The token's hash at login: a rotated or revoked token ends the session. */
  tokenHash: string;
  expires: number;
}

export class UiSessions {
  private readonly sessions = new Map<string, UiSession>();

  constructor(
    private readonly lifetimeMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get lifetimeSeconds(): number {
    return Math.floor(this.lifetimeMs / 1000);
  }

  create(tokenHash: string): { id: string; expires: number } {
    const t = this.now();
    for (const [k, s] of this.sessions) if (s.expires <= t) this.sessions.delete(k);
    while (this.sessions.size >= UI_MAX_SESSIONS) {
      const oldest = this.sessions.keys().next().value as string;
      this.sessions.delete(oldest);
    }
    const id = randomBytes(32).toString('base64url');
    const expires = t + this.lifetimeMs;
    this.sessions.set(id, { tokenHash, expires });
    return { id, expires };
  }

  /** The token hash behind a live session id, or undefined. */
  lookup(id: string): string | undefined {
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (s.expires <= this.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    return s.tokenHash;
  }

  delete(id: string): void {
    this.sessions.delete(id);
  }
}

/** The value of cookie `name` in a Cookie header (RFC 6265 §5.4 form `a=b; c=d`). */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function isTls(request: FastifyRequest): boolean {
  return request.protocol === 'https';
}

export function setUiCookie(request: FastifyRequest, reply: FastifyReply, id: string, maxAge: number): void {
  reply.header(
    'set-cookie',
    `${UI_COOKIE}=${id}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${isTls(request) ? '; Secure' : ''}`,
  );
}

export function clearUiCookie(request: FastifyRequest, reply: FastifyReply): void {
  reply.header(
    'set-cookie',
    `${UI_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict${isTls(request) ? '; Secure' : ''}`,
  );
}

/** What the login answer says about the agent (never the token). */
export function loginAnswer(agent: AgentInfo, expires: number) {
  return { agent: agent.name, scopes: agent.scopes, expires: new Date(expires).toISOString() };
}
