import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isQkmError, QkmError } from '../../src/core/errors.js';
import type { KeyMetadata, KeyStore } from '../../src/keys/interface.js';
import type { StorageBackend } from '../../src/store/interface.js';
import {
  BACKENDS,
  type BackendHarness,
  ETCD_SKIP,
  stopSharedEtcd,
  immutablePart,
  newKey,
  T0,
} from './helpers.js';

/** One KeyStore contract, run against every backend (STYLE.md: one conformance suite per interface). */

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof QkmError) return err.code;
    throw err;
  }
  throw new Error('expected a rejection');
}

const at = (seconds: number): Date => new Date(T0.getTime() + seconds * 1000);
const iso = (seconds: number): string => at(seconds).toISOString();

afterAll(() => stopSharedEtcd(), 30_000);

if (ETCD_SKIP !== undefined) {
  describe('KeyStore conformance: etcd', () => {
    it.skip(`skipped: ${ETCD_SKIP}`, () => undefined);
  });
}

describe.each(BACKENDS)('KeyStore conformance: $name', ({ make }) => {
  let harness: BackendHarness;
  let backend: StorageBackend;
  let store: KeyStore;

  beforeEach(async () => {
    harness = await make();
    backend = await harness.open();
    store = backend.keys;
  });
  afterEach(async () => {
    await backend.close();
    await harness.cleanup();
  });

  it('put returns active metadata, and meta() returns the same', async () => {
    const key = newKey({ owner: 'agent-a', label: 'db password' });
    const meta = await store.put(key);
    expect(meta).toEqual({ ...key.meta, state: 'active' });
    expect(await store.meta(key.meta.id)).toEqual(meta);
    expect(meta).not.toHaveProperty('material');
  });

  it('rejects a duplicate id with KEY_EXISTS, also after the first was taken', async () => {
    const key = newKey();
    await store.put(key);
    expect(await code(store.put(newKey({ id: key.meta.id })))).toBe('KEY_EXISTS');
    await store.take(key.meta.id, T0);
    expect(await code(store.put(newKey({ id: key.meta.id })))).toBe('KEY_EXISTS');
  });

  it('concurrent puts: one id → exactly one wins; many ids → all stored, in call order', async () => {
    const key = newKey();
    const same = await Promise.allSettled(
      Array.from({ length: 20 }, () => store.put(newKey({ id: key.meta.id }))),
    );
    expect(same.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of same) if (r.status === 'rejected') expect(isQkmError(r.reason, 'KEY_EXISTS')).toBe(true);

    const many = Array.from({ length: 30 }, () => newKey());
    await Promise.all(many.map((k) => store.put(k)));
    const listed = (await store.list({ after: key.meta.id })).map((m) => m.id);
    expect(listed).toEqual(many.map((k) => k.meta.id));
    expect((await store.counts()).active).toBe(31);
  });

  it('stores only the documented metadata fields', async () => {
    const key = newKey();
    const sneaky = { ...key, meta: { ...key.meta, material: 'leak', state: 'taken' } as typeof key.meta };
    const meta = await store.put(sneaky);
    expect(meta).not.toHaveProperty('material');
    expect(meta.state).toBe('active');
    expect(await store.meta(key.meta.id)).not.toHaveProperty('material');
  });

  it('rejects malformed keys with INVALID_PARAMETER', async () => {
    const bad = newKey();
    expect(await code(store.put({ ...bad, meta: { ...bad.meta, size: 31 } }))).toBe('INVALID_PARAMETER');
    expect(await code(store.put(newKey({ id: '../../etc/passwd' })))).toBe('INVALID_PARAMETER');
    expect(await code(store.put(newKey({ id: '' })))).toBe('INVALID_PARAMETER');
    expect(await code(store.put(newKey({ expires: 'tomorrow' })))).toBe('INVALID_PARAMETER');
    expect(await code(store.put({ meta: bad.meta, material: new Uint8Array(0) }))).toBe('INVALID_PARAMETER');
    expect((await store.counts()).active).toBe(0);
  });

  it('take returns the material exactly once and records the closing time', async () => {
    const key = newKey();
    const expected = Uint8Array.from(key.material);
    await store.put(key);
    const taken = await store.take(key.meta.id, at(10));
    expect(Buffer.from(taken.material).equals(Buffer.from(expected))).toBe(true);
    expect(taken.meta).toEqual({ ...key.meta, state: 'taken', closedAt: iso(10) });
    expect(await store.meta(key.meta.id)).toEqual(taken.meta);
    expect(await code(store.take(key.meta.id, at(11)))).toBe('KEY_ALREADY_TAKEN');
    expect(await code(store.read(key.meta.id, at(11)))).toBe('KEY_ALREADY_TAKEN');
  });

  it('of 50 concurrent takes exactly one succeeds; the others reject KEY_ALREADY_TAKEN', async () => {
    const key = newKey();
    await store.put(key);
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => store.take(key.meta.id, T0)));
    const ok = results.filter((r) => r.status === 'fulfilled');
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(ok).toHaveLength(1);
    expect(failed).toHaveLength(49);
    for (const f of failed) expect(isQkmError(f.reason, 'KEY_ALREADY_TAKEN')).toBe(true);
    expect(await store.counts()).toEqual({ active: 0, taken: 1, expired: 0 });
  });

  it('take of an expired key rejects KEY_EXPIRED and destroys it', async () => {
    const key = newKey({ expires: iso(60) });
    await store.put(key);
    expect(await code(store.take(key.meta.id, at(60)))).toBe('KEY_EXPIRED');
    const meta = await store.meta(key.meta.id);
    expect(meta.state).toBe('expired');
    expect(meta.closedAt).toBe(iso(60));
    // Still expired (not "taken") afterwards, and never served.
    expect(await code(store.take(key.meta.id, at(0)))).toBe('KEY_EXPIRED');
    expect(await code(store.read(key.meta.id, at(0)))).toBe('KEY_EXPIRED');
    expect(await store.counts()).toEqual({ active: 0, taken: 0, expired: 1 });
  });

  it('a key is served up to (not at) its expiry instant', async () => {
    const key = newKey({ expires: iso(60) });
    await store.put(key);
    const got = await store.take(key.meta.id, new Date(at(60).getTime() - 1));
    expect(got.meta.state).toBe('taken');
  });

  it('read is non-consuming, returns copies, and leaves the key active', async () => {
    const key = newKey({ purpose: 'identity', expires: null });
    const expected = Buffer.from(key.material);
    await store.put(key);
    key.material.fill(0); // the store must have its own copy
    const a = await store.read(key.meta.id);
    a.material.fill(0xff); // and must hand out copies
    const b = await store.read(key.meta.id);
    expect(Buffer.from(b.material).equals(expected)).toBe(true);
    expect(b.meta.state).toBe('active');
    expect((await store.take(key.meta.id)).material).toEqual(new Uint8Array(expected));
  });

  it('junk ids and clocks reject INVALID_PARAMETER on every method', async () => {
    const junk: unknown[] = [undefined, null, 42, '', 'a b', 'x'.repeat(129), {}, '-leading', 'a/b', 'é'];
    for (const id of junk) {
      const j = id as string;
      const calls: Array<() => Promise<unknown>> = [
        () => store.take(j),
        () => store.read(j),
        () => store.meta(j),
        () => store.delete(j),
      ];
      // `after: undefined` simply means "from the start".
      if (id !== undefined) calls.push(() => store.list({ after: j }));
      for (const call of calls) {
        expect(await code(call())).toBe('INVALID_PARAMETER');
      }
    }
    const key = newKey();
    await store.put(key);
    expect(await code(store.take(key.meta.id, new Date('nonsense')))).toBe('INVALID_PARAMETER');
    expect(await code(store.sweepExpired(new Date(Number.NaN)))).toBe('INVALID_PARAMETER');
    expect((await store.meta(key.meta.id)).state).toBe('active');
  });

  it('unknown ids reject KEY_NOT_FOUND', async () => {
    const { meta } = newKey();
    expect(await code(store.take(meta.id))).toBe('KEY_NOT_FOUND');
    expect(await code(store.read(meta.id))).toBe('KEY_NOT_FOUND');
    expect(await code(store.meta(meta.id))).toBe('KEY_NOT_FOUND');
    expect(await code(store.delete(meta.id))).toBe('KEY_NOT_FOUND');
  });

  it('delete removes key and metadata; the id can be reused', async () => {
    const key = newKey();
    await store.put(key);
    await store.delete(key.meta.id);
    expect(await code(store.meta(key.meta.id))).toBe('KEY_NOT_FOUND');
    expect(await code(store.take(key.meta.id))).toBe('KEY_NOT_FOUND');
    expect(await code(store.delete(key.meta.id))).toBe('KEY_NOT_FOUND');
    expect(await store.counts()).toEqual({ active: 0, taken: 0, expired: 0 });
    const again = newKey({ id: key.meta.id });
    await store.put(again);
    expect(
      Buffer.from((await store.take(key.meta.id, T0)).material).equals(Buffer.from(again.material)),
    ).toBe(true);
  });

  it('delete works on taken and expired keys and keeps counts right', async () => {
    const a = newKey();
    const b = newKey({ expires: iso(1) });
    await store.put(a);
    await store.put(b);
    await store.take(a.meta.id, T0);
    await store.sweepExpired(at(5));
    expect(await store.counts()).toEqual({ active: 0, taken: 1, expired: 1 });
    await store.delete(a.meta.id);
    await store.delete(b.meta.id);
    expect(await store.counts()).toEqual({ active: 0, taken: 0, expired: 0 });
  });

  it('sweepExpired expires exactly the due active keys, once', async () => {
    const due1 = newKey({ expires: iso(10) });
    const due2 = newKey({ expires: iso(20) });
    const later = newKey({ expires: iso(21) });
    const never = newKey({ expires: null });
    const takenDue = newKey({ expires: iso(5) });
    for (const k of [due1, due2, later, never, takenDue]) await store.put(k);
    await store.take(takenDue.meta.id, T0);

    expect(await store.sweepExpired(at(20))).toBe(2);
    expect((await store.meta(due1.meta.id)).state).toBe('expired');
    expect((await store.meta(due2.meta.id)).closedAt).toBe(iso(20));
    expect((await store.meta(later.meta.id)).state).toBe('active');
    expect((await store.meta(takenDue.meta.id)).state).toBe('taken');
    expect(await store.sweepExpired(at(20))).toBe(0);
    expect(await store.counts()).toEqual({ active: 2, taken: 1, expired: 2 });
    expect(await store.sweepExpired(new Date('9999-01-01T00:00:00Z'))).toBe(1);
    expect((await store.meta(never.meta.id)).state).toBe('active');
    expect(await code(store.take(due1.meta.id, T0))).toBe('KEY_EXPIRED');
  });

  it('sweepExpired reports every id it expired to onExpired, each once, and durable by then (#16)', async () => {
    // More than one LevelDB sweep batch (256), so the ids arrive in several calls.
    const due = Array.from({ length: 300 }, (_, i) => newKey({ expires: iso(1 + (i % 7)) }));
    const later = newKey({ expires: iso(100) });
    for (const k of [...due, later]) await store.put(k);
    await store.take(due[0]!.meta.id, T0);
    const reported: string[] = [];
    const n = await store.sweepExpired(at(10), { onExpired: (ids) => reported.push(...ids) });
    expect(n).toBe(299);
    expect(reported.toSorted()).toEqual(
      due
        .slice(1)
        .map((k) => k.meta.id)
        .toSorted(),
    );
    for (const id of reported.slice(0, 20)) {
      expect(await store.meta(id)).toMatchObject({ state: 'expired', closedAt: iso(10) });
    }
    // Nothing due: no call.
    let calls = 0;
    expect(await store.sweepExpired(at(10), { onExpired: () => calls++ })).toBe(0);
    expect(calls).toBe(0);
  });

  it('list: creation order, filters, paging with after, limit bounds', async () => {
    const keys = [
      newKey({ owner: 'a', purpose: 'symmetric' }),
      newKey({ owner: 'b', purpose: 'session' }),
      newKey({ owner: 'a', purpose: 'session' }),
      newKey({ purpose: 'identity', expires: null }),
      newKey({ owner: 'a', purpose: 'symmetric' }),
    ];
    // Ids are random, so creation order differs from id order: the list must follow creation.
    for (const k of keys) await store.put(k);
    await store.take(keys[2]!.meta.id, T0);
    const ids = keys.map((k) => k.meta.id);

    const all = await store.list();
    expect(all.map((m) => m.id)).toEqual(ids);
    for (const m of all) expect(m).not.toHaveProperty('material');
    expect(all.map(immutablePart)).toEqual(keys.map((k) => k.meta));

    expect((await store.list({ owner: 'a' })).map((m) => m.id)).toEqual([ids[0], ids[2], ids[4]]);
    expect((await store.list({ purpose: 'session' })).map((m) => m.id)).toEqual([ids[1], ids[2]]);
    expect((await store.list({ state: 'taken' })).map((m) => m.id)).toEqual([ids[2]]);
    expect((await store.list({ state: 'active', owner: 'a' })).map((m) => m.id)).toEqual([ids[0], ids[4]]);

    const page1 = await store.list({ limit: 2 });
    expect(page1.map((m) => m.id)).toEqual(ids.slice(0, 2));
    const page2 = await store.list({ limit: 2, after: page1[1]!.id });
    expect(page2.map((m) => m.id)).toEqual(ids.slice(2, 4));
    const page3 = await store.list({ limit: 2, after: page2[1]!.id });
    expect(page3.map((m) => m.id)).toEqual(ids.slice(4));
    expect(await store.list({ after: ids[4]! })).toEqual([]);
    // Paging with a filter: `after` positions in creation order, then the filter applies.
    expect((await store.list({ owner: 'a', after: ids[0]!, limit: 1 })).map((m) => m.id)).toEqual([ids[2]]);

    expect(await code(store.list({ limit: 0 }))).toBe('INVALID_PARAMETER');
    expect(await code(store.list({ limit: 1001 }))).toBe('INVALID_PARAMETER');
    expect(await code(store.list({ after: newKey().meta.id }))).toBe('INVALID_PARAMETER');
    expect(await code(store.list({ state: 'gone' as never }))).toBe('INVALID_PARAMETER');
  });

  it('list pages through more keys than one internal chunk', async () => {
    const n = 300;
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push((await store.put(newKey({ size: 16 }))).id);
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page: KeyMetadata[] = await store.list(
        after === undefined ? { limit: 128 } : { limit: 128, after },
      );
      if (page.length === 0) break;
      seen.push(...page.map((m) => m.id));
      after = page[page.length - 1]!.id;
    }
    expect(seen).toEqual(ids);
    expect(await store.list({ limit: 1000 })).toHaveLength(n);
  });

  it("list by state: the state's keys in creation order, paged with after from any key", async () => {
    const keys = Array.from({ length: 7 }, () => newKey());
    for (const k of keys) await store.put(k);
    const ids = keys.map((k) => k.meta.id);
    await store.take(ids[1]!, T0);
    await store.take(ids[4]!, T0);
    await store.sweepExpired(at(3600)); // the five still active expire
    expect((await store.list({ state: 'taken' })).map((m) => m.id)).toEqual([ids[1], ids[4]]);
    expect((await store.list({ state: 'expired', limit: 2 })).map((m) => m.id)).toEqual([ids[0], ids[2]]);
    expect((await store.list({ state: 'expired', after: ids[2]! })).map((m) => m.id)).toEqual([
      ids[3],
      ids[5],
      ids[6],
    ]);
    // A cursor in another state still positions in creation order.
    expect((await store.list({ state: 'expired', after: ids[4]! })).map((m) => m.id)).toEqual([
      ids[5],
      ids[6],
    ]);
    expect(await store.list({ state: 'active' })).toEqual([]);
  });

  describe('purgeClosed (retention of closed keys)', () => {
    it('removes closed keys closed at or before the cutoff, oldest first, bounded by limit', async (ctx) => {
      if (!store.purgeClosed) return ctx.skip('this store does not purge closed keys (no purgeClosed)');
      const keys = Array.from({ length: 6 }, () => newKey({ expires: null }));
      for (const k of keys) await store.put(k);
      const ids = keys.map((k) => k.meta.id);
      // Closed at T0+10, +20, +30, +40 (ids[0..3]); ids[4], ids[5] stay active.
      for (let i = 0; i < 4; i++) await store.take(ids[i]!, at(10 * (i + 1)));
      expect(await store.purgeClosed(at(5))).toBe(0);
      expect(await store.purgeClosed(at(30), 2)).toBe(2);
      expect(await code(store.meta(ids[0]!))).toBe('KEY_NOT_FOUND');
      expect(await code(store.meta(ids[1]!))).toBe('KEY_NOT_FOUND');
      expect((await store.meta(ids[2]!)).state).toBe('taken');
      expect(await store.counts()).toEqual({ active: 2, taken: 2, expired: 0 });
      expect(await store.purgeClosed(at(30), 2)).toBe(1); // the cutoff is inclusive
      expect(await store.purgeClosed(at(1e6))).toBe(1);
      expect(await store.purgeClosed(at(1e6))).toBe(0);
      expect((await store.list()).map((m) => m.id)).toEqual([ids[4], ids[5]]);
      expect(await store.counts()).toEqual({ active: 2, taken: 0, expired: 0 });
      // Active keys are never purged, and still serve.
      expect((await store.take(ids[4]!, at(1e6))).meta.state).toBe('taken');
      // A purged id is unknown, and free again.
      expect(await code(store.take(ids[0]!, at(1e6)))).toBe('KEY_NOT_FOUND');
      await store.put(newKey({ id: ids[0]! }));
    });

    it('purges expired keys too, and drops held material with them', async (ctx) => {
      if (!store.purgeClosed) return ctx.skip('this store does not purge closed keys (no purgeClosed)');
      const a = newKey();
      const b = newKey({ expires: null });
      await store.put(a);
      await store.put(b);
      await store.sweepExpired(at(3600));
      await store.take(b.meta.id, at(3600), { hold: { token: 't', until: at(7200) } });
      expect(await store.purgeClosed(at(3600))).toBe(2);
      expect(await store.counts()).toEqual({ active: 0, taken: 0, expired: 0 });
      const redeliver = store.redeliver?.bind(store);
      if (redeliver) expect(await code(redeliver(b.meta.id, 't', at(3601)))).toBe('KEY_NOT_FOUND');
      expect(await store.list()).toEqual([]);
    });

    it('rejects a bad limit or clock with INVALID_PARAMETER', async (ctx) => {
      if (!store.purgeClosed) return ctx.skip('this store does not purge closed keys (no purgeClosed)');
      for (const limit of [0, -1, 1.5, 1001, Number.NaN]) {
        expect(await code(store.purgeClosed(T0, limit))).toBe('INVALID_PARAMETER');
      }
      expect(await code(store.purgeClosed(new Date(Number.NaN)))).toBe('INVALID_PARAMETER');
    });

    it('survives reopen: purged keys stay gone, the rest are listed by state (durable backends)', async (ctx) => {
      if (!store.purgeClosed || !harness.durable)
        return ctx.skip('needs a durable store that purges closed keys');
      const keys = Array.from({ length: 4 }, () => newKey({ expires: null }));
      for (const k of keys) await store.put(k);
      await store.take(keys[0]!.meta.id, at(1));
      await store.take(keys[1]!.meta.id, at(100));
      expect(await store.purgeClosed(at(50))).toBe(1);
      backend = await harness.reopen(backend);
      store = backend.keys;
      expect(await code(store.meta(keys[0]!.meta.id))).toBe('KEY_NOT_FOUND');
      expect((await store.list({ state: 'taken' })).map((m) => m.id)).toEqual([keys[1]!.meta.id]);
      expect((await store.list({ state: 'active' })).map((m) => m.id)).toEqual([
        keys[2]!.meta.id,
        keys[3]!.meta.id,
      ]);
      expect(await store.counts()).toEqual({ active: 2, taken: 1, expired: 0 });
      expect(await store.purgeClosed!(at(100))).toBe(1);
    });
  });

  it('after close, operations reject STORE_UNAVAILABLE', async () => {
    const key = newKey();
    await store.put(key);
    await backend.close();
    expect(await code(store.take(key.meta.id))).toBe('STORE_UNAVAILABLE');
    expect(await code(store.put(newKey()))).toBe('STORE_UNAVAILABLE');
    expect(await code(store.list())).toBe('STORE_UNAVAILABLE');
    expect(await code(store.counts())).toBe('STORE_UNAVAILABLE');
  });

  it('close with operations in flight: each either completes intact or rejects STORE_UNAVAILABLE', async (ctx) => {
    if (!harness.durable) ctx.skip('the memory backend is not durable');
    const first = newKey();
    await store.put(first);
    const keys = Array.from({ length: 20 }, () => newKey());
    // Same id for every take, so they queue on its lock while close() runs.
    // Settle-wrapped at once: all but one take reject, and a rejection with no
    // handler yet attached would surface as an unhandled rejection.
    const takes = Promise.allSettled(Array.from({ length: 5 }, () => store.take(first.meta.id, T0)));
    const puts = Promise.allSettled(keys.map((k) => store.put(k)));
    const closing = backend.close();
    const late = await store.put(newKey()).catch((e: unknown) => e);
    expect(isQkmError(late, 'STORE_UNAVAILABLE')).toBe(true);
    const putResults = await puts;
    const takeResults = await takes;
    await closing;
    // Single use holds even across close: at most one take hands the key out.
    expect(takeResults.filter((r) => r.status === 'fulfilled').length).toBeLessThanOrEqual(1);
    for (const r of takeResults) {
      if (r.status === 'rejected') {
        expect(isQkmError(r.reason, 'KEY_ALREADY_TAKEN') || isQkmError(r.reason, 'STORE_UNAVAILABLE')).toBe(
          true,
        );
      }
    }
    backend = await harness.reopen(backend);
    store = backend.keys;
    for (const [i, r] of putResults.entries()) {
      if (r.status === 'rejected') {
        expect(isQkmError(r.reason, 'STORE_UNAVAILABLE')).toBe(true);
        continue;
      }
      const got = await store.read(keys[i]!.meta.id, T0);
      expect(Buffer.from(got.material).equals(Buffer.from(keys[i]!.material))).toBe(true);
    }
    expect((await store.meta(first.meta.id)).state).toBe('taken');
  });

  it('survives close and reopen (durable backends)', async (ctx) => {
    if (!harness.durable) ctx.skip('the memory backend is not durable');
    const active = newKey({ label: 'kept' });
    const taken = newKey();
    const due = newKey({ expires: iso(1) });
    for (const k of [active, taken, due]) await store.put(k);
    await store.take(taken.meta.id, T0);
    await store.sweepExpired(at(2));
    backend = await harness.reopen(backend);
    store = backend.keys;
    expect(await store.counts()).toEqual({ active: 1, taken: 1, expired: 1 });
    expect((await store.list()).map((m) => m.id)).toEqual([active.meta.id, taken.meta.id, due.meta.id]);
    expect(await code(store.take(taken.meta.id, T0))).toBe('KEY_ALREADY_TAKEN');
    expect(await code(store.take(due.meta.id, T0))).toBe('KEY_EXPIRED');
    const got = await store.take(active.meta.id, T0);
    expect(Buffer.from(got.material).equals(Buffer.from(active.material))).toBe(true);
    // New keys continue the creation order after the reopened ones.
    const next = await store.put(newKey());
    expect((await store.list()).at(-1)!.id).toBe(next.id);
  });

  it('a take whose signal has aborted does not commit: REQUEST_ABORTED, the key stays active', async () => {
    const key = newKey();
    await store.put(key);
    const ac = new AbortController();
    ac.abort();
    expect(await code(store.take(key.meta.id, T0, { signal: ac.signal }))).toBe('REQUEST_ABORTED');
    expect((await store.meta(key.meta.id)).state).toBe('active');
    const got = await store.take(key.meta.id, T0, { signal: new AbortController().signal });
    expect(Buffer.from(got.material).equals(Buffer.from(key.material))).toBe(true);
  });

  it('a held take is redelivered once to its token, before its deadline, durably', async (ctx) => {
    if (!store.redeliver) ctx.skip('this store does not hold takes');
    const key = newKey();
    const other = newKey();
    const lapsed = newKey();
    for (const k of [key, other, lapsed]) await store.put(k);
    const hold = { token: 'agent-a\0req-1', until: at(60) };
    const first = await store.take(key.meta.id, T0, { hold });
    expect(Buffer.from(first.material).equals(Buffer.from(key.material))).toBe(true);
    await store.take(other.meta.id, T0, { hold: { token: 'x', until: at(60) } });
    await store.take(lapsed.meta.id, T0, { hold: { token: 'y', until: at(5) } });
    // A plain take of a held key is still refused: holding is not un-taking.
    expect(await code(store.take(key.meta.id, T0))).toBe('KEY_ALREADY_TAKEN');
    expect(await code(store.redeliver!(key.meta.id, 'agent-b\0req-1', at(1)))).toBe('KEY_ALREADY_TAKEN');
    if (harness.durable) {
      backend = await harness.reopen(backend);
      store = backend.keys;
    }
    const again = await store.redeliver!(key.meta.id, hold.token, at(1));
    expect(again.meta).toMatchObject({ id: key.meta.id, state: 'taken' });
    expect(Buffer.from(again.material).equals(Buffer.from(key.material))).toBe(true);
    const err = await store.redeliver!(key.meta.id, hold.token, at(2)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'KEY_ALREADY_TAKEN', details: { delivered: true } });
    expect(await code(store.redeliver!(lapsed.meta.id, 'y', at(5)))).toBe('KEY_ALREADY_TAKEN');
    // The sweep destroys holds past their deadline.
    await store.sweepExpired(at(61));
    expect(await code(store.redeliver!(other.meta.id, 'x', at(10)))).toBe('KEY_ALREADY_TAKEN');
    expect(await store.counts()).toEqual({ active: 0, taken: 3, expired: 0 });
  });

  it('behaves like a simple model under random put/take/read/delete/sweep sequences', async () => {
    type Op =
      | { kind: 'put'; slot: number; ttl: number | null }
      | { kind: 'take' | 'read' | 'delete'; slot: number; t: number }
      | { kind: 'sweep'; t: number }
      | { kind: 'purge'; t: number };
    const slot = fc.integer({ min: 0, max: 5 });
    const t = fc.integer({ min: 0, max: 100 });
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({
        kind: fc.constant('put' as const),
        slot,
        ttl: fc.option(fc.integer({ min: 1, max: 100 })),
      }),
      fc.record({ kind: fc.constantFrom('take' as const, 'read' as const, 'delete' as const), slot, t }),
      fc.record({ kind: fc.constant('sweep' as const), t }),
      ...(store.purgeClosed ? [fc.record({ kind: fc.constant('purge' as const), t })] : []),
    );
    const ids = Array.from({ length: 6 }, () => newKey().meta.id);
    let run = 0;

    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: harness.durable ? 20 : 40 }), async (ops) => {
        // A fresh id space per run, so runs share the store without interfering.
        run++;
        const id = (s: number) => `${ids[s]}-${run}`;
        type ModelKey = {
          state: 'active' | 'taken' | 'expired';
          expires: number | null;
          material: Buffer;
          closedAt?: number;
        };
        const model = new Map<string, ModelKey>();
        const outcome = async (p: Promise<unknown>) => {
          try {
            return { ok: await p };
          } catch (err) {
            if (err instanceof QkmError) return { err: err.code };
            throw err;
          }
        };
        for (const o of ops) {
          if (o.kind === 'put') {
            const key = newKey({ id: id(o.slot), expires: o.ttl === null ? null : iso(o.ttl) });
            const r = await outcome(store.put(key));
            if (model.has(key.meta.id)) expect(r).toEqual({ err: 'KEY_EXISTS' });
            else {
              expect(r).toHaveProperty('ok');
              model.set(key.meta.id, {
                state: 'active',
                expires: o.ttl,
                material: Buffer.from(key.material),
              });
            }
          } else if (o.kind === 'sweep') {
            let due = 0;
            for (const m of model.values()) {
              if (m.state === 'active' && m.expires !== null && m.expires <= o.t) {
                m.state = 'expired';
                m.closedAt = o.t;
                due++;
              }
            }
            // Other runs' keys were closed or deleted at their end, so only this run's count.
            expect(await store.sweepExpired(at(o.t))).toBe(due);
          } else if (o.kind === 'purge') {
            let gone = 0;
            for (const [k, m] of model) {
              if (m.closedAt !== undefined && m.closedAt <= o.t) {
                model.delete(k);
                gone++;
              }
            }
            expect(await store.purgeClosed!(at(o.t))).toBe(gone);
          } else {
            const k = id(o.slot);
            const m = model.get(k);
            const fn =
              o.kind === 'take'
                ? store.take(k, at(o.t))
                : o.kind === 'read'
                  ? store.read(k, at(o.t))
                  : store.delete(k);
            const r = await outcome(fn);
            if (!m) {
              expect(r).toEqual({ err: 'KEY_NOT_FOUND' });
            } else if (o.kind === 'delete') {
              expect(r).toEqual({ ok: undefined });
              model.delete(k);
            } else if (m.state === 'taken') {
              expect(r).toEqual({ err: 'KEY_ALREADY_TAKEN' });
            } else if (m.state === 'expired' || (m.expires !== null && m.expires <= o.t)) {
              expect(r).toEqual({ err: 'KEY_EXPIRED' });
              if (m.state === 'active') m.closedAt = o.t;
              m.state = 'expired';
            } else {
              const got = (r as { ok: { material: Uint8Array } }).ok;
              expect(Buffer.from(got.material).equals(m.material)).toBe(true);
              if (o.kind === 'take') {
                m.state = 'taken';
                m.closedAt = o.t;
              }
            }
          }
        }
        const counts = { active: 0, taken: 0, expired: 0 };
        for (const [k, m] of model) {
          counts[m.state]++;
          expect((await store.meta(k)).state).toBe(m.state);
        }
        expect(await store.counts()).toEqual(counts);
        for (const state of ['active', 'taken', 'expired'] as const) {
          const want = [...model].filter(([, m]) => m.state === state).map(([k]) => k);
          expect((await store.list({ state })).map((m) => m.id)).toEqual(want);
        }
        // Leave nothing behind for the next run.
        for (const k of model.keys()) await store.delete(k);
      }),
      { numRuns: harness.durable ? 25 : 100 },
    );
  });
});

describe('KeyStore conformance: material hygiene', () => {
  it('random material round-trips bit-exactly at every size 1..64 and 1024', async () => {
    for (const { make } of BACKENDS) {
      const h = await make();
      const b = await h.open();
      try {
        for (const size of [...Array.from({ length: 64 }, (_, i) => i + 1), 1024]) {
          const key = newKey({}, randomBytes(size));
          await b.keys.put(key);
          const got = await b.keys.take(key.meta.id, T0);
          expect(Buffer.from(got.material).equals(Buffer.from(key.material))).toBe(true);
        }
      } finally {
        await b.close();
        await h.cleanup();
      }
    }
  });
});
