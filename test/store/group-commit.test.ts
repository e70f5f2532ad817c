import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/store/group-commit.js';

/** A commit function that records its batches and settles each when told to. */
function recorder() {
  const batches: string[][] = [];
  const settle: Array<{ ok: () => void; fail: (e: Error) => void }> = [];
  const gc = new GroupCommit<string>(
    (ops) =>
      new Promise<void>((resolve, reject) => {
        batches.push(ops);
        settle.push({ ok: resolve, fail: reject });
      }),
  );
  return { gc, batches, settle };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('GroupCommit', () => {
  it('commits the writes one turn issues, through chains of awaits, as one batch', async () => {
    const { gc, batches, settle } = recorder();
    const deep = async () => {
      for (let i = 0; i < 10; i++) await Promise.resolve();
      return gc.write('c');
    };
    const all = Promise.all([gc.write('a'), (async () => gc.write('b'))(), deep()]);
    await turn();
    expect(batches).toEqual([['a', 'b', 'c']]);
    settle[0]!.ok();
    await all;
  });

  it('resolves a write only once its batch is committed', async () => {
    const { gc, settle } = recorder();
    let done = false;
    const w = gc.write('a').then(() => {
      done = true;
    });
    await turn();
    await turn();
    expect(done).toBe(false);
    settle[0]!.ok();
    await w;
    expect(done).toBe(true);
  });

  it('rejects every write of a failed batch, and later writes go in a new batch', async () => {
    const { gc, batches, settle } = recorder();
    const a = gc.write('a');
    const b = gc.write('b');
    await turn();
    const c = gc.write('c');
    await turn();
    expect(batches).toEqual([['a', 'b'], ['c']]);
    settle[0]!.fail(new Error('disk'));
    settle[1]!.ok();
    await expect(a).rejects.toThrow('disk');
    await expect(b).rejects.toThrow('disk');
    await expect(c).resolves.toBeUndefined();
  });
});
