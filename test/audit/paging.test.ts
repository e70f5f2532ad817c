import { describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import type { RecordStore, StorageBackend } from '../../src/store/interface.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { FakeEntropy } from '../session/fakes.js';

/**
 * Paging the audit log (`GET /v1/audit?after=&limit=`) reads O(page) records, however long the
 * log (#16). Cost is counted as records read from the store, never as time.
 */

function countingBackend(): { store: StorageBackend; reads: () => number; reset: () => void } {
  const inner = createMemoryBackend();
  let n = 0;
  const store: StorageBackend = {
    keys: inner.keys,
    close: () => inner.close(),
    records<T>(namespace: string): RecordStore<T> {
      const rs = inner.records<T>(namespace);
      return {
        get: (key) => {
          n++;
          return rs.get(key);
        },
        entries: async (prefix) => {
          const rows = await rs.entries(prefix);
          n += rows.length;
          return rows;
        },
        put: (key, value) => rs.put(key, value),
        putIfAbsent: (key, value) => rs.putIfAbsent(key, value),
        del: (key) => rs.del(key),
        take: (key) => rs.take(key),
        update: (key, fn) => rs.update(key, fn),
      };
    },
  };
  return { store, reads: () => n, reset: () => (n = 0) };
}

async function pageCost(total: number): Promise<{ first: number; middle: number; tail: number }> {
  const c = countingBackend();
  const log = new AuditLog({ store: c.store, entropy: new FakeEntropy() });
  for (let i = 0; i < total; i++) await log.append({ type: 'test.event', actor: 'cli', details: { i } });
  await log.flush();
  const all = await log.records();
  expect(all.map((r) => r.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));

  c.reset();
  expect(await log.records({ fromSeq: 1, limit: 10 })).toEqual(all.slice(0, 10));
  const first = c.reads();
  c.reset();
  expect(await log.records({ fromSeq: 21, limit: 10 })).toEqual(all.slice(20, 30));
  const middle = c.reads();
  c.reset();
  // A page reaching past the head ends at the head.
  expect(await log.records({ fromSeq: total - 2, limit: 10 })).toEqual(all.slice(total - 3));
  const tail = c.reads();
  expect(await log.records({ fromSeq: total + 1, limit: 10 })).toEqual([]);
  await log.close();
  return { first, middle, tail };
}

describe('audit log paging', () => {
  it('a page reads the same number of records in a log of 40 or of 1000', async () => {
    const short = await pageCost(40);
    const long = await pageCost(1000);
    expect(long).toEqual(short);
    expect(long.first).toBe(10);
    expect(long.middle).toBe(10);
    expect(long.tail).toBeLessThanOrEqual(10);
  });

  it('pages cover the log exactly once, in order, whatever the page size', async () => {
    const log = new AuditLog({ store: createMemoryBackend(), entropy: new FakeEntropy() });
    for (let i = 0; i < 150; i++) await log.append({ type: 'test.event', actor: 'cli', details: { i } });
    await log.flush();
    const all = await log.records();
    for (const size of [1, 7, 64, 65, 200]) {
      const seen = [];
      for (let after = 0; ; ) {
        const page = await log.records({ fromSeq: after + 1, limit: size });
        if (page.length === 0) break;
        seen.push(...page);
        after = page[page.length - 1]!.seq;
      }
      expect(seen).toEqual(all);
    }
    await log.close();
  });
});
