import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { openStore } from '../../src/store/open.js';

/** The LevelDB memory settings (#16): accepted within their ranges, refused outside, and used. */
describe('store.{cacheBytes,writeBufferBytes,maxOpenFiles,compactDelayMs}', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qkm-level-options-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const config = (store: Record<string, unknown>) =>
    loadConfig({ env: {}, overrides: { dataDir: dir, store: { backend: 'level', ...store } as never } });

  it('refuses values outside their ranges, naming the setting', () => {
    expect(() => config({ maxOpenFiles: 8 })).toThrow(/maxOpenFiles/);
    expect(() => config({ maxOpenFiles: 1.5 })).toThrow(/maxOpenFiles/);
    expect(() => config({ cacheBytes: 1024 })).toThrow(/cacheBytes/);
    expect(() => config({ writeBufferBytes: 2 ** 30 })).toThrow(/writeBufferBytes/);
    expect(() => config({ compactDelayMs: -1 })).toThrow(/compactDelayMs/);
    expect(() => config({ compactDelayMs: 60_001 })).toThrow(/compactDelayMs/);
    expect(config({ compactDelayMs: 0 }).store).toMatchObject({ compactDelayMs: 0 });
  });

  it('opens a store with a small table cache that still reads what it wrote across many tables', async () => {
    const c = config({ maxOpenFiles: 16, cacheBytes: 1048576, writeBufferBytes: 1048576 });
    const kek = new Uint8Array(32).fill(7);
    let backend = await openStore(c, kek);
    const records = backend.records<{ n: number; pad: string }>('options-test');
    // ~6 MB through a 1 MB memtable: several SST files, read back through the small table cache.
    const pad = 'x'.repeat(2000);
    for (let i = 0; i < 3000; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, j) =>
          records.put(`k${String(i + j).padStart(5, '0')}`, { n: i + j, pad }),
        ),
      );
    }
    await backend.close();
    backend = await openStore(c, kek);
    const again = backend.records<{ n: number; pad: string }>('options-test');
    for (const i of [0, 1499, 2999]) expect((await again.get(`k${String(i).padStart(5, '0')}`))?.n).toBe(i);
    expect(await again.entries('k', { limit: 5 })).toHaveLength(5);
    await backend.close();
  });
});
