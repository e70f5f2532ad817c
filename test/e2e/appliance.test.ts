import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ProvenanceSchema } from '../../src/api/schemas.js';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis, type SimulatedAppliance } from '../../src/cli/simulator.js';
import { type QkmApiError, QkmClient } from '../../src/client/client.js';
import { loadConfig } from '../../src/core/config.js';
import { ERROR_CATALOGUE } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The whole appliance over real HTTP on loopback, in simulator mode: the simulated Quantis
 * device runs through the real Quantis driver, health tests, conditioning and DRBG.
 */

const repoRoot = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);
const logLines: string[] = [];
let dir: string;
let appliance: SimulatedAppliance;
let client: QkmClient;
let admin: QkmClient;

function config() {
  return loadConfig({
    env: {},
    overrides: { dataDir: join(dir, 'data'), port: 0, logLevel: 'debug', mode: 'simulator' },
  });
}

async function startAppliance(): Promise<SimulatedAppliance> {
  const logger = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk, _enc, cb) {
        logLines.push(String(chunk));
        cb();
      },
    }),
  });
  return Appliance.start({
    simulator: simulatedQuantis,
    config: config(),
    logger,
    entropyTuning: { monitor: { backoff: { initialMs: 50, maxMs: 400, factor: 2 }, sentinelIntervalMs: 50 } },
  });
}

const quantisState = async () =>
  (await client.status()).entropy.sources.find((s) => s.kind === 'quantum')?.state;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-e2e-'));
  appliance = await startAppliance();
  const token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
  const adminToken = (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim();
  client = new QkmClient({ url: appliance.url, token });
  admin = new QkmClient({ url: appliance.url, token: adminToken });
  await waitFor('quantum source healthy', async () => (await quantisState()) === 'healthy');
});

afterAll(async () => {
  await appliance?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('first start', () => {
  it('creates the data dir, KEK and token files with private modes and listens on loopback', async () => {
    expect(appliance.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    for (const f of [join(dir, 'data', 'kek'), appliance.tokenFiles.default!, appliance.tokenFiles.admin!]) {
      expect((await stat(f)).mode & 0o777, f).toBe(0o600);
    }
    expect((await stat(join(dir, 'data'))).mode & 0o777).toBe(0o700);
  });
});

describe('entropy over HTTP', () => {
  it('serves quantum-backed bytes with provenance', async () => {
    const r = await client.entropy(32);
    expect(r.data).toHaveLength(32);
    expect(r.provenance.degraded).toBe(false);
    expect(r.provenance.seedOrigin).toBe('quantum');
    expect(r.provenance.sources[0]).toMatchObject({
      driver: 'quantis-usb',
      kind: 'quantum',
      simulated: true,
      state: 'healthy',
    });
    expect(r.provenance.drbg.name).toBe('CTR_DRBG(AES-256, df)');
    expect(r.provenance.entropyCredited).toBeGreaterThanOrEqual(256);
  });

  it('serves raw octets with provenance headers', async () => {
    const token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
    const res = await fetch(`${appliance.url}/v1/entropy?bytes=100`, {
      headers: { authorization: `Bearer ${token}`, accept: 'application/octet-stream' },
    });
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBe(100);
    expect(res.headers.get('x-qkm-degraded')).toBe('false');
  });

  it('answers /v1/entropy JSON in exactly the 200 schema, one distinct body per request', async () => {
    const token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
    const schema = Type.Object(
      { data: Type.String(), bytes: Type.Integer(), provenance: ProvenanceSchema },
      { additionalProperties: false },
    );
    const bodies = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await fetch(`${appliance.url}/v1/entropy?bytes=48`, {
          headers: { authorization: `Bearer ${token}` },
        });
        expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
        return (await res.json()) as { data: string; bytes: number; provenance: { at: string } };
      }),
    );
    for (const body of bodies) {
      expect(Value.Check(schema, body)).toBe(true);
      // Nothing beyond the schema, at any depth: cleaning removes no field.
      expect(Value.Clean(schema, structuredClone(body))).toEqual(body);
      expect(Buffer.from(body.data, 'base64')).toHaveLength(48);
      expect(body.bytes).toBe(48);
    }
    // Requests in one millisecond share a provenance; their bytes are never shared.
    expect(new Set(bodies.map((b) => b.data)).size).toBe(bodies.length);
  });

  it('rejects a rebinding Host header over a real socket', async () => {
    const port = new URL(appliance.url).port;
    const status = await new Promise<number>((ok, fail) => {
      const req = httpRequest(
        { host: '127.0.0.1', port, path: '/v1/health', headers: { host: 'attacker.example' } },
        (res) => {
          res.resume();
          ok(res.statusCode ?? 0);
        },
      );
      req.on('error', fail);
      req.end();
    });
    expect(status).toBe(421);
  });
});

describe('fault injection on the simulated Quantis', () => {
  const faults: Array<
    [string, Parameters<NonNullable<SimulatedAppliance['simulator']>['device']['setFaults']>[0]]
  > = [
    ['stuck output', { stuck: true }],
    ['bias', { bias: 0.5 }],
    ['stall', { stall: true }],
    ['short packets', { shortPacket: true }],
    ['status not ready', { statusNotReady: true }],
  ];
  for (const [name, fault] of faults) {
    it(`${name}: quarantines the source, flags output degraded, refuses require=quantum, then recovers`, async () => {
      const device = appliance.simulator!.device;
      device.setFaults(fault);
      try {
        await waitFor('source to leave healthy', async () =>
          (await quantisState()) !== 'healthy' ? true : undefined,
        );
        const r = await client.entropy(16);
        expect(r.provenance.degraded).toBe(true);
        expect(r.provenance.seedOrigin).toBe('os');
        expect(r.provenance.reason).toMatch(/quantis-usb/);
        await expect(client.entropy(16, { require: 'quantum' })).rejects.toMatchObject({
          status: 503,
          code: 'QUANTUM_ENTROPY_UNAVAILABLE',
        });
        const s = await client.status();
        expect(s.degraded).toBe(true);
        const metrics = await (
          await fetch(`${appliance.url}/metrics`, {
            headers: {
              authorization: `Bearer ${(await readFile(appliance.tokenFiles.default!, 'utf8')).trim()}`,
            },
          })
        ).text();
        expect(metrics).toContain('qkm_degraded{component="entropy"} 1');
      } finally {
        device.clearFaults();
      }
      await waitFor('recovery', async () => ((await quantisState()) === 'healthy' ? true : undefined));
      await waitFor('non-degraded output', async () =>
        (await client.entropy(16)).provenance.degraded ? undefined : true,
      );
    });
  }

  it('unplug: the source detaches and output is degraded; replug: a fresh start-up test, then quantum again', async () => {
    const device = appliance.simulator!.device;
    device.unplug();
    await waitFor('detach', async () => ((await quantisState()) === 'detached' ? true : undefined));
    expect((await client.entropy(8)).provenance.degraded).toBe(true);
    device.replug();
    await waitFor('recovery', async () => ((await quantisState()) === 'healthy' ? true : undefined));
    await waitFor('non-degraded output', async () =>
      (await client.entropy(16)).provenance.degraded ? undefined : true,
    );
  });
});

describe('keys over HTTP', () => {
  it('creates, lists and takes a key exactly once, concurrently', async () => {
    const meta = await client.keys.create({ size: 32, label: 'e2e' });
    expect(meta.provenance.degraded).toBe(false);
    expect((await client.keys.list()).map((k) => k.id)).toContain(meta.id);
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => client.keys.take(meta.id)));
    const ok = results.filter((r) => r.status === 'fulfilled');
    expect(ok).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as QkmApiError).code).toBe('KEY_ALREADY_TAKEN');
    }
  });

  it('seals the audit log in the background, and the status says how far it is sealed', async () => {
    const before = (await client.status()).audit;
    // 64 audited events (key creations) are enough for a background seal.
    for (let i = 0; i < 64; i++) await client.keys.create({ size: 16 });
    const deadline = Date.now() + 10_000;
    let audit = (await client.status()).audit;
    while (audit.sealedThrough <= before.sealedThrough && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      audit = (await client.status()).audit;
    }
    expect(audit.records).toBeGreaterThanOrEqual(before.records + 64);
    expect(audit.sealedThrough).toBeGreaterThan(before.sealedThrough);
    // Signed by the default PQC backend; the status names it and who does the seeded steps.
    expect((await client.status()).pqc).toEqual({
      backend: 'liboqs-wasm',
      signature: 'liboqs-wasm',
      kemDecaps: 'liboqs-wasm',
      kemEncaps: 'noble (caller randomness)',
      keygen: 'noble (from seed)',
      legacyVerified: 0,
    });
  });

  it("does not let one agent take another agent's key", async () => {
    const { token } = await admin.agents.add('other-agent');
    const other = new QkmClient({ url: appliance.url, token });
    const meta = await client.keys.create({ size: 16 });
    await expect(other.keys.take(meta.id)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    expect((await client.keys.take(meta.id)).key).toHaveLength(16);
  });
});

describe('the qkm CLI against the running appliance', () => {
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
        join(dir, 'data'),
        ...args,
      ],
      {
        cwd: repoRoot,
        timeout: 30_000,
      },
    );

  it('entropy --json, status --json, keys create|list|take and agent add|list|revoke', async () => {
    const e = JSON.parse((await cli('entropy', '--bytes', '32', '--json')).stdout);
    expect(Buffer.from(e.data, 'base64')).toHaveLength(32);
    expect(e.provenance).toHaveProperty('degraded');
    const s = JSON.parse((await cli('status', '--json')).stdout);
    expect(s.entropy.sources.length).toBeGreaterThan(0);
    expect(s.sessions).toMatchObject({ refused: 0, rejected: {}, abandoned: {} });
    expect((await cli('status')).stdout).toMatch(
      /^sessions: initiated \d.*; accepted .*; refused 0; rejected 0; abandoned 0$/m,
    );
    const k = JSON.parse((await cli('keys', 'create', '--size', '24', '--json')).stdout);
    expect(
      JSON.parse((await cli('keys', 'list', '--json')).stdout).map((x: { id: string }) => x.id),
    ).toContain(k.id);
    const taken = JSON.parse((await cli('keys', 'take', k.id, '--json')).stdout);
    expect(Buffer.from(taken.key, 'base64')).toHaveLength(24);
    await expect(cli('keys', 'take', k.id)).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('KEY_ALREADY_TAKEN'),
    });
    const added = JSON.parse((await cli('agent', 'add', 'cli-agent', '--json')).stdout);
    expect(added.token).toMatch(/^qkm_/);
    expect((await cli('agent', 'list')).stdout).toContain('cli-agent');
    await cli('agent', 'revoke', 'cli-agent');
    await expect(new QkmClient({ url: appliance.url, token: added.token }).entropy(1)).rejects.toMatchObject({
      status: 401,
    });
    // Eleven CLI processes, each a cold Node + tsx start: seconds apiece on a loaded 2-core
    // runner. A generous bound, not a timing goal (start-up time is the CLI's bench concern).
  }, 150_000);
});

describe('bad input over real HTTP', () => {
  it('answers every route with < 500 and a catalogued error for random junk (fuzz)', async () => {
    const adminToken = (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim();
    const routes = fc.constantFrom(
      ['POST', '/v1/sessions'],
      ['POST', '/v1/sessions/accept'],
      ['POST', '/v1/sessions/abc/confirm'],
      ['POST', '/v1/peers'],
      ['DELETE', '/v1/peers/xyz'],
      ['GET', '/v1/policy/xyz'],
      ['POST', '/v1/keys'],
      ['POST', '/v1/agents'],
      ['GET', '/v1/audit'],
      ['GET', '/v1/entropy'],
    );
    const bodies = fc.oneof(
      fc.json(),
      fc.string(),
      fc.record({ handshake: fc.string() }),
      fc.record({ peer: fc.string(), min_posture: fc.string(), context: fc.string() }),
      fc.record({ bundle: fc.jsonValue() }),
    );
    const queries = fc.oneof(
      fc.constant(''),
      fc.webQueryParameters().map((q) => `?${q}`),
    );
    await fc.assert(
      fc.asyncProperty(routes, bodies, queries, async ([method, path], body, query) => {
        const res = await fetch(`${appliance.url}${path}${query}`, {
          method,
          headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
          ...(method === 'GET' ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
        });
        expect(res.status, `${method} ${path}`).toBeLessThan(500);
        if (res.status >= 400) {
          const j = (await res.json()) as { error: string; message: string };
          expect(Object.keys(ERROR_CATALOGUE)).toContain(j.error);
          expect(typeof j.message).toBe('string');
        } else {
          await res.arrayBuffer();
        }
      }),
      { numRuns: 150 },
    );
    // Still serving after the barrage.
    expect((await client.health()).status).toBe('ok');
  });
});

describe('restart', () => {
  it('keeps agents, keys and their states across a restart', async () => {
    const live = await client.keys.create({ size: 32 });
    const gone = await client.keys.create({ size: 32 });
    await client.keys.take(gone.id);
    await appliance.close();
    appliance = await startAppliance();
    client = new QkmClient({
      url: appliance.url,
      token: (await readFile(appliance.tokenFiles.default!, 'utf8')).trim(),
    });
    await expect(client.keys.take(gone.id)).rejects.toMatchObject({ code: 'KEY_ALREADY_TAKEN' });
    expect((await client.keys.take(live.id)).key).toHaveLength(32);
  });
});

describe('secrets stay out of the log', () => {
  it('no token, entropy or key bytes appear in any log line of the run', async () => {
    const e = await client.entropy(48);
    const k = await client.keys.create({ size: 32 });
    const taken = await client.keys.take(k.id);
    const log = logLines.join('');
    expect(log).toContain('request completed');
    const secrets = [
      (await readFile(appliance.tokenFiles.default!, 'utf8')).trim(),
      (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim(),
    ];
    for (const bytes of [e.data, taken.key]) {
      const b = Buffer.from(bytes);
      secrets.push(b.toString('hex'), b.toString('base64'), b.toString('base64url'));
    }
    for (const s of secrets) expect(log).not.toContain(s);
  });
});
