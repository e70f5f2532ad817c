import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RingBuffer } from '../../src/core/ring-buffer.js';
import { StatusHistory } from '../../src/status-history.js';
import type { ApplianceStatus } from '../../src/status.js';

describe('RingBuffer', () => {
  it('keeps the last `capacity` items in order, whatever was pushed', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer(), { maxLength: 100 }),
        (cap, items) => {
          const ring = new RingBuffer<number>(cap);
          for (const i of items) ring.push(i);
          expect(ring.toArray()).toEqual(items.slice(Math.max(0, items.length - cap)));
          expect(ring.size).toBe(Math.min(cap, items.length));
          expect(ring.last()).toBe(items.at(-1));
        },
      ),
    );
  });

  it('refuses a capacity that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new RingBuffer(bad), String(bad)).toThrow(RangeError);
    }
  });
});

describe('StatusHistory', () => {
  const status = (bytesServed: number, bytesServedDegraded: number): ApplianceStatus =>
    ({
      startedAt: new Date(0).toISOString(),
      degraded: bytesServedDegraded > 0,
      entropy: { counters: { bytesServed, bytesServedDegraded }, sources: [] },
      keys: { active: 2, taken: 0, expired: 0 },
      qkd: [],
    }) as unknown as ApplianceStatus;

  it('rates are per second between samples (the first since start); bounded; ?seconds filters', () => {
    let t = 10_000;
    const h = new StatusHistory({ samples: 3, intervalSeconds: 5, now: () => t });
    expect(h.record(status(10_000, 0)).entropyBytesPerSec).toBe(1000); // 10 000 bytes in 10 s
    t += 5000;
    const s = h.record(status(20_000, 500));
    expect([s.entropyBytesPerSec, s.degradedBytesPerSec, s.activeKeys]).toEqual([2000, 100, 2]);
    t += 5000;
    h.record(status(20_000, 500));
    t += 5000;
    h.record(status(25_000, 500));
    expect(h.since().map((x) => x.t)).toEqual([15_000, 20_000, 25_000]);
    expect(h.since(6).map((x) => x.t)).toEqual([20_000, 25_000]);
  });
});
