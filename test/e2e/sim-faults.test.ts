import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { QkmClient } from '../../src/client/client.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { waitFor } from '../helpers/wait.js';

/** Fault injection from outside: `POST /v1/sim/faults` and `qkm sim fault <kind>`, over real HTTP. */

const repoRoot = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);
let dir: string;
let appliance: Appliance;
let admin: QkmClient;
let agent: QkmClient;

const start = (mode: 'simulator' | 'hardware', sub: string) =>
  Appliance.start({
    simulator: simulatedQuantis,
    config: loadConfig({
      env: {},
      overrides: { dataDir: join(dir, sub), port: 0, logLevel: 'silent', mode },
    }),
    logger: createLogger({ level: 'silent' }),
  });

const quantum = async () => (await agent.status()).entropy.sources.find((s) => s.kind === 'quantum');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-sim-faults-'));
  appliance = await start('simulator', 'sim');
  admin = new QkmClient({
    url: appliance.url,
    token: (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim(),
  });
  agent = new QkmClient({
    url: appliance.url,
    token: (await readFile(appliance.tokenFiles.default!, 'utf8')).trim(),
  });
  await waitFor('healthy', async () => (await quantum())?.state === 'healthy', 30_000);
});

afterAll(async () => {
  await appliance?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('fault injection route', () => {
  it('admin injects a stuck output: the source is quarantined within 1 s; clear recovers; audited', async () => {
    const t0 = performance.now();
    expect(await admin.sim.fault('stuck')).toMatchObject({ stuck: true, attached: true });
    await waitFor('quarantine', async () => (await quantum())?.state === 'quarantined', 5000);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await admin.sim.fault('clear')).toMatchObject({ stuck: false, bias: 0 });
    await waitFor('recovered', async () => (await quantum())?.state === 'healthy', 30_000);
    const recs = (await appliance.audit.records()).filter((r) => r.type === 'sim.fault');
    expect(recs.map((r) => r.details.kind)).toEqual(['stuck', 'clear']);
    expect(recs[0]!.actor).toBe('admin');
  });

  it('refuses non-admin tokens, unknown kinds and a fraction for anything but bias', async () => {
    await expect(agent.sim.fault('stuck')).rejects.toMatchObject({ status: 403, code: 'FORBIDDEN' });
    await expect(admin.sim.fault('melt')).rejects.toMatchObject({ status: 400, code: 'BAD_REQUEST' });
    await expect(admin.sim.fault('stuck', 0.5)).rejects.toMatchObject({ code: 'INVALID_PARAMETER' });
    await expect(admin.sim.fault('bias', 2)).rejects.toMatchObject({ status: 400 });
    expect(await admin.sim.faults()).toMatchObject({ stuck: false, stall: false });
  });

  it('qkm sim fault <kind> drives it from the CLI', async () => {
    const cli = (...args: string[]) =>
      run(
        process.execPath,
        [
          '--import',
          'tsx',
          join(repoRoot, 'src/cli/bin.ts'),
          '--url',
          appliance.url,
          '--data',
          join(dir, 'sim'),
          ...args,
        ],
        { cwd: repoRoot, timeout: 30_000 },
      );
    const out = JSON.parse((await cli('sim', 'fault', 'bias', '--fraction', '0.5', '--json')).stdout);
    expect(out).toMatchObject({ bias: 0.5 });
    await waitFor('quarantine', async () => (await quantum())?.state !== 'healthy', 5000);
    expect(JSON.parse((await cli('sim', 'fault', 'clear', '--json')).stdout)).toMatchObject({ bias: 0 });
    await waitFor('recovered', async () => (await quantum())?.state === 'healthy', 30_000);
    await expect(cli('sim', 'fault', 'melt')).rejects.toMatchObject({ code: 2 });
  });

  it('is refused in hardware mode (409 SIMULATOR_ONLY)', async () => {
    const hw = await start('hardware', 'hw');
    try {
      const hwAdmin = new QkmClient({
        url: hw.url,
        token: (await readFile(hw.tokenFiles.admin!, 'utf8')).trim(),
      });
      await expect(hwAdmin.sim.fault('stuck')).rejects.toMatchObject({ status: 409, code: 'SIMULATOR_ONLY' });
      await expect(hwAdmin.sim.faults()).rejects.toMatchObject({ status: 409, code: 'SIMULATOR_ONLY' });
    } finally {
      await hw.close();
    }
  });
});
