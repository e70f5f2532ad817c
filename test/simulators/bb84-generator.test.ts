import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type AbortInfo,
  type GeneratorClock,
  type KeyBlock,
  LinkKeyGenerator,
} from '../../simulators/bb84/generator.js';
import { optimalKeyRate } from '../../simulators/bb84/model.js';

/** A deterministic clock: time moves only when the test advances it. */
class ManualClock implements GeneratorClock {
  t = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Advance to `to` ms, firing due timers in order (bounded, so a runaway loop fails the test). */
  advanceTo(to: number): void {
    for (let guard = 0; guard < 1_000_000; guard++) {
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (first === undefined || e[1].at < first[1].at) first = e;
      if (first === undefined || first[1].at > to) break;
      this.timers.delete(first[0]);
      this.t = Math.max(this.t, first[1].at);
      first[1].fn();
    }
    this.t = to;
  }
  get pending(): number {
    return this.timers.size;
  }
}

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('LinkKeyGenerator', () => {
  const gens: LinkKeyGenerator[] = [];
  afterEach(() => {
    for (const g of gens.splice(0)) g.stop();
    vi.useRealTimers();
  });
  const make = (opts: ConstructorParameters<typeof LinkKeyGenerator>[0]) => {
    const g = new LinkKeyGenerator(opts);
    gens.push(g);
    return g;
  };

  it('gives two subscribers the identical keys and key IDs', () => {
    const clock = new ManualClock();
    const g = make({ distanceKm: 10, clock });
    const a: KeyBlock[][] = [];
    const b: KeyBlock[][] = [];
    g.on('keys', (k) => a.push([...k]));
    g.on('keys', (k) => b.push([...k]));
    g.start();
    clock.advanceTo(5_000);
    expect(a.length).toBeGreaterThan(3);
    expect(b).toEqual(a);
    const all = a.flat();
    for (const k of all) {
      expect(k.keyId).toMatch(UUID_V4);
      expect(k.key).toBeInstanceOf(Uint8Array);
      expect(k.key.length).toBe(32);
    }
    expect(new Set(all.map((k) => k.keyId)).size).toBe(all.length);
    expect(new Set(all.map((k) => Buffer.from(k.key).toString('hex'))).size).toBe(all.length);
    // Each key owns its bytes: wiping one leaves the others intact.
    const before = Buffer.from(all[1]!.key).toString('hex');
    all[0]!.key.fill(0);
    expect(Buffer.from(all[1]!.key).toString('hex')).toBe(before);
  });

  it('emits key bits at the model rate within 1 % over a simulated interval', () => {
    const clock = new ManualClock();
    const g = make({ distanceKm: 25, scheme: 'infinite', keySizeBits: 256, blockBits: 1000, clock });
    let bits = 0;
    g.on('keys', (k) => {
      bits += k.length * 256;
    });
    g.start();
    const seconds = 600;
    clock.advanceTo(seconds * 1000);
    const model = optimalKeyRate('infinite', 25).bitsPerSecond;
    expect(g.modelRateBps).toBeCloseTo(model, 9);
    expect(bits / seconds / model).toBeGreaterThan(0.99);
    expect(bits / seconds / model).toBeLessThan(1.01);
    expect(g.stats().bitsEmitted).toBe(bits);
    expect(g.stats().keysEmitted).toBe(bits / 256);
  });

  it('does not drift when timers fire late', () => {
    // A clock whose timers always fire 7 ms late: due blocks come from elapsed time, so late
    // wake-ups only delay, never lose, blocks.
    const clock = new ManualClock();
    const late: GeneratorClock = {
      now: () => clock.now(),
      setTimeout: (fn, ms) => clock.setTimeout(fn, ms + 7),
      clearTimeout: (h) => clock.clearTimeout(h),
    };
    const g = make({ distanceKm: 5, scheme: 'infinite', keySizeBits: 256, blockBits: 256, clock: late });
    g.start();
    clock.advanceTo(300_000);
    const expected = (g.modelRateBps * 300) / 256;
    expect(g.stats().keysEmitted / expected).toBeGreaterThan(0.995);
    expect(g.stats().keysEmitted / expected).toBeLessThanOrEqual(1);
  });

  it('timeScale speeds the link up', () => {
    const clock = new ManualClock();
    const g = make({ distanceKm: 25, blockBits: 256, timeScale: 10, clock });
    g.start();
    clock.advanceTo(60_000);
    const ratio = g.stats().bitsEmitted / (g.modelRateBps * 600);
    expect(ratio).toBeGreaterThan(0.99);
    expect(ratio).toBeLessThanOrEqual(1);
  });

  it('eavesdropper on every pulse: every block aborted, no key', () => {
    const clock = new ManualClock();
    const g = make({ distanceKm: 20, eavesdropper: { fraction: 1 }, clock });
    const aborts: AbortInfo[] = [];
    let keys = 0;
    g.on('abort', (a) => aborts.push(a));
    g.on('keys', (k) => {
      keys += k.length;
    });
    g.start();
    clock.advanceTo(10_000);
    expect(aborts.length).toBeGreaterThan(5);
    expect(keys).toBe(0);
    for (const a of aborts) {
      expect(a.qber).toBeGreaterThanOrEqual(0.25);
      expect(a.threshold).toBe(0.11);
      expect(a.bitsLost).toBe(g.blockBits);
    }
    expect(g.stats().blocksAborted).toBe(aborts.length);
    expect(g.stats().keysEmitted).toBe(0);
  });

  it('no eavesdropper: QBER is the model E_μ and nothing aborts', () => {
    const clock = new ManualClock();
    const g = make({ distanceKm: 20, eavesdropper: { fraction: 0 }, clock });
    let aborts = 0;
    g.on('abort', () => aborts++);
    g.start();
    clock.advanceTo(10_000);
    expect(aborts).toBe(0);
    expect(g.stats().qber).toBeCloseTo(optimalKeyRate('vacuum-weak', 20).qber, 12);
    expect(g.stats().keysEmitted).toBeGreaterThan(0);
  });

  it('a small eavesdropping fraction stays under the threshold but costs key rate', () => {
    const clock = new ManualClock();
    const clean = make({ distanceKm: 20, blockBits: 256, clock });
    const tapped = make({ distanceKm: 20, blockBits: 256, eavesdropper: { fraction: 0.1 }, clock });
    clean.start();
    tapped.start();
    clock.advanceTo(60_000);
    expect(tapped.stats().qber).toBeGreaterThan(clean.stats().qber);
    expect(tapped.stats().qber).toBeLessThan(0.11);
    expect(tapped.stats().blocksAborted).toBe(0);
    expect(tapped.stats().bitsEmitted).toBeLessThan(clean.stats().bitsEmitted);
  });

  it('stop() cancels the timer; beyond the maximum distance nothing is scheduled', () => {
    const clock = new ManualClock();
    const g = make({ distanceKm: 10, clock });
    g.start();
    expect(clock.pending).toBe(1);
    g.stop();
    expect(clock.pending).toBe(0);
    const dead = make({ distanceKm: 180, clock });
    dead.start();
    expect(dead.modelRateBps).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('works with vitest fake timers on the default clock', () => {
    vi.useFakeTimers();
    const g = make({ distanceKm: 10, blockBits: 512 });
    g.start();
    vi.advanceTimersByTime(20_000);
    const ratio = g.stats().bitsEmitted / (g.modelRateBps * 20);
    expect(ratio).toBeGreaterThan(0.97);
    expect(ratio).toBeLessThanOrEqual(1);
    expect(g.stats().startedAt).toBeTypeOf('number');
  });

  it('unthrottled mode emits as fast as consumers take, and pause() holds it', async () => {
    const g = make({ distanceKm: 10, unthrottled: true, blockBits: 1024 });
    let blocks = 0;
    let reached: () => void = () => {};
    const fifty = new Promise<void>((r) => {
      reached = r;
    });
    g.on('keys', (k) => {
      expect(k.length).toBe(4);
      blocks++;
      if (blocks === 50) {
        g.pause();
        reached();
      }
    });
    g.start();
    await fifty;
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(blocks).toBe(50);
    g.resume();
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(blocks).toBeGreaterThan(50);
    g.stop();
    const at = blocks;
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(blocks).toBe(at);
  });

  it('throttled pause() drops the blocks that fall due and keeps the schedule', () => {
    const clock = new ManualClock();
    const g = make({ distanceKm: 10, blockBits: 256, clock });
    g.start();
    clock.advanceTo(10_000);
    const before = g.stats().keysEmitted;
    g.pause();
    clock.advanceTo(20_000);
    expect(g.stats().keysEmitted).toBe(before);
    g.resume();
    clock.advanceTo(30_000);
    const expectedPerInterval = (g.modelRateBps * 10) / 256;
    // After resume only the third interval's blocks arrive: no burst of stale ones.
    expect(g.stats().keysEmitted - before).toBeLessThanOrEqual(Math.ceil(expectedPerInterval) + 1);
    expect(g.stats().keysEmitted - before).toBeGreaterThanOrEqual(Math.floor(expectedPerInterval) - 1);
  });

  it('rejects bad options', () => {
    expect(() => new LinkKeyGenerator({ distanceKm: 10, keySizeBits: 100 })).toThrow(RangeError);
    expect(() => new LinkKeyGenerator({ distanceKm: 10, eavesdropper: { fraction: 2 } })).toThrow(RangeError);
    expect(() => new LinkKeyGenerator({ distanceKm: -1 })).toThrow(RangeError);
    expect(() => new LinkKeyGenerator({ distanceKm: 10, timeScale: 0 })).toThrow(RangeError);
  });
});
