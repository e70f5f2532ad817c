import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';

/**
 * The appliance does not load the simulators itself (test/core/layering.test.ts checks the
 * imports): simulator mode runs on the devices its caller passes, and refuses to start without.
 */

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-sim-wiring-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('simulator mode without a simulator', () => {
  it('refuses to start, naming the option, before it writes anything', async () => {
    const dataDir = join(dir, 'data');
    const start = Appliance.start({
      config: loadConfig({ env: {}, overrides: { dataDir, port: 0, mode: 'simulator' } }),
      logger: createLogger({ level: 'silent' }),
    });
    await expect(start).rejects.toThrow(TypeError);
    await expect(start).rejects.toThrow(/ApplianceOptions\.simulator/);
    expect(existsSync(dataDir)).toBe(false);
  });
});
