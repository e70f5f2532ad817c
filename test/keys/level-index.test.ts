import { randomBytes } from 'node:crypto';
import { ClassicLevel } from 'classic-level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LevelKeyStore, type RootDb } from '../../src/keys/level-store.js';
import { newKey, T0, tempDir } from './helpers.js';

/**
 * The LevelDB key store's per-state and closing-time indexes (#16): listing one state and purging
 * closed keys read O(page) entries, whatever the number of keys in other states. Cost is measured
 * as entries read from the database (iterated entries and point reads), never as time.
 */

/** Counts what the key store reads through the root database (sublevels delegate to it). */
function instrument(root: RootDb): { reads: () => number; reset: () => void } {
  let n = 0;
  const count = (x: unknown) => {
    if (Array.isArray(x)) n += x.length;
    else if (x !== undefined) n++;
    return x;
  };
  const r = root as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const name of ['iterator', 'keys', 'values'] as const) {
    const orig = r[name]!.bind(root);
    r[name] = (...args: unknown[]) => {
      const it = orig(...args) as Record<string, (...a: unknown[]) => Promise<unknown>>;
      for (const m of ['next', 'nextv', 'all'] as const) {
        const f = it[m]!.bind(it);
        it[m] = async (...a: unknown[]) => count(await f(...a));
      }
      return it;
    };
  }
  for (const name of ['get', 'getMany'] as const) {
    const orig = r[name]!.bind(root);
    r[name] = async (...args: unknown[]) => {
      const keys = args[0];
      n += Array.isArray(keys) ? keys.length : 1;
      return orig(...args);
    };
  }
  return { reads: () => n, reset: () => (n = 0) };
}

describe('LevelKeyStore indexes: cost does not grow with closed keys', () => {
  let dir: { dir: string; cleanup: () => Promise<void> };
  let root: RootDb;
  const kek = randomBytes(32);

  beforeEach(async () => {
    dir = await tempDir('level-index');
    root = new ClassicLevel<string, string>(dir.dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    await root.open();
  });
  afterEach(async () => {
    await root.close();
    await dir.cleanup();
  });

  /** Reads of one active page and of one purge batch, with `closed` closed keys in the store. */
  async function costs(closed: number): Promise<{ list: number; listAfter: number; purge: number }> {
    const sub = root.sublevel<string, string>(`s${closed}`, {});
    const store = await LevelKeyStore.open(sub as unknown as RootDb, dir.dir, kek, {
      compactOnDestroy: false,
    });
    const meter = instrument(root);
    const active: string[] = [];
    // Closed keys first and interleaved with active ones: the worst case for a creation-order scan.
    for (let i = 0; i < closed; i++) {
      const k = newKey({ expires: null, size: 16 });
      await store.put(k);
      await store.take(k.meta.id, new Date(T0.getTime() + i));
      if (i % 50 === 0) active.push((await store.put(newKey({ size: 16 }))).id);
    }
    for (let i = active.length; i < 30; i++) active.push((await store.put(newKey({ size: 16 }))).id);

    meter.reset();
    const page = await store.list({ state: 'active', limit: 10 });
    const list = meter.reads();
    expect(page.map((m) => m.id)).toEqual(active.slice(0, 10));

    meter.reset();
    const next = await store.list({ state: 'active', limit: 10, after: page[9]!.id });
    const listAfter = meter.reads();
    expect(next.map((m) => m.id)).toEqual(active.slice(10, 20));

    meter.reset();
    const purged = await store.purgeClosed(new Date(T0.getTime() + 1e9), 10);
    const purge = meter.reads();
    expect(purged).toBe(Math.min(10, closed));
    await store.close();
    return { list, listAfter, purge };
  }

  it('an active page and a purge batch read the same with 0 or 600 closed keys', async () => {
    const few = await costs(10);
    const many = await costs(600);
    expect(many).toEqual(few);
    // O(page): one index entry and one metadata read per listed key (plus the cursor's own).
    expect(many.list).toBeLessThanOrEqual(20);
    expect(many.listAfter).toBeLessThanOrEqual(21);
    expect(many.purge).toBeLessThanOrEqual(20);
  });

  it('upgrades a format-1 store (no state/closed indexes) on open', async () => {
    let store = await LevelKeyStore.open(root, dir.dir, kek, { compactOnDestroy: false });
    const keys = Array.from({ length: 5 }, () => newKey({ expires: null }));
    for (const k of keys) await store.put(k);
    await store.take(keys[1]!.meta.id, T0);
    await store.take(keys[3]!.meta.id, new Date(T0.getTime() + 1000));
    await store.close();
    // Make it what qkm before #16 wrote: format 1, no `st`, no `closed`.
    for (const name of ['st', 'closed']) await root.sublevel(name).clear();
    const sys = root.sublevel<string, { format: number }>('sys', { valueEncoding: 'json' });
    await sys.put('store', { ...(await sys.get('store'))!, format: 1 });

    store = await LevelKeyStore.open(root, dir.dir, kek, { compactOnDestroy: false });
    const ids = keys.map((k) => k.meta.id);
    expect((await store.list({ state: 'active' })).map((m) => m.id)).toEqual([ids[0], ids[2], ids[4]]);
    expect((await store.list({ state: 'taken' })).map((m) => m.id)).toEqual([ids[1], ids[3]]);
    expect((await sys.get('store'))!.format).toBe(2);
    expect(await store.purgeClosed(T0)).toBe(1);
    expect((await store.list({ state: 'taken' })).map((m) => m.id)).toEqual([ids[3]]);
    await store.close();
  });
});
