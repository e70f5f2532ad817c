import { createCipheriv } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { SourceHealthEvent } from '../../src/entropy/source-monitor.js';
import { SourceMonitor, SourceUnavailableError } from '../../src/entropy/source-monitor.js';
import { MONITOR_ALPHA_LOG2, rctCutoff } from '../../src/entropy/health.js';
import { createSimulatedQrngFactory } from '../../simulators/qrng/index.js';
import { ScriptedSource, scriptedFactory } from './scripted-source.js';

/** Deterministic stand-in for ideal bytes: AES-256-CTR keystream from byte `offset`. */
const STREAM = new Uint8Array(
  createCipheriv('aes-256-ctr', Buffer.alloc(32, 9), Buffer.alloc(16)).update(Buffer.alloc(1 << 16)),
);
const ideal = (offset: number, n: number): Uint8Array => STREAM.slice(offset, offset + n);

const FAST = { backoff: { initialMs: 5, maxMs: 40 }, sentinelIntervalMs: 5 };
const monitors: SourceMonitor[] = [];
function track(m: SourceMonitor): SourceMonitor {
  monitors.push(m);
  return m;
}
afterEach(async () => {
  await Promise.all(monitors.splice(0).map((m) => m.stop()));
});

/** Simulated QRNG with claim 4 (RCT C = 6): an ideal stream cannot false-alarm in a test's lifetime. */
function sim(opts: { readTimeoutMs?: number } = {}) {
  const factory = createSimulatedQrngFactory({
    devices: [{ claimedMinEntropy: 4, rate: 4_000_000, readTimeoutMs: opts.readTimeoutMs ?? 1000 }],
  });
  return { factory, device: factory.device() };
}

describe('SourceMonitor', () => {
  it('runs the start-up test, then hands out tested bytes; start-up samples are never handed out', async () => {
    const src = new ScriptedSource(ideal);
    const m = track(new SourceMonitor({ factory: scriptedFactory(src), ...FAST }));
    expect(m.state).toBe('startup');
    await m.start();
    expect(m.state).toBe('healthy');
    expect(src.reads[0]).toBe(1024); // §4.3: 1024 samples of start-up testing
    const got = await m.take(100);
    // Bytes 0..1023 were start-up samples: the first bytes handed out start at 1024.
    expect(Buffer.from(got).equals(Buffer.from(STREAM.subarray(1024, 1124)))).toBe(true);
    const snap = m.snapshot();
    expect(snap).toMatchObject({ id: 'scripted', kind: 'quantum', state: 'healthy', claimedMinEntropy: 4 });
    expect(snap.reason).toBeUndefined();
    expect(snap.estimatedMinEntropy).toBeGreaterThan(5); // MCV on ~1–5 KiB of ideal bytes
    expect(m.entropyPerByte).toBe(4);
  });

  it('discards a whole window that fails, and everything pooled before it', async () => {
    // Bytes 0..1023 are start-up; window B (2048..3071, the 2nd after start-up) ends in a run of
    // C equal bytes: RCT failure on its very last byte (C = 11 at H = 4 and the monitor's α = 2⁻⁴⁰).
    const C = rctCutoff(4, 8, MONITOR_ALPHA_LOG2);
    expect(C).toBe(11);
    const src = new ScriptedSource((off, n) => {
      const out = ideal(off, n);
      for (let i = 0; i < n; i++) if (off + i >= 3072 - C && off + i < 3072) out[i] = 0x55;
      return out;
    });
    const events: SourceHealthEvent[] = [];
    const m = track(
      new SourceMonitor({
        factory: scriptedFactory(src),
        ...FAST,
        poolBytes: 1024,
        sentinelIntervalMs: 60_000,
      }),
    );
    m.on('health', (e) => events.push(e));
    await m.start();
    // 2048 bytes need windows A (pooled) and B; B fails, so nothing is returned — not even A.
    await expect(m.take(2048)).rejects.toBeInstanceOf(SourceUnavailableError);
    expect(m.state).toBe('quarantined');
    expect(m.reason).toMatch(/RCT failure/);
    expect(m.counters.healthFailures).toBe(1);
    expect(m.counters.bytesDelivered).toBe(0);
    expect(events.find((e) => e.type === 'health-failure')).toMatchObject({ test: 'RCT', startup: false });
    // No sample values in events.
    expect(JSON.stringify(events)).not.toMatch(/0x55|\b85\b/);
    // Recovery: back-off, fresh start-up test on new bytes, healthy again.
    const failedAt = src.offset;
    await m.waitFor((s) => s === 'healthy', 2000);
    expect(m.counters.recoveries).toBe(1);
    expect(events.filter((e) => e.type === 'startup-passed')).toHaveLength(2);
    // The fresh start-up test read 1024 bytes right after the failure, and they are not handed out.
    const got = await m.take(16);
    expect(Buffer.from(got).equals(Buffer.from(STREAM.subarray(failedAt + 1024, failedAt + 1040)))).toBe(
      true,
    );
  });

  it('stuck source: quarantined, retried with growing back-off while stuck, recovers when cleared', async () => {
    const { factory, device } = sim();
    const m = track(new SourceMonitor({ factory, ...FAST }));
    await m.start();
    expect(m.state).toBe('healthy');
    const pendingTake = m.take(1 << 20).catch((e: unknown) => e); // larger than the pool: waits for reads
    device.setStuck(0);
    expect(await pendingTake).toBeInstanceOf(SourceUnavailableError);
    expect(m.state).not.toBe('healthy');
    await expect(m.take(1)).rejects.toBeInstanceOf(SourceUnavailableError);
    await new Promise((r) => setTimeout(r, 150));
    expect(m.counters.healthFailures).toBeGreaterThanOrEqual(2); // start-up retests keep failing
    expect(m.counters.healthFailures).toBeLessThan(12); // back-off: 5, 10, 20, 40, 40… ms
    expect(m.snapshot().estimatedMinEntropy).toBeLessThan(1);
    device.clearFaults();
    await m.waitFor((s) => s === 'healthy', 2000);
    expect(m.counters.recoveries).toBe(1);
    expect(await m.take(64)).toHaveLength(64);
  });

  it('stall: read timeout quarantines; recovery once the device flows again', async () => {
    const { factory, device } = sim({ readTimeoutMs: 30 });
    const m = track(new SourceMonitor({ factory, ...FAST }));
    await m.start();
    device.setStall(true);
    await m.waitFor((s) => s === 'quarantined', 2000);
    expect(m.reason).toMatch(/timeout/);
    expect(m.counters.readErrors).toBe(1);
    device.setStall(false);
    await m.waitFor((s) => s === 'healthy', 2000);
  });

  it('detach: detached at once, re-opened through the factory after reattach, fresh start-up', async () => {
    const { factory, device } = sim();
    const events: SourceHealthEvent[] = [];
    const m = track(new SourceMonitor({ factory, ...FAST }));
    m.on('health', (e) => events.push(e));
    await m.start();
    device.detach();
    expect(m.state).toBe('detached');
    expect(m.snapshot().reason).toBe('device detached');
    await new Promise((r) => setTimeout(r, 60));
    expect(m.state).toBe('detached');
    device.reattach();
    await m.waitFor((s) => s === 'healthy', 2000);
    expect(m.counters.detaches).toBe(1);
    expect(events.map((e) => e.type)).toEqual(
      expect.arrayContaining(['detached', 'reopened', 'startup-passed']),
    );
  });

  it('a source that cannot be opened at start is detached until it appears', async () => {
    const { factory, device } = sim();
    device.detach();
    const m = track(new SourceMonitor({ factory, open: { id: 'sim-qrng:0' }, ...FAST }));
    await m.start();
    expect(m.state).toBe('detached');
    expect(m.snapshot()).toMatchObject({ id: 'sim-qrng:0', kind: 'quantum', state: 'detached' });
    device.reattach();
    await m.waitFor((s) => s === 'healthy', 2000);
  });

  it('stop closes the source and rejects pending takes', async () => {
    const src = new ScriptedSource(ideal);
    const m = new SourceMonitor({ factory: scriptedFactory(src), ...FAST });
    await m.start();
    const pending = m.take(60_000).catch((e: unknown) => e);
    await m.stop();
    expect(await pending).toBeInstanceOf(SourceUnavailableError);
    expect(m.state).toBe('closed');
    expect(src.closed).toBe(true);
    await m.stop();
  });

  it('can be started again after stop', async () => {
    const { factory } = sim();
    const m = track(new SourceMonitor({ factory, ...FAST }));
    await m.start();
    await m.stop();
    expect(m.state).toBe('closed');
    await m.start();
    expect(m.state).toBe('healthy');
    expect(await m.take(8)).toHaveLength(8);
  });

  it('rejects bad options and arguments', async () => {
    const { factory } = sim();
    expect(() => new SourceMonitor({ factory, backoff: { initialMs: 0 } })).toThrow(RangeError);
    expect(() => new SourceMonitor({ factory, backoff: { factor: 0.5 } })).toThrow(RangeError);
    const m = new SourceMonitor({ factory });
    await expect(m.take(0)).rejects.toThrow(RangeError);
    await expect(m.take(1)).rejects.toBeInstanceOf(SourceUnavailableError); // not started
  });
});

describe('SourceMonitor wipes the bytes it lets go', () => {
  /** A scripted source that remembers every buffer it handed the monitor. */
  function recording(produce: (off: number, n: number) => Uint8Array = ideal) {
    const given: Uint8Array[] = [];
    const src = new ScriptedSource((off, n) => {
      const out = produce(off, n);
      given.push(out);
      return out;
    });
    return { src, given };
  }
  const zero = (b: Uint8Array) => b.every((x) => x === 0);

  it('start-up samples, bytes handed out, and the pool at stop are all zeroed', async () => {
    const { src, given } = recording();
    const m = new SourceMonitor({ factory: scriptedFactory(src), ...FAST });
    await m.start();
    expect(given[0]!.length).toBe(1024);
    expect(zero(given[0]!)).toBe(true); // start-up: tested, never served
    const got = await m.take(100);
    expect(Buffer.from(got).equals(Buffer.from(STREAM.subarray(1024, 1124)))).toBe(true);
    // The pool's copy of what was handed out is gone; the caller's copy is the only one.
    expect(zero(given[1]!.subarray(0, 100))).toBe(true);
    expect(zero(got)).toBe(false);
    await m.stop();
    for (const b of given) expect(zero(b)).toBe(true);
  });

  it('a window that fails its health test is zeroed with the pool', async () => {
    const C = rctCutoff(4, 8, MONITOR_ALPHA_LOG2);
    const { src, given } = recording((off, n) => {
      const out = ideal(off, n);
      for (let i = 0; i < n; i++) if (off + i >= 3072 - C && off + i < 3072) out[i] = 0x55;
      return out;
    });
    const m = track(new SourceMonitor({ factory: scriptedFactory(src), ...FAST }));
    const events: SourceHealthEvent[] = [];
    m.on('health', (e: SourceHealthEvent) => events.push(e));
    await m.start();
    await waitUntil(() => events.some((e) => e.type !== 'startup-passed'));
    // Start-up (0..1023), the pooled window (1024..2047) and the failed one (2048..3071): all wiped.
    let offset = 0;
    for (const b of given) {
      if (offset < 3072) expect(zero(b), `bytes from ${offset}`).toBe(true);
      offset += b.length;
    }
    expect(offset).toBeGreaterThanOrEqual(3072);
  });
});

async function waitUntil(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}
