import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { installErrorHandling } from '../../src/api/errors.js';
import { FixedWindowLimiter, rateLimitPlugin } from '../../src/api/rate-limit.js';

describe('FixedWindowLimiter', () => {
  it('allows max per window per key, then says how long until the window ends', () => {
    let t = 1000;
    const l = new FixedWindowLimiter(3, 60_000, () => t);
    expect([l.hit('a'), l.hit('a'), l.hit('a')]).toEqual([0, 0, 0]);
    expect(l.hit('b')).toBe(0); // keys are independent
    t += 10_000;
    expect(l.hit('a')).toBe(50_000);
    t += 50_000; // the window of 'a' is over
    expect(l.hit('a')).toBe(0);
  });

  it('forgets finished windows, so one-off keys do not accumulate', () => {
    let t = 0;
    const l = new FixedWindowLimiter(1, 100, () => t);
    for (let i = 0; i < 1000; i++) l.hit(`ip:${i}`);
    t = 250;
    l.hit('late');
    expect((l as unknown as { windows: Map<string, unknown> }).windows.size).toBe(1);
  });

  it('rejects nonsense limits', () => {
    expect(() => new FixedWindowLimiter(0, 1000, () => 0)).toThrow(RangeError);
    expect(() => new FixedWindowLimiter(1, 0, () => 0)).toThrow(RangeError);
  });
});

describe('rateLimitPlugin', () => {
  it('answers 429 RATE_LIMITED with Retry-After once a caller exceeds its quota', async () => {
    const app = Fastify();
    installErrorHandling(app);
    // Stands in for the auth plugin, which the rate limiter depends on and runs after.
    await app.register(
      (await import('fastify-plugin')).default(
        async (a) => {
          a.addHook('onRequest', (req, _r, done) => {
            (req as { agent?: unknown }).agent = {
              name: String(req.headers['x-agent']),
              scopes: [],
              created: '',
            };
            done();
          });
        },
        { name: 'qkm-auth' },
      ),
    );
    await app.register(rateLimitPlugin, { max: 2 });
    app.get('/x', async () => ({ ok: true }));
    const hit = (agent: string) => app.inject({ url: '/x', headers: { 'x-agent': agent } });
    expect((await hit('a')).statusCode).toBe(200);
    expect((await hit('a')).statusCode).toBe(200);
    const limited = await hit('a');
    expect(limited.statusCode).toBe(429);
    expect(limited.json()).toMatchObject({ error: 'RATE_LIMITED' });
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(limited.headers['x-ratelimit-limit']).toBe('2');
    // Another agent has its own quota.
    expect((await hit('b')).statusCode).toBe(200);
    await app.close();
  });
});
