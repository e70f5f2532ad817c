import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { QkmClient } from '../../src/client/client.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { VERSION } from '../../src/core/version.js';
import { promtoolAvailable, promtoolCheck } from '../helpers/promtool.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A real `/metrics` scrape of a running appliance (simulator mode, over loopback HTTP), after
 * traffic on every kind of route, checked by Prometheus's own `promtool check metrics`.
 */
let dir: string;
let appliance: Appliance;
let client: QkmClient;
let token: string;

const scrape = async () => {
  const r = await fetch(`${appliance.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return r.text();
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-metrics-'));
  appliance = await Appliance.start({
    simulator: simulatedQuantis,
    config: loadConfig({
      env: {},
      overrides: { dataDir: join(dir, 'data'), port: 0, logLevel: 'warn', mode: 'simulator' },
    }),
    logger: createLogger({ level: 'silent' }),
  });
  token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
  client = new QkmClient({ url: appliance.url, token });
  await waitFor('quantum source healthy', async () =>
    (await client.status()).entropy.sources.some((s) => s.kind === 'quantum' && s.state === 'healthy'),
  );
  await client.entropy(64);
  const key = await client.keys.create({ size: 32 });
  await client.keys.take(key.id);
  await fetch(`${appliance.url}/v1/nothing-here`, { headers: { authorization: `Bearer ${token}` } });
});

afterAll(async () => {
  await appliance?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('GET /metrics on a running appliance', () => {
  it('passes promtool check metrics', async (ctx) => {
    if (!promtoolAvailable()) ctx.skip('promtool is not installed (.ci/run installs prometheus)');
    const text = await scrape();
    const { code, output } = await promtoolCheck(text);
    expect(output).toBe('');
    expect(code).toBe(0);
  });

  it('declares no gauge with a counter suffix and no doubled prefix', async () => {
    const text = await scrape();
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => ({ name, type }));
    expect(types.length).toBeGreaterThan(30);
    for (const { name, type } of types) {
      if (type !== 'counter') expect(name, `${name} is a ${type}`).not.toMatch(/_total$/);
      expect(name).not.toMatch(/^qkm_process_process_/);
    }
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^# TYPE qkm_entropy_bytes_served_total counter$/m);
  });

  it('says which build serves it, splits degraded by component, shows both min-entropy figures', async () => {
    const text = await scrape();
    expect(text).toContain(`qkm_build_info{version="${VERSION}",nodejs="${process.version}"} 1`);
    expect(text).toMatch(/^qkm_degraded\{component="entropy"\} 0$/m);
    expect(text).toMatch(/^qkm_degraded\{component="qkd"\} 0$/m);
    const status = await client.status();
    for (const s of status.entropy.sources) {
      expect(text).toContain(
        `qkm_entropy_source_min_entropy_claimed{source="${s.id}"} ${s.claimedMinEntropy}`,
      );
      expect(text).toMatch(
        new RegExp(`^qkm_entropy_source_min_entropy_estimated\\{source="${s.id}"\\} \\d`, 'm'),
      );
    }
  });

  it('does not count the node identity seed as a key: one created and taken leaves none active', async () => {
    const text = await scrape();
    expect(text).toMatch(/^qkm_keys\{state="active"\} 0$/m);
    expect(text).toMatch(/^qkm_keys\{state="taken"\} 1$/m);
    expect((await client.status()).keys).toEqual({ active: 0, taken: 1, expired: 0 });
  });
});
