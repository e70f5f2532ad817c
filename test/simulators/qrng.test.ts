import { describe, expect, it } from 'vitest';
import { EntropySourceError } from '../../drivers/entropy/errors.js';
import {
  createSimulatedQrngFactory,
  SIM_QRNG_DEFAULT_MIN_ENTROPY,
  SIM_QRNG_DEFAULT_RATE,
  SimulatedQrngDevice,
} from '../../simulators/qrng/index.js';

async function failureOf(p: Promise<unknown>): Promise<EntropySourceError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(EntropySourceError);
    return err as EntropySourceError;
  }
  throw new Error('expected a rejection');
}

describe('simulated QRNG', () => {
  it('describes itself as a simulated quantum source with the default claim and rate', async () => {
    const f = createSimulatedQrngFactory();
    expect(await f.list()).toEqual([expect.objectContaining({ id: 'sim-qrng:0', simulated: true })]);
    const s = await f.open();
    expect(s.info()).toMatchObject({
      id: 'sim-qrng:0',
      kind: 'quantum',
      simulated: true,
      sampleBits: 8,
      claimedMinEntropy: SIM_QRNG_DEFAULT_MIN_ENTROPY,
      nominalRate: SIM_QRNG_DEFAULT_RATE,
    });
    expect(SIM_QRNG_DEFAULT_RATE).toBe(500_000); // 4 Mbit/s
    expect((await f.open({ claimedMinEntropy: 4 })).info().claimedMinEntropy).toBe(4);
    await s.close();
  });

  it('delivers exactly n bytes, in call order, at the configured rate', async () => {
    const f = createSimulatedQrngFactory({ devices: [{ rate: 1_000_000 }] });
    const s = await f.open();
    const t0 = performance.now();
    const order: number[] = [];
    const reads = [40_000, 1, 60_000].map((n, i) =>
      s.read(n).then((b) => {
        order.push(i);
        return b;
      }),
    );
    const out = await Promise.all(reads);
    const ms = performance.now() - t0;
    expect(out.map((b) => b.length)).toEqual([40_000, 1, 60_000]);
    expect(order).toEqual([0, 1, 2]);
    expect(ms).toBeGreaterThanOrEqual(95); // 100 001 bytes at 1 MB/s
    expect(ms).toBeLessThan(1000);
    expect(new Set(out[2]).size).toBeGreaterThan(200); // not constant
    await s.close();
  });

  it('stuck-at and bias faults shape the output; clearFaults restores it', async () => {
    const f = createSimulatedQrngFactory({ devices: [{ rate: Number.POSITIVE_INFINITY }] });
    const d = f.device();
    const s = await f.open();
    d.setStuck(0xab);
    expect((await s.read(1000)).every((b) => b === 0xab)).toBe(true);
    d.setStuck(null);
    d.setBias({ value: 0x11, probability: 1 });
    expect((await s.read(1000)).every((b) => b === 0x11)).toBe(true);
    d.setBias({ value: 0x11, probability: 0.5 });
    const biased = await s.read(100_000);
    const share = biased.filter((b) => b === 0x11).length / biased.length;
    expect(share).toBeGreaterThan(0.48); // 0.5 + 0.5/256, σ ≈ 0.0016
    expect(share).toBeLessThan(0.52);
    d.clearFaults();
    expect(d.faults).toEqual({ stuck: null, bias: null, stalled: false, attached: true });
    const clean = await s.read(100_000);
    expect(clean.filter((b) => b === 0x11).length / clean.length).toBeLessThan(0.01);
    expect(() => d.setStuck(256)).toThrow(RangeError);
    expect(() => d.setBias({ value: 1, probability: 2 })).toThrow(RangeError);
    await s.close();
  });

  it('stall: reads hang, then reject with timeout; after the stall clears, reads work again', async () => {
    const f = createSimulatedQrngFactory({ devices: [{ readTimeoutMs: 40 }] });
    const d = f.device();
    const s = await f.open();
    d.setStall(true);
    const t0 = performance.now();
    const err = await failureOf(s.read(16));
    expect(err.timeout).toBe(true);
    expect(err.sourceId).toBe('sim-qrng:0');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(35);
    // A read pending while the stall clears completes.
    const pending = s.read(16);
    setTimeout(() => d.setStall(false), 10);
    expect(await pending).toHaveLength(16);
    await s.close();
  });

  it('detach: emits detach, fails pending and later reads as disconnected; reattach lets open() work again', async () => {
    const f = createSimulatedQrngFactory({ devices: [{ rate: 1000 }] });
    const d = f.device();
    const s = await f.open();
    const seen: string[] = [];
    const unwatch = f.watch!((desc) => seen.push(desc.id));
    let detached = 0;
    s.on('detach', () => detached++);
    const pending = s.read(500); // 0.5 s at 1000 B/s
    d.detach();
    expect((await failureOf(pending)).disconnected).toBe(true);
    expect(detached).toBe(1);
    expect((await failureOf(s.read(1))).disconnected).toBe(true);
    expect(await f.list()).toEqual([]);
    expect((await failureOf(f.open())).disconnected).toBe(true);
    d.reattach();
    expect(seen).toEqual(['sim-qrng:0']);
    const s2 = await f.open({ id: 'sim-qrng:0' });
    expect(await s2.read(1)).toHaveLength(1);
    unwatch();
    await s.close();
    await s2.close();
  });

  it('close and abort cancel pending reads; reads after close are canceled', async () => {
    const f = createSimulatedQrngFactory({ devices: [{ rate: 1000 }] });
    const s = await f.open();
    const ac = new AbortController();
    const aborted = s.read(900, ac.signal);
    ac.abort();
    expect((await failureOf(aborted)).canceled).toBe(true);
    const pending = s.read(900);
    await s.close();
    await s.close(); // idempotent
    expect((await failureOf(pending)).canceled).toBe(true);
    expect((await failureOf(s.read(1))).canceled).toBe(true);
  });

  it('aborting a long read in flight frees the device for the next read at once', async () => {
    const s = await createSimulatedQrngFactory().open(); // 500 000 B/s
    const ac = new AbortController();
    const big = s.read(50_000_000, ac.signal).catch((e: unknown) => e); // 100 s of output
    await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    expect(await big).toMatchObject({ canceled: true });
    const t0 = performance.now();
    expect(await s.read(16)).toHaveLength(16);
    expect(performance.now() - t0).toBeLessThan(500);
    await s.close();
  });

  it('rejects junk arguments', async () => {
    const s = await createSimulatedQrngFactory().open();
    for (const n of [0, -1, 1.5, Number.NaN]) await expect(s.read(n)).rejects.toThrow(RangeError);
    expect(() => new SimulatedQrngDevice({ rate: 0 })).toThrow(RangeError);
    expect(() => new SimulatedQrngDevice({ claimedMinEntropy: 9 })).toThrow(RangeError);
    expect(() => createSimulatedQrngFactory().device('nope')).toThrow(RangeError);
    await s.close();
  });

  it('several devices are separate sources', async () => {
    const f = createSimulatedQrngFactory({ devices: [{ serial: 'A' }, { serial: 'B' }] });
    expect((await f.list()).map((d) => d.id)).toEqual(['sim-qrng:A', 'sim-qrng:B']);
    f.device('sim-qrng:A').detach();
    const b = await f.open();
    expect(b.info().id).toBe('sim-qrng:B');
    await b.close();
  });
});
