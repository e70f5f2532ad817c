import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { createOsEntropyFactory } from '../../drivers/entropy/os/index.js';
import { isQkmError, type QkmError } from '../../src/core/errors.js';
import {
  type DegradedEvent,
  EntropyService,
  type EntropyServiceOptions,
  type ReseedEvent,
} from '../../src/entropy/service.js';
import type { SourceHealthEvent } from '../../src/entropy/source-monitor.js';
import { CtrDrbg } from '../../src/entropy/drbg/ctr-drbg.js';
import type { EntropyResult } from '../../src/entropy/types.js';
import { createSimulatedQrngFactory, type SimulatedQrngDevice } from '../../simulators/qrng/index.js';

/**
 * Claims are lowered for tests (simulated QRNG H = 4, OS H = 6) so that an ideal stream cannot
 * trip the RCT by chance during a test (at H ≥ 7 the cutoff is 4 and a true random stream
 * does so with probability ~2^-24 per byte, which is α working as designed, not a bug).
 */
const services: EntropyService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

function setup(options: Partial<EntropyServiceOptions> & { devices?: number } = {}) {
  const factory = createSimulatedQrngFactory({
    devices: Array.from({ length: options.devices ?? 1 }, (_, i) => ({
      serial: String(i),
      claimedMinEntropy: 4,
      rate: 4_000_000,
      readTimeoutMs: 40,
    })),
  });
  const svc = new EntropyService({
    sources: factory.devices.map((d) => ({ factory, open: { id: d.id } })),
    osSource: { factory: createOsEntropyFactory({ claimedMinEntropy: 6 }) },
    reseedCron: null,
    monitor: { backoff: { initialMs: 5, maxMs: 40 }, sentinelIntervalMs: 5 },
    ...options,
  });
  services.push(svc);
  return { svc, factory, device: factory.device() };
}

async function waitUntil(cond: () => boolean, ms = 3000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function rejection(p: Promise<unknown>): Promise<QkmError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isQkmError(err)).toBe(true);
  return err as QkmError;
}

/** A CTR_DRBG that keeps (a reference to) every generate call's output, to watch the buffer. */
class RecordingDrbg extends CtrDrbg {
  readonly outputs: Uint8Array[] = [];
  constructor() {
    super({ cipher: 'aes-256', df: true });
  }
  override generate(nBytes: number, additionalInput?: Uint8Array): Uint8Array {
    const out = super.generate(nBytes, additionalInput);
    this.outputs.push(out);
    return out;
  }
}

describe('EntropyService: sources added while running', () => {
  it('adds a new device once, start-up tests it, and reseeds from it too', async () => {
    const factory = createSimulatedQrngFactory({
      devices: ['0', '1'].map((serial) => ({
        serial,
        claimedMinEntropy: 4,
        rate: 4_000_000,
        readTimeoutMs: 40,
      })),
    });
    const [first, second] = factory.devices;
    const svc = new EntropyService({
      sources: [{ factory, open: { id: first!.id } }],
      osSource: { factory: createOsEntropyFactory({ claimedMinEntropy: 6 }) },
      reseedCron: null,
      monitor: { backoff: { initialMs: 5, maxMs: 40 }, sentinelIntervalMs: 5 },
    });
    services.push(svc);
    expect(await svc.addSource({ factory, open: { id: second!.id } })).toBe(false); // not started
    await svc.start();
    expect(await svc.addSource({ factory, open: { id: first!.id } })).toBe(false); // already watched
    expect(await svc.addSource({ factory, open: { id: second!.id } })).toBe(true);
    expect(await svc.addSource({ factory, open: { id: second!.id } })).toBe(false);
    expect(svc.status().sources.map((s) => [s.id, s.state])).toEqual([
      ['sim-qrng:0', 'healthy'],
      ['sim-qrng:1', 'healthy'],
      ['os', 'healthy'],
    ]);
    await svc.reseedNow();
    const r = await svc.getEntropy(16, { require: 'quantum' });
    expect(r.provenance.sources.map((s) => s.id).sort()).toEqual(['sim-qrng:0', 'sim-qrng:1']);
  });
});

describe('EntropyService: the small-request output buffer', () => {
  function buffered() {
    const drbgs: RecordingDrbg[] = [];
    const ctx = setup({
      outputBufferBytes: 4096,
      createDrbg: () => {
        const d = new RecordingDrbg();
        drbgs.push(d);
        return d;
      },
    });
    return { ...ctx, quantum: drbgs[0] as RecordingDrbg };
  }

  it('cuts small requests from one generate call in order, zeroing each slice as it leaves', async () => {
    const { svc, quantum } = buffered();
    await svc.start();
    const a = await svc.getEntropy(32);
    const b = await svc.getEntropy(100);
    expect(quantum.outputs).toHaveLength(1);
    const block = quantum.outputs[0] as Uint8Array;
    expect(block).toHaveLength(4096);
    // Handed out in order; what was handed out is no longer in memory.
    expect(block.subarray(0, 132).every((x) => x === 0)).toBe(true);
    expect(block.subarray(132).some((x) => x !== 0)).toBe(true);
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes.subarray(0, 32)))).toBe(false);
    expect(a.provenance.drbg.reseedCounter).toBe(b.provenance.drbg.reseedCounter);
    expect(svc.status().counters.bytesServed).toBe(132);
    expect(svc.status().drbg.bytesSinceReseed).toBe(4096);
  });

  it('refills when the rest is too short, and never splits a request across two blocks', async () => {
    const { svc, quantum } = buffered();
    await svc.start();
    for (let i = 0; i < 16; i++) await svc.getEntropy(250); // 4000 bytes of the first block
    const next = await svc.getEntropy(200); // 96 left: too short
    expect(quantum.outputs).toHaveLength(2);
    expect((quantum.outputs[0] as Uint8Array).every((x) => x === 0)).toBe(true);
    expect(next.provenance.drbg.reseedCounter).toBe(3); // instantiate → 1, two generates
  });

  it('large, prediction-resistant and additional-input requests are their own generate calls', async () => {
    const { svc, quantum } = buffered();
    await svc.start();
    await svc.getEntropy(257);
    await svc.getEntropy(16, { additionalInput: new Uint8Array([1, 2, 3]) });
    expect(quantum.outputs.map((o) => o.length)).toEqual([257, 16]);
    await svc.getEntropy(16, { predictionResistance: true });
    // generateWithReseed of exactly the request, not a buffered block.
    expect(quantum.outputs.map((o) => o.length)).toEqual([257, 16, 16]);
  });

  it('a reseed wipes what was left of the block; later output comes from the new seed', async () => {
    const { svc, quantum } = buffered();
    await svc.start();
    await svc.getEntropy(32);
    await svc.reseedNow();
    expect((quantum.outputs[0] as Uint8Array).every((x) => x === 0)).toBe(true);
    const after = await svc.getEntropy(32);
    expect(quantum.outputs).toHaveLength(2);
    expect(after.provenance.drbg.reseedCounter).toBe(2); // reseed → 1, generate → 2
  });

  it('a failing contributor wipes the block at once', async () => {
    const { svc, device, quantum } = buffered();
    await svc.start();
    await svc.getEntropy(32);
    device.setStuck(7);
    await waitUntil(() => svc.status().sources[0]!.state !== 'healthy');
    expect((quantum.outputs[0] as Uint8Array).every((x) => x === 0)).toBe(true);
    expect((await svc.getEntropy(32)).provenance.degraded).toBe(true);
  });

  it('rejects a buffer larger than one generate call may be', () => {
    expect(() => new EntropyService({ outputBufferBytes: 65_537, reseedCron: null })).toThrow(RangeError);
  });
});

describe('EntropyService: healthy path', () => {
  it('serves quantum-seeded, non-degraded output with full provenance', async () => {
    const t = Date.UTC(2026, 0, 2, 3, 4, 5);
    const { svc } = setup({ clock: () => t });
    await svc.start();
    const st = svc.status();
    expect(st).toMatchObject({ quantumAvailable: true, degraded: false });
    expect(st.reason).toBeUndefined();
    expect(st.drbg).toMatchObject({ name: 'CTR_DRBG(AES-256, df)', seedOrigin: 'quantum' });
    expect(st.sources.map((s) => [s.id, s.kind, s.state])).toEqual([
      ['sim-qrng:0', 'quantum', 'healthy'],
      ['os', 'os', 'healthy'],
    ]);
    const a = await svc.getEntropy(32);
    const b = await svc.getEntropy(32);
    expect(a.bytes).toHaveLength(32);
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(false);
    expect(a.provenance).toMatchObject({
      seedOrigin: 'quantum',
      degraded: false,
      entropyCredited: 256,
      at: new Date(t).toISOString(),
      drbg: {
        name: 'CTR_DRBG(AES-256, df)',
        predictionResistance: false,
        seededAt: new Date(t).toISOString(),
      },
    });
    expect(a.provenance.reason).toBeUndefined();
    expect(a.provenance.sources).toEqual([
      expect.objectContaining({ id: 'sim-qrng:0', state: 'healthy', simulated: true, claimedMinEntropy: 4 }),
    ]);
    expect(b.provenance.drbg.reseedCounter).toBe(a.provenance.drbg.reseedCounter + 1);
    expect(b.provenance.drbg.instance).toBe(a.provenance.drbg.instance);
    expect(svc.status().counters).toMatchObject({
      bytesServed: 64,
      bytesServedDegraded: 0,
      healthFailures: 0,
    });
  });

  it('validates n and the request; caps requests; refuses before start', async () => {
    const { svc } = setup();
    expect((await rejection(svc.getEntropy(32))).code).toBe('ENTROPY_UNAVAILABLE');
    await svc.start();
    for (const n of [0, -1, 1.5, Number.NaN, 65_537]) {
      const err = await rejection(svc.getEntropy(n));
      expect(err.code).toBe('INVALID_PARAMETER');
      expect(err.status).toBe(400);
    }
    expect((await rejection(svc.getEntropy(1, { require: 'bogus' as 'any' }))).code).toBe(
      'INVALID_PARAMETER',
    );
    expect((await svc.getEntropy(65_536)).bytes).toHaveLength(65_536);
  });

  it('generates requests above the DRBG limit in DRBG-sized chunks, up to the service cap', async () => {
    const { svc } = setup({ maxRequestBytes: 200_000 });
    await svc.start();
    const first = await svc.getEntropy(1);
    const big = await svc.getEntropy(150_000); // 65 536 + 65 536 + 18 928
    expect(big.bytes).toHaveLength(150_000);
    expect(big.provenance.drbg.reseedCounter).toBe(first.provenance.drbg.reseedCounter + 3);
    expect((await rejection(svc.getEntropy(200_001))).code).toBe('INVALID_PARAMETER');
  });

  it('prediction resistance reseeds from the sources right before generating', async () => {
    const { svc } = setup();
    const reseeds: ReseedEvent[] = [];
    svc.on('reseed', (e) => reseeds.push(e));
    await svc.start();
    await svc.getEntropy(16);
    const before = svc.status().counters.reseeds;
    const r = await svc.getEntropy(16, { predictionResistance: true, additionalInput: new Uint8Array(8) });
    expect(r.provenance.drbg.predictionResistance).toBe(true);
    expect(r.provenance.drbg.reseedCounter).toBe(2); // reseed → 1, generate → 2
    expect(r.provenance.degraded).toBe(false);
    expect(svc.status().counters.reseeds).toBe(before + 1);
    expect(reseeds.at(-1)).toMatchObject({
      origin: 'quantum',
      cause: 'prediction-resistance',
      creditedBits: 256,
    });
  });

  it('reseeds after the configured byte count, and on reseedNow()', async () => {
    const { svc } = setup({ reseedBytes: 1000 });
    const reseeds: ReseedEvent[] = [];
    svc.on('reseed', (e) => reseeds.push(e));
    await svc.start();
    await svc.getEntropy(600);
    await svc.getEntropy(600);
    expect(svc.status().drbg.bytesSinceReseed).toBe(1200);
    const r = await svc.getEntropy(10);
    expect(reseeds.at(-1)).toMatchObject({ origin: 'quantum', operation: 'reseed', cause: 'bytes' });
    expect(r.provenance.drbg.reseedCounter).toBe(2);
    expect(svc.status().drbg.bytesSinceReseed).toBe(10);
    await svc.reseedNow();
    expect(
      reseeds
        .filter((e) => e.cause === 'cron')
        .map((e) => e.origin)
        .sort(),
    ).toEqual(['os', 'quantum']);
  });

  it('runs the node-cron reseed schedule', async () => {
    const { svc } = setup({ reseedCron: '* * * * * *' }); // every second
    const reseeds: ReseedEvent[] = [];
    svc.on('reseed', (e) => reseeds.push(e));
    await svc.start();
    await waitUntil(() => reseeds.some((e) => e.cause === 'cron' && e.origin === 'quantum'), 2500);
  });

  it('rejects an invalid cron expression', () => {
    expect(() => new EntropyService({ reseedCron: 'not cron' })).toThrow(RangeError);
  });

  it('stop closes the sources and the service refuses afterwards', async () => {
    const { svc } = setup();
    await svc.start();
    await svc.stop();
    expect(svc.status().sources.every((s) => s.state === 'closed')).toBe(true);
    expect(svc.status().drbg.seedOrigin).toBe('unseeded');
    expect((await rejection(svc.getEntropy(8))).code).toBe('ENTROPY_UNAVAILABLE');
    await svc.start(); // and can be started again
    expect((await svc.getEntropy(8)).provenance.degraded).toBe(false);
  });
});

interface Fault {
  name: string;
  inject: (d: SimulatedQrngDevice) => void;
  clear: (d: SimulatedQrngDevice) => void;
  state: 'quarantined' | 'detached';
  reason: RegExp;
}

const FAULTS: Fault[] = [
  {
    name: 'stuck',
    inject: (d) => d.setStuck(0x5a),
    clear: (d) => d.clearFaults(),
    state: 'quarantined',
    reason: /RCT failure/,
  },
  {
    name: 'bias',
    inject: (d) => d.setBias({ value: 0x42, probability: 0.6 }),
    clear: (d) => d.clearFaults(),
    state: 'quarantined',
    reason: /(RCT|APT) failure/,
  },
  {
    name: 'stall',
    inject: (d) => d.setStall(true),
    clear: (d) => d.clearFaults(),
    state: 'quarantined',
    reason: /read timeout/,
  },
  {
    name: 'detach',
    inject: (d) => d.detach(),
    clear: (d) => d.reattach(),
    state: 'detached',
    reason: /device detached/,
  },
];

// Every fault and taint case runs twice: one generate per request, and small requests cut from
// a buffered generate (the appliance default), whose buffer must die with its lineage.
for (const [label, outputBufferBytes] of [
  ['unbuffered', 0],
  ['buffered', 4096],
] as const) {
  describe(`EntropyService: each simulated fault end to end (${label})`, () => {
    for (const fault of FAULTS) {
      it(`${fault.name}: quarantine → degraded from the next request → fresh start-up → quantum again`, async () => {
        const { svc, device } = setup({ outputBufferBytes });
        const health: SourceHealthEvent[] = [];
        const degradedEvents: DegradedEvent[] = [];
        svc.on('health', (e) => health.push(e));
        svc.on('degraded', (e) => degradedEvents.push(e));
        await svc.start();
        const before = await svc.getEntropy(32);
        expect(before.provenance.degraded).toBe(false);

        fault.inject(device);
        await waitUntil(() => svc.status().sources[0]!.state !== 'healthy');

        // The very next request is degraded, served from the OS-seeded DRBG, with the reason.
        const during = await svc.getEntropy(32);
        expect(during.provenance.degraded).toBe(true);
        expect(during.provenance.seedOrigin).toBe('os');
        expect(during.provenance.reason).toMatch(/^no healthy quantum source: sim-qrng:0 /);
        expect(during.provenance.reason).toMatch(fault.reason);
        expect(during.provenance.sources.map((s) => s.id)).toEqual(['os']);
        const st = svc.status();
        expect(st).toMatchObject({ quantumAvailable: false, degraded: true });
        expect(st.reason).toMatch(fault.reason);
        expect(st.sources[0]).toMatchObject({ id: 'sim-qrng:0' });
        expect(['quarantined', 'detached', 'startup']).toContain(st.sources[0]!.state);
        expect(st.drbg.seedOrigin).toBe('os');
        expect(st.counters.healthFailures).toBeGreaterThanOrEqual(1);
        expect(st.counters.bytesServedDegraded).toBe(32);

        // require: 'quantum' gets 503 QUANTUM_ENTROPY_UNAVAILABLE instead.
        const err = await rejection(svc.getEntropy(32, { require: 'quantum' }));
        expect(err.code).toBe('QUANTUM_ENTROPY_UNAVAILABLE');
        expect(err.status).toBe(503);
        expect(svc.status().counters.requestsRejected).toBe(1);
        expect(health.some((e) => e.sourceId === 'sim-qrng:0' && e.state === fault.state)).toBe(true);
        expect(degradedEvents.at(-1)?.degraded).toBe(true);

        // Recovery: fault cleared → fresh start-up test → quantum DRBG re-instantiated from it.
        fault.clear(device);
        await waitUntil(() => svc.status().quantumAvailable);
        const after = await svc.getEntropy(32, { require: 'quantum' });
        expect(after.provenance.degraded).toBe(false);
        expect(after.provenance.seedOrigin).toBe('quantum');
        expect(after.provenance.drbg.instance).not.toBe(before.provenance.drbg.instance);
        expect(health.filter((e) => e.type === 'startup-passed').length).toBeGreaterThanOrEqual(1);
        expect(degradedEvents.at(-1)?.degraded).toBe(false);
        // Events carry ids and reasons only.
        for (const e of health)
          expect(Object.keys(e).sort()).toEqual(expect.arrayContaining(['reason', 'sourceId']));
      });
    }
  });

  describe(`EntropyService: the taint invariant (${label})`, () => {
    it('never serves the pre-failure quantum lineage unflagged, even if the source recovers between requests', async () => {
      const { svc, device } = setup({ outputBufferBytes });
      await svc.start();
      const lineage0 = (await svc.getEntropy(16)).provenance.drbg.instance;
      device.setStuck(1);
      await waitUntil(() => svc.status().sources[0]!.state !== 'healthy');
      device.clearFaults();
      const results: EntropyResult[] = [];
      const end = performance.now() + 400;
      while (performance.now() < end) {
        results.push(await svc.getEntropy(16));
        await new Promise((r) => setTimeout(r, 1));
      }
      for (const r of results) {
        if (!r.provenance.degraded) {
          expect(r.provenance.drbg.instance).not.toBe(lineage0);
          expect(r.provenance.sources.every((s) => s.state === 'healthy')).toBe(true);
        }
      }
      expect(results.at(-1)!.provenance.degraded).toBe(false);
    });

    it('property: after any source failure, no non-degraded output comes from a lineage seen before it', async () => {
      type Cmd = {
        op: 'stuck' | 'bias' | 'stall' | 'detach' | 'clear' | 'request' | 'pr' | 'wait';
        ms: number;
      };
      const cmd = fc.record({
        op: fc.constantFrom<Cmd['op']>(
          'stuck',
          'bias',
          'stall',
          'detach',
          'clear',
          'request',
          'request',
          'pr',
          'wait',
        ),
        ms: fc.integer({ min: 0, max: 25 }),
      });
      await fc.assert(
        fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 10 }), async (cmds) => {
          // A counter as the clock orders outputs and failures exactly, even across microtasks.
          let ticks = 0;
          const { svc, device } = setup({ clock: () => ++ticks, outputBufferBytes });
          await svc.start();
          const failures: number[] = [];
          const outputs: { tick: number; instance: string }[] = [];
          svc.on('state', (snap) => {
            if (snap.id === 'sim-qrng:0' && snap.state !== 'healthy') failures.push(ticks);
          });
          const check = (r: EntropyResult): void => {
            if (!r.provenance.degraded) {
              outputs.push({ tick: Date.parse(r.provenance.at), instance: r.provenance.drbg.instance });
            }
          };
          for (const c of [...cmds, { op: 'request', ms: 0 } as Cmd]) {
            if (c.op === 'stuck') device.setStuck(0x33);
            else if (c.op === 'bias') device.setBias({ value: 0x33, probability: 0.7 });
            else if (c.op === 'stall') device.setStall(true);
            else if (c.op === 'detach') device.detach();
            else if (c.op === 'clear') {
              device.clearFaults();
              device.reattach();
            } else if (c.op === 'request') check(await svc.getEntropy(16));
            else if (c.op === 'pr') check(await svc.getEntropy(16, { predictionResistance: true }));
            await new Promise((r) => setTimeout(r, c.ms));
          }
          await svc.stop();
          for (const o of outputs) {
            for (const f of failures) {
              if (f >= o.tick) continue;
              // o came after failure f: its lineage must not have served anything before f.
              expect(outputs.some((p) => p.tick <= f && p.instance === o.instance)).toBe(false);
            }
          }
        }),
        { numRuns: 12 },
      );
    });
  });
}

describe('EntropyService: the taint invariant, more', () => {
  it('with two quantum sources, a failure of one re-instantiates from the other alone', async () => {
    const { svc, factory } = setup({ devices: 2 });
    await svc.start();
    const before = await svc.getEntropy(16);
    expect(before.provenance.sources.map((s) => s.id)).toEqual(['sim-qrng:0', 'sim-qrng:1']);
    expect(before.provenance.entropyCredited).toBe(512);
    factory.device('sim-qrng:0').setStuck(7);
    await waitUntil(() => svc.status().sources[0]!.state !== 'healthy');
    const after = await svc.getEntropy(16);
    expect(after.provenance.degraded).toBe(false);
    expect(after.provenance.drbg.instance).not.toBe(before.provenance.drbg.instance);
    expect(after.provenance.sources.map((s) => s.id)).toEqual(['sim-qrng:1']);
    expect(after.provenance.entropyCredited).toBe(256);
  });

  it('without quantum sources every output is degraded and require quantum is refused', async () => {
    const { svc } = setup({ sources: [] });
    await svc.start();
    const r = await svc.getEntropy(8);
    expect(r.provenance).toMatchObject({
      degraded: true,
      seedOrigin: 'os',
      reason: 'no quantum source configured',
    });
    expect((await rejection(svc.getEntropy(8, { require: 'quantum' }))).code).toBe(
      'QUANTUM_ENTROPY_UNAVAILABLE',
    );
  });

  it('when the fallback source fails too, requests are refused with ENTROPY_UNAVAILABLE', async () => {
    const osLike = createSimulatedQrngFactory({
      devices: [{ serial: 'os', claimedMinEntropy: 4, rate: 4e6 }],
    });
    const { svc, device } = setup({ osSource: { factory: osLike } });
    await svc.start();
    device.setStuck(3);
    osLike.device().setStuck(3);
    await waitUntil(() => svc.status().sources.every((s) => s.state !== 'healthy'));
    const err = await rejection(svc.getEntropy(8));
    expect(err.code).toBe('ENTROPY_UNAVAILABLE');
    expect(err.status).toBe(503);
  });
});
