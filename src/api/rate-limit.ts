import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { QkmError } from '../core/errors.js';

/**
 * Per-caller request quota: at most `max` requests per fixed window, keyed by the agent the
 * auth hook identified (by client address on the routes that need no token).
 *
 * Why not @fastify/rate-limit: it runs as an async hook with three awaits and sets three
 * headers on every response, which measured at about a tenth of /v1/entropy's throughput.
 * A quota per agent is a counter per agent; this one is synchronous and adds headers only to
 * the 429 that tells the caller when to come back.
 */
export interface RateLimitOptions {
  /** Requests per window per caller. */
  max: number;
  /** Window length in ms (default 60 000). */
  windowMs?: number;
  /** Monotonic clock in ms (default performance.now); injectable for tests. */
  now?: () => number;
}

interface Window {
  start: number;
  count: number;
}

/** Callers tracked at once (default); see `FixedWindowLimiter.maxKeys`. */
export const DEFAULT_MAX_TRACKED = 100_000;
/** The one window shared by callers beyond `maxKeys` (no caller key can start with NUL). */
const OVERFLOW = '\0overflow';

export class FixedWindowLimiter {
  private readonly windows = new Map<string, Window>();
  private sweptAt: number;

  constructor(
    readonly max: number,
    readonly windowMs: number,
    private readonly now: () => number,
    /**
     * Bound on the windows held: when that many callers are inside their window, further new
     * callers share one window (fail closed: together they get `max`), so memory stays bounded
     * however many addresses show up within one window.
     */
    readonly maxKeys: number = DEFAULT_MAX_TRACKED,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('max must be a positive integer');
    if (!(windowMs > 0)) throw new RangeError('windowMs must be positive');
    this.sweptAt = now();
  }

  /** Counts one request for `key`; returns 0 if allowed, else the ms until its window ends. */
  hit(key: string): number {
    const t = this.now();
    // Drop every finished window once per window, so keys seen once (addresses) do not pile up.
    if (t - this.sweptAt >= this.windowMs) {
      for (const [k, w] of this.windows) if (t - w.start >= this.windowMs) this.windows.delete(k);
      this.sweptAt = t;
    }
    let w = this.windows.get(key);
    if (w === undefined && this.windows.size >= this.maxKeys) {
      for (const [k, old] of this.windows) if (t - old.start >= this.windowMs) this.windows.delete(k);
      this.sweptAt = t;
      if (this.windows.size >= this.maxKeys) {
        key = OVERFLOW;
        w = this.windows.get(key);
      }
    }
    if (w === undefined || t - w.start >= this.windowMs) {
      w = { start: t, count: 0 };
      this.windows.set(key, w);
    }
    w.count++;
    return w.count <= this.max ? 0 : Math.max(1, Math.ceil(w.start + this.windowMs - t));
  }
}

export const rateLimitPlugin = fp<RateLimitOptions>(
  async (app: FastifyInstance, opts: RateLimitOptions) => {
    const limiter = new FixedWindowLimiter(
      opts.max,
      opts.windowMs ?? 60_000,
      opts.now ?? (() => performance.now()),
    );
    // Registered after the auth plugin, so `request.agent` is known here (onRequest hooks run in
    // registration order) and a refused token never counts against anyone's quota.
    app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done) => {
      const key = request.agent ? `agent:${request.agent.name}` : `ip:${request.ip}`;
      const waitMs = limiter.hit(key);
      if (waitMs === 0) {
        done();
        return;
      }
      const retry = Math.ceil(waitMs / 1000);
      reply.headers({
        'retry-after': String(retry),
        'x-ratelimit-limit': String(limiter.max),
        'x-ratelimit-remaining': '0',
        'x-ratelimit-reset': String(retry),
      });
      done(
        new QkmError(
          'RATE_LIMITED',
          `rate limit of ${limiter.max} requests per ${limiter.windowMs / 1000} s exceeded; retry in ${retry} s`,
        ),
      );
    });
  },
  { name: 'qkm-rate-limit', fastify: '5.x', dependencies: ['qkm-auth'] },
);
