/** `qkm sources list` / `qkm sources test <id>` back ends, on the simulated devices. */
import { describe, expect, it } from 'vitest';
import type { EntropySourceFactory } from '../../drivers/entropy/interface.js';
import { createSerialTrngFactory } from '../../drivers/entropy/serial-trng/index.js';
import { listAllSources, testSource } from '../../src/entropy/source-check.js';
import { createSimulatedQuantis } from '../../simulators/quantis/index.js';
import { createSimulatedSerialBus, uniqueSimPath } from '../../simulators/serial/index.js';

describe('listAllSources', () => {
  it('lists every family and reports a broken one without hiding the rest', async () => {
    const { factory: quantis } = createSimulatedQuantis({ serial: 'LIST1' });
    const bus = createSimulatedSerialBus();
    const path = uniqueSimPath();
    bus.addDevice(path, 'onerng');
    const serial = createSerialTrngFactory({ binding: bus.binding, configured: [] });
    const broken: EntropySourceFactory = {
      driver: 'broken',
      list: () => Promise.reject(new Error('host setup is broken')),
      open: () => Promise.reject(new Error('no')),
    };
    const listing = await listAllSources([quantis, serial, broken]);
    expect(listing.sources.map((s) => s.id)).toEqual(['quantis-usb:LIST1', `serial-trng:${path}`]);
    expect(listing.errors).toEqual([{ driver: 'broken', message: 'host setup is broken' }]);
  });
});

describe('testSource', () => {
  it('passes a healthy device and reports rate and an MCV estimate near the claim', async () => {
    const { factory } = createSimulatedQuantis({ serial: 'CHK1', rateBps: 16_000_000 });
    const r = await testSource(factory, 'quantis-usb:CHK1', { samples: 128 * 1024 });
    expect(r.verdict).toBe('pass');
    expect(r.bytesRead).toBe(128 * 1024);
    expect(r.startup.passed).toBe(true);
    // The running appliance's α = 2⁻⁴⁰ at the claimed H = 7.5: C = 1 + ⌈40 / 7.5⌉ = 7.
    expect(r.continuous).toMatchObject({ passed: true, rctCutoff: 7 });
    expect(r.rate).toBeGreaterThan(0);
    // MCV of uniform bytes at 128 Ki samples ≈ 7.6–7.9 bits
    expect(r.mcvEstimate).toBeGreaterThan(7.3);
    expect(r.mcvEstimate).toBeLessThan(8);
    expect(JSON.stringify(r)).not.toMatch(/"bytes"/);
  });

  it('fails a stuck device on the health tests', async () => {
    const { factory, device } = createSimulatedQuantis({ serial: 'CHK2' });
    device.setFaults({ stuck: true });
    const r = await testSource(factory, 'quantis-usb:CHK2', { samples: 8192 });
    expect(r.verdict).toBe('fail');
    expect(r.startup.passed).toBe(false);
    expect(r.mcvEstimate).toBe(0);
  });

  it('reports a missing device as a typed error, not a throw', async () => {
    const { factory } = createSimulatedQuantis({ serial: 'CHK3' });
    const r = await testSource(factory, 'quantis-usb:NOPE');
    expect(r.verdict).toBe('fail');
    expect(r.error?.failure).toBe('disconnected');
  });
});
