import fc from 'fast-check';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QkmError } from '../../src/core/errors.js';
import type { StorageBackend } from '../../src/store/interface.js';
import { BACKENDS, type BackendHarness, ETCD_SKIP, stopSharedEtcd } from '../keys/helpers.js';

/** One RecordStore contract, run against every backend. */

interface Agent {
  name: string;
  hash: string;
  scopes: string[];
  created?: string;
}

afterAll(() => stopSharedEtcd(), 30_000);

if (ETCD_SKIP !== undefined) {
  describe('RecordStore conformance: etcd', () => {
    it.skip(`skipped: ${ETCD_SKIP}`, () => undefined);
  });
}

describe.each(BACKENDS)('RecordStore conformance: $name', ({ make }) => {
  let harness: BackendHarness;
  let backend: StorageBackend;

  beforeEach(async () => {
    harness = await make();
    backend = await harness.open();
  });
  afterEach(async () => {
    await backend.close();
    await harness.cleanup();
  });

  it('get/put/del round-trip JSON values', async () => {
    const agents = backend.records<Agent>('agents');
    expect(await agents.get('alice')).toBeUndefined();
    const alice: Agent = { name: 'alice', hash: 'abc', scopes: ['entropy', 'keys'] };
    await agents.put('alice', alice);
    expect(await agents.get('alice')).toEqual(alice);
    await agents.put('alice', { ...alice, scopes: [] });
    expect((await agents.get('alice'))?.scopes).toEqual([]);
    await agents.del('alice');
    expect(await agents.get('alice')).toBeUndefined();
    await agents.del('alice'); // deleting an absent key is not an error
  });

  it('values are copies with JSON semantics (undefined fields dropped, no shared references)', async () => {
    const agents = backend.records<Agent>('agents');
    const value: Agent = { name: 'bob', hash: 'h', scopes: ['a'], created: undefined };
    await agents.put('bob', value);
    value.scopes.push('mutated');
    const got = await agents.get('bob');
    expect(got).toEqual({ name: 'bob', hash: 'h', scopes: ['a'] });
    expect(got).not.toHaveProperty('created');
    got!.scopes.push('x');
    expect((await agents.get('bob'))!.scopes).toEqual(['a']);
  });

  it('namespaces are isolated, including ones that are prefixes of others', async () => {
    const a = backend.records<number>('peer');
    const b = backend.records<number>('peers');
    await a.put('k', 1);
    await b.put('k', 2);
    expect(await a.get('k')).toBe(1);
    expect(await b.get('k')).toBe(2);
    expect(await a.entries()).toEqual([['k', 1]]);
    expect(backend.records('peer')).toBe(a);
  });

  it('entries lists in key order, optionally by prefix', async () => {
    const r = backend.records<string>('audit');
    for (const k of ['b/2', 'a/1', 'b/1', 'c', 'b/10', 'ba']) await r.put(k, k.toUpperCase());
    expect((await r.entries()).map(([k]) => k)).toEqual(['a/1', 'b/1', 'b/10', 'b/2', 'ba', 'c']);
    expect(await r.entries('b/')).toEqual([
      ['b/1', 'B/1'],
      ['b/10', 'B/10'],
      ['b/2', 'B/2'],
    ]);
    expect(await r.entries('zz')).toEqual([]);
  });

  it('entries with a limit returns the first records of the prefix, in key order', async () => {
    const r = backend.records<string>('paged');
    for (const k of ['b/2', 'a/1', 'b/1', 'c', 'b/10']) await r.put(k, k);
    expect(await r.entries('b/', { limit: 1 })).toEqual([['b/1', 'b/1']]);
    expect((await r.entries('', { limit: 3 })).map(([k]) => k)).toEqual(['a/1', 'b/1', 'b/10']);
    expect((await r.entries('b/', { limit: 10 })).map(([k]) => k)).toEqual(['b/1', 'b/10', 'b/2']);
    for (const bad of [0, -1, 1.5, Number.NaN, '2'])
      await expect(r.entries('', { limit: bad as number })).rejects.toThrow(TypeError);
  });

  it('entries order is UTF-8 byte order for any keys (same on every backend)', async () => {
    const r = backend.records<number>('order');
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }), { maxLength: 12 }),
        async (keys) => {
          for (const [k] of await r.entries()) await r.del(k);
          for (const k of keys) await r.put(k, 1);
          const expected = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
          expect((await r.entries()).map(([k]) => k)).toEqual(expected);
        },
      ),
      { numRuns: harness.durable ? 15 : 50 },
    );
  });

  it('putIfAbsent: of 50 concurrent callers with one key exactly one stores', async () => {
    const replay = backend.records<{ caller: number }>('replay');
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => replay.putIfAbsent('nonce-1', { caller: i })),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    const winner = results.indexOf(true);
    expect(await replay.get('nonce-1')).toEqual({ caller: winner });
    expect(await replay.putIfAbsent('nonce-1', { caller: 99 })).toBe(false);
    expect(await replay.putIfAbsent('nonce-2', { caller: 99 })).toBe(true);
  });

  it('take: removes and returns the value once; absent keys give undefined', async () => {
    const otks = backend.records<{ id: string }>('otks');
    await otks.put('k1', { id: 'one' });
    expect(await otks.take('k1')).toEqual({ id: 'one' });
    expect(await otks.get('k1')).toBeUndefined();
    expect(await otks.take('k1')).toBeUndefined();
    expect(await otks.take('never')).toBeUndefined();
    await expect(otks.take('')).rejects.toThrow(TypeError);
  });

  it('take: of 50 concurrent takers of one key exactly one gets the value', async () => {
    const otks = backend.records<{ id: string }>('otks');
    await otks.put('k', { id: 'only' });
    const got = await Promise.all(Array.from({ length: 50 }, () => otks.take('k')));
    expect(got.filter((v) => v !== undefined)).toEqual([{ id: 'only' }]);
  });

  it('take: concurrent takers over many keys get each value exactly once (property)', async () => {
    const otks = backend.records<number>('otks-prop');
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 2, max: 6 }),
        async (keys, takers) => {
          for (let i = 0; i < keys; i++) await otks.put(`k${String(i).padStart(2, '0')}`, i);
          // Every taker walks all keys (each from a different starting point): all race on all.
          const won = await Promise.all(
            Array.from({ length: takers }, async (_, t) => {
              const mine: number[] = [];
              for (let j = 0; j < keys; j++) {
                const v = await otks.take(`k${String((j + t) % keys).padStart(2, '0')}`);
                if (v !== undefined) mine.push(v);
              }
              return mine;
            }),
          );
          expect(won.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: keys }, (_, i) => i));
          expect(await otks.entries()).toEqual([]);
        },
      ),
      { numRuns: harness.durable ? 8 : 30 },
    );
  });

  it('update: creates, transforms and returns a copy; a throw from fn stores nothing', async () => {
    const budgets = backend.records<{ used: number }>('budgets');
    const seen: Array<{ used: number } | undefined> = [];
    const first = await budgets.update('ab', (cur) => {
      seen.push(cur);
      return { used: (cur?.used ?? 0) + 1 };
    });
    expect(first).toEqual({ used: 1 });
    expect(seen).toEqual([undefined]);
    expect(await budgets.update('ab', (cur) => ({ used: (cur?.used ?? 0) + 1 }))).toEqual({ used: 2 });
    first.used = 99;
    expect(await budgets.get('ab')).toEqual({ used: 2 });
    const refusal = new QkmError('CONTACT_BUDGET_EXHAUSTED', 'no');
    await expect(
      budgets.update('ab', () => {
        throw refusal;
      }),
    ).rejects.toBe(refusal);
    expect(await budgets.get('ab')).toEqual({ used: 2 });
    await expect(budgets.update('fresh', () => undefined as unknown as { used: number })).rejects.toThrow(
      TypeError,
    );
    expect(await budgets.get('fresh')).toBeUndefined();
    await expect(budgets.update('', () => ({ used: 1 }))).rejects.toThrow(TypeError);
  });

  it('update: 40 concurrent increments of one key count exactly 40, and a cap is never passed', async () => {
    const budgets = backend.records<{ used: number }>('budgets');
    const inc = (cur: { used: number } | undefined) => ({ used: (cur?.used ?? 0) + 1 });
    const results = await Promise.all(Array.from({ length: 40 }, () => budgets.update('n', inc)));
    expect(await budgets.get('n')).toEqual({ used: 40 });
    // Each caller saw a different count: every increment applied on the one before it.
    expect(new Set(results.map((r) => r.used)).size).toBe(40);
    // A capped increment (the budget rule): of 30 racers only 5 are granted.
    const capped = (cur: { used: number } | undefined) => {
      const used = cur?.used ?? 0;
      if (used >= 5) throw new QkmError('CONTACT_BUDGET_EXHAUSTED', 'budget used');
      return { used: used + 1 };
    };
    const outcomes = await Promise.allSettled(
      Array.from({ length: 30 }, () => budgets.update('cap', capped)),
    );
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(5);
    expect(await budgets.get('cap')).toEqual({ used: 5 });
  });

  it('take, update and putIfAbsent interleave atomically on one key (property)', async () => {
    const r = backend.records<number>('mixed');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom('inc', 'take', 'create'), { minLength: 1, maxLength: 15 }),
        async (ops) => {
          await r.del('x');
          // Every op's effect is accounted for: the final value plus what takes removed equals
          // the increments, creations (each +1) and nothing else.
          const res = await Promise.all(
            ops.map((op) =>
              op === 'inc'
                ? r.update('x', (c) => (c ?? 0) + 1).then(() => 0)
                : op === 'create'
                  ? r.putIfAbsent('x', 1).then((stored) => (stored ? 0 : -1))
                  : r.take('x').then((v) => v ?? 0),
            ),
          );
          const taken = res.filter((_v, i) => ops[i] === 'take').reduce((a, b) => a + b, 0);
          const created = ops.filter((op, i) => op === 'create' && res[i] === 0).length;
          const incs = ops.filter((op) => op === 'inc').length;
          expect(taken + ((await r.get('x')) ?? 0)).toBe(incs + created);
        },
      ),
      { numRuns: harness.durable ? 10 : 40 },
    );
  });

  it('rejects bad namespaces and keys with TypeError', async () => {
    expect(() => backend.records('Bad Name')).toThrow(TypeError);
    expect(() => backend.records('')).toThrow(TypeError);
    const r = backend.records<number>('ok');
    await expect(r.put('', 1)).rejects.toThrow(TypeError);
    await expect(r.put('k', undefined as unknown as number)).rejects.toThrow(TypeError);
  });

  it('after close, operations reject STORE_UNAVAILABLE', async () => {
    const r = backend.records<number>('x');
    await r.put('a', 1);
    await backend.close();
    const err = await r.get('a').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QkmError);
    expect((err as QkmError).code).toBe('STORE_UNAVAILABLE');
    await expect(r.put('b', 2)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(r.take('a')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(r.update('a', (c) => (c ?? 0) + 1)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
  });

  it('survives close and reopen (durable backends)', async (ctx) => {
    if (!harness.durable) ctx.skip('the memory backend is not durable');
    await backend.records<number>('replay').putIfAbsent('n', 1);
    await backend.records<string>('agents').put('alice', 'x');
    backend = await harness.reopen(backend);
    expect(await backend.records<number>('replay').putIfAbsent('n', 2)).toBe(false);
    expect(await backend.records<string>('agents').entries()).toEqual([['alice', 'x']]);
  });
});
