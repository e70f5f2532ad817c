/**
 * Fault detection end to end: the Quantis driver over the simulated device as the only quantum
 * source of a real EntropyService (health tests, conditioning, DRBGs). For every fault the
 * simulator can inject: the source leaves `healthy`, the next getEntropy is `degraded`; after the
 * fault is cleared (or the device replugged) the source passes a fresh start-up test and the
 * service serves non-degraded output again.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createQuantisFactory } from '../../drivers/entropy/quantis-usb/index.js';
import type { SourceState } from '../../src/core/provenance.js';
import { EntropyService } from '../../src/entropy/service.js';
import type { SourceHealthEvent } from '../../src/entropy/source-monitor.js';
import { type QuantisFaults, SimulatedUsbTransport } from '../../simulators/quantis/index.js';

const SERIAL = 'E2E00001';
const ID = `quantis-usb:${SERIAL}`;
let running: EntropyService | undefined;

afterEach(async () => {
  await running?.stop();
  running = undefined;
});

async function start() {
  const transport = new SimulatedUsbTransport();
  const device = transport.addQuantis({ serial: SERIAL });
  // Small read-ahead so a fault reaches the health tests within a few windows; short timeouts.
  const factory = createQuantisFactory({
    transport,
    timeoutMs: 200,
    resetSettleMs: 0,
    readAheadBytes: 4096,
    packetsPerTransfer: 2,
  });
  const service = new EntropyService({
    sources: [{ factory, open: { id: ID } }],
    reseedCron: null,
    monitor: { backoff: { initialMs: 30, maxMs: 200, factor: 2 }, sentinelIntervalMs: 10 },
  });
  running = service;
  const events: SourceHealthEvent[] = [];
  service.on('health', (e) => events.push(e));
  await service.start();
  return { service, device, events };
}

const stateOf = (service: EntropyService): SourceState | undefined =>
  service.status().sources.find((s) => s.id === ID)?.state;

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

/** Polls getEntropy until it is served non-degraded from the quantum lineage. */
async function untilQuantum(service: EntropyService): Promise<void> {
  await until('non-degraded entropy', async () => {
    const r = await service.getEntropy(32);
    return !r.provenance.degraded && r.provenance.seedOrigin === 'quantum';
  });
}

type Fault = {
  name: string;
  inject: Partial<QuantisFaults>;
  expectEvent: SourceHealthEvent['type'];
  tests?: Array<'RCT' | 'APT'>;
};
const faults: Fault[] = [
  { name: 'stuck output', inject: { stuck: true }, expectEvent: 'health-failure', tests: ['RCT'] },
  // A detector biased toward one value produces runs as well as excess counts, so RCT (cutoff 4
  // at H = 7.5) often fires before the APT window that starts with that value; either is right.
  { name: 'bias', inject: { bias: 0.25 }, expectEvent: 'health-failure', tests: ['RCT', 'APT'] },
  { name: 'stall', inject: { stall: true }, expectEvent: 'read-error' },
  { name: 'short packet', inject: { shortPacket: true }, expectEvent: 'read-error' },
  { name: 'status not ready', inject: { statusNotReady: true }, expectEvent: 'read-error' },
];

describe('EntropyService with the simulated Quantis as its only quantum source', () => {
  it('starts healthy and serves non-degraded quantum-seeded output', async () => {
    const { service } = await start();
    await untilQuantum(service);
    const r = await service.getEntropy(64);
    expect(r.bytes.length).toBe(64);
    expect(r.provenance.sources.map((s) => s.id)).toContain(ID);
    expect(service.status().sources.find((s) => s.id === ID)).toMatchObject({
      kind: 'quantum',
      simulated: true,
    });
  });

  for (const f of faults) {
    it(`${f.name}: quarantined, next request degraded; cleared → fresh start-up test → used again`, async () => {
      const { service, device, events } = await start();
      await untilQuantum(service);
      device.setFaults(f.inject);
      await until('source leaves healthy', () => stateOf(service) !== 'healthy');
      const degraded = await service.getEntropy(32);
      expect(degraded.provenance.degraded).toBe(true);
      expect(degraded.provenance.reason).toEqual(expect.any(String));
      await expect(service.getEntropy(32, { require: 'quantum' })).rejects.toMatchObject({
        code: 'QUANTUM_ENTROPY_UNAVAILABLE',
      });
      const failure = events.find((e) => e.type === f.expectEvent);
      expect(failure, `a ${f.expectEvent} event`).toBeDefined();
      if (f.tests) expect(f.tests).toContain(failure?.test);
      expect(service.status().degraded).toBe(true);

      const failedAt = events.length;
      device.clearFaults();
      await untilQuantum(service);
      expect(events.slice(failedAt).some((e) => e.type === 'startup-passed')).toBe(true);
      expect(stateOf(service)).toBe('healthy');
    });
  }

  it('unplug: detached, next request degraded; replug → re-opened, fresh start-up test → used again', async () => {
    const { service, device, events } = await start();
    await untilQuantum(service);
    device.unplug();
    await until('source detached', () => stateOf(service) === 'detached');
    expect((await service.getEntropy(32)).provenance.degraded).toBe(true);
    const at = events.length;
    device.replug();
    await untilQuantum(service);
    const after = events.slice(at).map((e) => e.type);
    expect(after).toContain('reopened');
    expect(after).toContain('startup-passed');
  });

  it('AIS-31 start-up request: quarantined once, then re-admitted after a fresh start-up test on its own', async () => {
    const { service, device, events } = await start();
    await untilQuantum(service);
    const at = events.length;
    device.raiseAis31();
    await until('source leaves healthy', () => stateOf(service) !== 'healthy');
    expect((await service.getEntropy(32)).provenance.degraded).toBe(true);
    await untilQuantum(service);
    const after = events.slice(at);
    expect(after.find((e) => e.type === 'read-error')?.reason).toMatch(/AIS-31/);
    expect(after.some((e) => e.type === 'startup-passed')).toBe(true);
    expect(device.ais31Pending).toBe(false);
  });
});
