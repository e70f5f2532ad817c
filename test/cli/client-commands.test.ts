import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis, type SimulatedAppliance } from '../../src/cli/simulator.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import type { SourceListing } from '../../src/entropy/source-check.js';
import { waitFor } from '../helpers/wait.js';
import { runCli } from './run-cli.js';

/**
 * The client commands against a real appliance on loopback (simulator mode): what they write
 * where, their exit codes, and their errors in `--json` mode.
 */
let dir: string;
let appliance: SimulatedAppliance;
let g: string[];

const quantisHealthy = async () =>
  (await appliance.status()).entropy.sources.find((s) => s.kind === 'quantum')?.state === 'healthy';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-cli-client-'));
  appliance = await Appliance.start({
    simulator: simulatedQuantis,
    config: loadConfig({
      env: {},
      overrides: { dataDir: join(dir, 'data'), port: 0, mode: 'simulator', logLevel: 'warn' },
    }),
    logger: createLogger({ level: 'warn', destination: new Writable({ write: (_c, _e, cb) => cb() }) }),
    entropyTuning: { monitor: { backoff: { initialMs: 50, maxMs: 200, factor: 2 }, sentinelIntervalMs: 50 } },
  });
  g = ['--url', appliance.url, '--data', join(dir, 'data')];
  await waitFor('quantum source healthy', quantisHealthy);
});

afterAll(async () => {
  await appliance?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('qkm entropy', () => {
  it('--hex: stdout is exactly the hex (usable in $(…)); where it came from goes to stderr', async () => {
    const r = await runCli(...g, 'entropy', '--bytes', '32', '--hex');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    expect(r.stderr).toMatch(/^# 32 bytes from .+, seed quantum\n$/);
  });

  it('base64 likewise; --quiet leaves stderr empty', async () => {
    const r = await runCli(...g, '--quiet', 'entropy', '--bytes', '16');
    expect(r.code).toBe(0);
    expect(Buffer.from(r.stdout.trimEnd(), 'base64')).toHaveLength(16);
    expect(r.stdout).toMatch(/^[A-Za-z0-9+/]+=*\n$/);
    expect(r.stderr).toBe('');
  });
});

describe('--json errors', () => {
  const jsonError = (stderr: string) => JSON.parse(stderr) as { error: string; message: string };

  it('an API refusal is {error, message} on stderr with the API code, exit 1, stdout empty', async () => {
    const r = await runCli(...g, '--json', 'keys', 'take', '00000000-0000-4000-8000-000000000000');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(jsonError(r.stderr)).toEqual({ error: 'KEY_NOT_FOUND', message: expect.any(String) });
  });

  it('a usage error is {error: USAGE}, exit 2, without commander text or help', async () => {
    const r = await runCli(...g, '--json', 'entropy');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(jsonError(r.stderr)).toEqual({
      error: 'USAGE',
      message: "required option '--bytes <n>' not specified",
    });
    const bad = await runCli(...g, 'entropy', '--json', '--bytes', 'x');
    expect(bad.code).toBe(2);
    expect(jsonError(bad.stderr)).toEqual({ error: 'USAGE', message: '--bytes must be an integer' });
  });

  it('an unreachable appliance is {error: UNREACHABLE}, exit 4', async () => {
    const r = await runCli('--url', 'http://127.0.0.1:9', '--token', 'x', '--json', 'status');
    expect(r.code).toBe(4);
    expect(jsonError(r.stderr)).toEqual({
      error: 'UNREACHABLE',
      message: expect.stringContaining('127.0.0.1:9'),
    });
  });

  it('a CLI-side failure (no token) is {error: FAILED}, exit 1', async () => {
    const r = await runCli('--url', appliance.url, '--data', join(dir, 'nowhere'), '--json', 'status');
    expect(r.code).toBe(1);
    expect(jsonError(r.stderr)).toEqual({ error: 'FAILED', message: expect.stringContaining('no token') });
  });
});

describe('API validation messages name the allowed values', () => {
  it('a scope outside the list: 400 BAD_REQUEST naming every scope, no ajv wording', async () => {
    const r = await runCli(...g, '--json', 'agent', 'add', 'x', '--scopes', 'entropy,bogus');
    expect(r.code).toBe(1);
    const e = JSON.parse(r.stderr) as { error: string; message: string };
    expect(e).toEqual({
      error: 'BAD_REQUEST',
      message: 'body/scopes/1 must be one of "entropy", "keys", "sessions", "admin"',
    });
  });

  it('over HTTP: unknown properties and literal mismatches, still 4xx {error, message}', async () => {
    const { readFile } = await import('node:fs/promises');
    const token = (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim();
    const post = (body: unknown) =>
      fetch(`${appliance.url}/v1/agents`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const extra = await post({ name: 'y', colour: 'red' });
    expect(extra.status).toBe(400);
    expect(await extra.json()).toEqual({
      error: 'BAD_REQUEST',
      message: 'body has an unknown property "colour"',
    });
    const missing = await post({});
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual({ error: 'BAD_REQUEST', message: 'body needs the property "name"' });
    const entropy = await fetch(`${appliance.url}/v1/entropy?bytes=32&require=bogus`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(entropy.status).toBe(400);
    expect(await entropy.json()).toEqual({
      error: 'BAD_REQUEST',
      message: 'querystring/require must be one of "quantum", "any"',
    });
  });
});

describe('qkm status', () => {
  it('shows the simulated source under the id `qkm sources list --simulated` prints', async () => {
    const status = await runCli(...g, '--json', 'status');
    expect(status.code).toBe(0);
    const simulated = (
      JSON.parse(status.stdout) as { entropy: { sources: Array<{ id: string; simulated: boolean }> } }
    ).entropy.sources
      .filter((s) => s.simulated)
      .map((s) => s.id);
    expect(simulated).toEqual(['quantis-usb:SIM00001']);
    const list = await runCli('--json', 'sources', 'list', '--simulated');
    expect(list.code).toBe(0);
    const listed = (JSON.parse(list.stdout) as SourceListing).sources
      .filter((s) => s.simulated)
      .map((s) => s.id);
    expect(listed).toEqual(simulated);
  });

  it('exits 0 when healthy and 3 when degraded (the reasons still printed), 4 when unreachable', async () => {
    const healthy = await runCli(...g, 'status');
    expect(healthy.code).toBe(0);
    expect(healthy.stdout).toContain('not degraded');

    appliance.simulator!.device.unplug();
    try {
      await waitFor('degraded', async () => (await appliance.status()).degraded);
      const degraded = await runCli(...g, 'status');
      expect(degraded.code).toBe(3);
      expect(degraded.stdout).toMatch(/^DEGRADED: /m);
      const json = await runCli(...g, '--json', 'status');
      expect(json.code).toBe(3);
      expect(JSON.parse(json.stdout)).toMatchObject({ degraded: true });
    } finally {
      appliance.simulator!.device.replug();
      await waitFor('quantum source healthy again', quantisHealthy);
    }

    const down = await runCli('--url', 'http://127.0.0.1:9', '--token', 'x', 'status');
    expect(down.code).toBe(4);
    expect(down.stderr).toMatch(/^qkm: cannot reach qkm at http:\/\/127\.0\.0\.1:9/);
  });
});
