import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { installErrorHandling } from '../../src/api/errors.js';
import { BadTokenGate, GATE_MAX_TRACKED } from '../../src/api/auth.js';
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

  it('holds at most maxKeys windows; callers beyond share one window, fail closed (#16)', () => {
    let t = 0;
    const l = new FixedWindowLimiter(5, 1000, () => t, 100);
    const windows = (l as unknown as { windows: Map<string, unknown> }).windows;
    for (let i = 0; i < 100; i++) expect(l.hit(`ip:${i}`)).toBe(0);
    // 10 000 new addresses inside the same window: the map stays at 100 + the shared window, and
    // together they get one quota of 5.
    let allowed = 0;
    for (let i = 100; i < 10_100; i++) if (l.hit(`ip:${i}`) === 0) allowed++;
    expect(allowed).toBe(5);
    expect(windows.size).toBeLessThanOrEqual(101);
    expect(l.hit('ip:0')).toBe(0); // tracked callers keep their own quota
    t = 1500; // every window has ended: new callers are tracked on their own again
    expect(l.hit('ip:new')).toBe(0);
    expect(windows.size).toBeLessThanOrEqual(2);
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

describe('BadTokenGate (bad tokens per address)', () => {
  it(`tracks at most ${GATE_MAX_TRACKED} addresses; beyond, new addresses share one window, fail closed (#16)`, () => {
    let t = 0;
    const gate = new BadTokenGate(3, 60_000, () => t);
    const windows = (gate as unknown as { windows: Map<string, unknown> }).windows;
    for (let i = 0; i < GATE_MAX_TRACKED + 5000; i++) gate.fail(`10.0.${i >> 8}.${i & 255}`);
    expect(windows.size).toBeLessThanOrEqual(GATE_MAX_TRACKED + 1);
    // The 5000 untracked addresses failed together: any untracked address is now refused.
    expect(gate.blockedFor('192.0.2.1')).toBeGreaterThan(0);
    expect(gate.blockedFor('10.0.0.0')).toBe(0); // one failure of its own, under the limit
    t = 60_000; // the windows end: the map drains as addresses come back
    gate.fail('192.0.2.1');
    expect(windows.size).toBe(1);
    expect(gate.blockedFor('192.0.2.1')).toBe(0);
  });
});
