import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis, type SimulatedAppliance } from '../../src/cli/simulator.js';
import { QkmClient } from '../../src/client/client.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Hot-plug over the running appliance (simulator mode): a second Quantis plugged into the
 * simulated bus becomes a source of its own through the same driver watch() a real bus uses.
 */
let dir: string;
let appliance: SimulatedAppliance;
let client: QkmClient;
let admin: QkmClient;

const stateOf = async (id: string) => (await client.status()).entropy.sources.find((s) => s.id === id)?.state;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-hotplug-'));
  appliance = await Appliance.start({
    simulator: simulatedQuantis,
    config: loadConfig({
      env: {},
      overrides: { dataDir: join(dir, 'data'), port: 0, logLevel: 'warn', mode: 'simulator' },
    }),
    logger: createLogger({ level: 'silent' }),
    entropyTuning: { monitor: { backoff: { initialMs: 50, maxMs: 400, factor: 2 }, sentinelIntervalMs: 50 } },
  });
  client = new QkmClient({
    url: appliance.url,
    token: (await readFile(appliance.tokenFiles.default!, 'utf8')).trim(),
  });
  admin = new QkmClient({
    url: appliance.url,
    token: (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim(),
  });
});

afterAll(async () => {
  await appliance?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('hot-plug', () => {
  it('a Quantis plugged in while running becomes a source, carries the service when the first is unplugged, and a replug adds nothing', async () => {
    const sim = appliance.simulator!;
    await waitFor('first source healthy', async () => (await stateOf('quantis-usb:SIM00001')) === 'healthy');

    sim.transport.addQuantis({ serial: 'SIM00002' });
    await waitFor('second source healthy', async () => (await stateOf('quantis-usb:SIM00002')) === 'healthy');
    const audit = await admin.audit.export<{ type: string; details: { source?: string } }>();
    expect(
      audit.some((r) => r.type === 'entropy.source_added' && r.details.source === 'quantis-usb:SIM00002'),
    ).toBe(true);

    // Unplug the first: the quantum DRBG is re-instantiated from the second alone.
    sim.device.unplug();
    await waitFor('first source gone', async () => (await stateOf('quantis-usb:SIM00001')) !== 'healthy');
    const r = await waitFor('quantum entropy again', async () => {
      try {
        return await client.entropy(32, { require: 'quantum' });
      } catch {
        return undefined;
      }
    });
    expect(r.provenance.degraded).toBe(false);
    expect(r.provenance.sources.map((s) => s.id)).toEqual(['quantis-usb:SIM00002']);

    // The first comes back through its own source; no third source appears.
    sim.device.replug();
    await waitFor('first source back', async () => (await stateOf('quantis-usb:SIM00001')) === 'healthy');
    const quantum = (await client.status()).entropy.sources.filter((s) => s.kind === 'quantum');
    expect(quantum.map((s) => s.id).sort()).toEqual(['quantis-usb:SIM00001', 'quantis-usb:SIM00002']);
  });
});
