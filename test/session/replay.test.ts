import { describe, expect, it } from 'vitest';
import { createMemoryBackend } from '../../src/store/memory.js';
import { ReplayCache } from '../../src/session/replay.js';
import { makePair } from './harness.js';

describe('replay cache', () => {
  it('admits once, persists across instances, prunes only what the window already rejects', async () => {
    const store = createMemoryBackend();
    const t0 = 1_000_000;
    const c = new ReplayCache(store, { windowMs: 120_000 });
    expect(await c.admit('a'.repeat(32), '00', t0, t0)).toBe(true);
    expect(await c.admit('a'.repeat(32), '00', t0, t0)).toBe(false);
    expect(await c.admit('b'.repeat(32), '00', t0, t0)).toBe(true); // keyed by initiator too
    const restarted = new ReplayCache(store, { windowMs: 120_000 });
    expect(await restarted.admit('a'.repeat(32), '00', t0, t0 + 1)).toBe(false);
    expect(await restarted.prune(t0 + 120_000)).toBe(0); // still inside the window
    expect(await restarted.prune(t0 + 122_000)).toBe(2);
    expect(await store.records('replay').entries()).toEqual([]);
  });
});

describe('replay cache: bounded under a steady load (#16)', () => {
  it('the mirror and the store hold at most rate × (window + prune interval) entries', async () => {
    const store = createMemoryBackend();
    const windowMs = 10_000;
    const pruneEveryMs = 5_000;
    const c = new ReplayCache(store, { windowMs, pruneEveryMs });
    const mirrorSize = () => (c as unknown as { mirror?: Map<string, number> }).mirror?.size ?? 0;
    const perSecond = 20;
    // Five simulated minutes of 20 handshakes a second, each with a fresh nonce.
    const bound = perSecond * ((windowMs + pruneEveryMs + 2000) / 1000);
    let peak = 0;
    const t0 = 1_000_000;
    for (let s = 0; s < 300; s++) {
      const now = t0 + s * 1000;
      for (let i = 0; i < perSecond; i++) {
        expect(await c.admit('a'.repeat(32), `${s}-${i}`, now, now)).toBe(true);
      }
      await (c as unknown as { pruning?: Promise<number> }).pruning;
      peak = Math.max(peak, mirrorSize());
    }
    expect(peak).toBeLessThanOrEqual(bound);
    expect((await store.records('replay').entries()).length).toBeLessThanOrEqual(bound);
    expect(await c.admit('a'.repeat(32), '299-0', t0 + 299_000, t0 + 299_500)).toBe(false); // still remembered
  });
});

describe('replay cache admission', () => {
  it('of concurrent reservations of one handshake exactly one is admitted, and it is durable', async () => {
    const store = createMemoryBackend();
    const c = new ReplayCache(store, { windowMs: 120_000 });
    const t0 = 5_000_000;
    const all = await Promise.all(Array.from({ length: 20 }, () => c.reserve('i'.repeat(32), 'ab', t0, t0)));
    expect(all.filter((a) => a.admitted)).toHaveLength(1);
    await Promise.all(all.map((a) => a.durable));
    expect(await store.records('replay').get(`${'i'.repeat(32)}:ab`)).toEqual({ expires: t0 + 120_000 });
  });

  it('a failed write releases the reservation and rejects durable, so a retry can be admitted', async () => {
    const store = createMemoryBackend();
    const records = store.records('replay');
    const put = records.put.bind(records);
    let fail = true;
    records.put = async (k, v) => {
      if (fail) throw new Error('disk full');
      return put(k, v);
    };
    store.records = (() => records) as never;
    const c = new ReplayCache(store, { windowMs: 1000 });
    const first = await c.reserve('n'.repeat(32), '01', 10, 10);
    expect(first.admitted).toBe(true);
    await expect(first.durable).rejects.toThrow('disk full');
    fail = false;
    expect(await c.admit('n'.repeat(32), '01', 10, 10)).toBe(true);
    expect(await c.admit('n'.repeat(32), '01', 10, 10)).toBe(false);
  });
});

describe('junk input to the session API', () => {
  it('initiate and confirm reject junk with specific codes', async () => {
    const { a, b } = await makePair();
    const peer = b.identity.nodeId;
    const who = { agent: 'alice', responderAgent: 'bob' };
    const cases: Array<[unknown, string]> = [
      [{ ...who, peer: 42 }, 'PEER_NOT_FOUND'],
      [{ ...who, peer: '../../etc' }, 'PEER_NOT_FOUND'],
      [{ ...who, peer, minPosture: 'QKD' }, 'INVALID_PARAMETER'],
      [{ ...who, peer, context: 'x'.repeat(1025) }, 'INVALID_PARAMETER'],
      [{ ...who, peer, context: 7 }, 'INVALID_PARAMETER'],
      [{ peer }, 'INVALID_PARAMETER'],
      [{ ...who, responderAgent: '', peer }, 'INVALID_PARAMETER'],
      [{ ...who, agent: '../x', peer }, 'INVALID_PARAMETER'],
    ];
    for (const [req, code] of cases) {
      await expect(a.sessions.initiate(req as never), JSON.stringify(req)).rejects.toMatchObject({ code });
    }
    for (const junk of ['', 'x', '====', 'A'.repeat(70_000), null]) {
      await expect(b.sessions.accept({ agent: 'bob', handshake: junk as never })).rejects.toMatchObject({
        code: 'HANDSHAKE_MALFORMED',
      });
    }
    await expect(a.sessions.confirm(null as never, 'AA', 'alice')).rejects.toMatchObject({
      code: 'SESSION_NOT_FOUND',
    });
  });
});

describe('replay cache: a pruned handshake stays refused (#16)', () => {
  it('once its entry is pruned, a replay is refused by the timestamp window; entries still in the window by the durable cache, also after a restart', async () => {
    const { a, b, clock } = await makePair({ qkd: false });
    const replayed = async (handshake: unknown) =>
      b.sessions.accept({ agent: 'bob', handshake: handshake as never }).then(
        () => 'accepted',
        (e: { code?: string }) => e.code,
      );
    const old = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    await b.sessions.accept({ agent: 'bob', handshake: old.handshake });
    // Past the window (120 s) and the prune interval (60 s): the next admission prunes the old entry.
    clock.now += 185_000;
    const fresh = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
    });
    await b.sessions.accept({ agent: 'bob', handshake: fresh.handshake });
    // The prune runs behind the admission: give it turns of the event loop, not time.
    const entries = () => b.store.records('replay').entries();
    for (let i = 0; i < 1000 && (await entries()).length > 1; i++) await new Promise((r) => setImmediate(r));
    expect(await entries()).toHaveLength(1);
    expect(await replayed(old.handshake)).toBe('HANDSHAKE_STALE');
    expect(await replayed(fresh.handshake)).toBe('HANDSHAKE_REPLAYED');
    b.restart();
    expect(await replayed(fresh.handshake)).toBe('HANDSHAKE_REPLAYED');
    expect(await replayed(old.handshake)).toBe('HANDSHAKE_STALE');
  });
});
