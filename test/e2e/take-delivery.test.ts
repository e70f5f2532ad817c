import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { QkmClient } from '../../src/client/client.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';

/**
 * Takes whose answer can be lost, over real HTTP on loopback: a take is never committed for a
 * connection that is already gone, and a take with an Idempotency-Key can be retried.
 */

let dir: string;
let appliance: Appliance;
let client: QkmClient;
let token: string;
let host: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-take-'));
  appliance = await Appliance.start({
    simulator: simulatedQuantis,
    config: loadConfig({
      env: {},
      overrides: { dataDir: join(dir, 'data'), port: 0, logLevel: 'silent', mode: 'simulator' },
    }),
    logger: createLogger({ level: 'silent' }),
  });
  token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
  client = new QkmClient({ url: appliance.url, token });
  host = new URL(appliance.url).host;
});

afterAll(async () => {
  await appliance?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Writes `raw` on one fresh connection and collects everything until the server closes it. */
function rawExchange(raw: string): Promise<string> {
  const { hostname, port } = new URL(appliance.url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => socket.end(raw));
    let out = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      out += d;
    });
    socket.on('error', (err) => (out ? resolve(out) : reject(err)));
    socket.on('close', () => resolve(out));
  });
}

const takeRequest = (id: string, extra = '') =>
  `POST /v1/keys/${id}/take HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\n${extra}Content-Length: 0\r\n\r\n`;

async function takeOnce(id: string, idempotencyKey?: string) {
  return fetch(`${appliance.url}/v1/keys/${id}/take`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
    },
  });
}

describe('takes whose answer cannot be written', () => {
  it('a malformed request pipelined behind a take does not destroy the key', async () => {
    for (let i = 0; i < 3; i++) {
      const meta = await client.keys.create({ size: 32 });
      const out = await rawExchange(`${takeRequest(meta.id)}GARBAGE \u0001\r\n\r\n`);
      // Node's parser rejects the second request and closes the connection, answering with a
      // catalogue error; the take in front of it must not have been committed.
      expect(out).toMatch(/^HTTP\/1\.1 400/);
      expect(out).toContain('"error":"BAD_REQUEST"');
      const [listed] = (await client.keys.list({ state: 'active' })).filter((k) => k.id === meta.id);
      expect(listed?.state).toBe('active');
      // And the key is still there for a proper take.
      const taken = await client.keys.take(meta.id);
      expect(taken.key).toHaveLength(32);
    }
  });

  it('a take for a connection that closed before the answer is not committed', async () => {
    const meta = await client.keys.create({ size: 32 });
    const { hostname, port } = new URL(appliance.url);
    await new Promise<void>((resolve) => {
      const socket = connect({ host: hostname, port: Number(port) }, () => {
        socket.write(takeRequest(meta.id));
        socket.destroy();
        resolve();
      });
    });
    await new Promise((r) => setTimeout(r, 200));
    const still = (await client.keys.list({ state: 'active' })).some((k) => k.id === meta.id);
    // Either the server saw the close before committing (key active) or it had already
    // committed (then the take is audited); it must never be both gone and unheld.
    if (!still) {
      const rec = (await appliance.audit.records()).find(
        (r) => r.type === 'key.taken' && r.details.key_id === meta.id,
      );
      expect(rec).toBeDefined();
    } else {
      expect((await client.keys.take(meta.id)).key).toHaveLength(32);
    }
  });
});

describe('idempotent take (Idempotency-Key)', () => {
  it('a retry with the same key gets the same bytes once, then "delivered"', async () => {
    const meta = await client.keys.create({ size: 32 });
    const first = await takeOnce(meta.id, 'req-1');
    expect(first.status).toBe(200);
    const a = (await first.json()) as { key: string; redelivered?: boolean };
    expect(a.redelivered).toBeUndefined();
    const retry = await takeOnce(meta.id, 'req-1');
    expect(retry.status).toBe(200);
    const b = (await retry.json()) as { key: string; redelivered?: boolean; state: string };
    expect(b).toMatchObject({ key: a.key, redelivered: true, state: 'taken' });
    const third = await takeOnce(meta.id, 'req-1');
    expect(third.status).toBe(410);
    expect(await third.json()).toMatchObject({ error: 'KEY_ALREADY_TAKEN', details: { delivered: true } });
    // Another request id, or none, never gets the bytes.
    expect((await takeOnce(meta.id, 'req-2')).status).toBe(410);
    expect((await takeOnce(meta.id)).status).toBe(410);
    const types = (await appliance.audit.records())
      .filter((r) => r.details.key_id === meta.id)
      .map((r) => r.type);
    expect(types).toEqual(['key.created', 'key.taken', 'key.redelivered']);
  });

  it("another agent's retry with the same Idempotency-Key gets nothing", async () => {
    const meta = await client.keys.create({ size: 32 });
    expect((await takeOnce(meta.id, 'shared')).status).toBe(200);
    const adminToken = (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim();
    const res = await fetch(`${appliance.url}/v1/keys/${meta.id}/take`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'idempotency-key': 'shared' },
    });
    // Not the owner: the key is not even confirmed to exist.
    expect(res.status).toBe(404);
  });

  it('a take whose answer was lost (connection dropped after the request) can be retried', async () => {
    const meta = await client.keys.create({ size: 32 });
    const { hostname, port } = new URL(appliance.url);
    // Send the take and vanish without reading the answer.
    await new Promise<void>((resolve) => {
      const socket = connect({ host: hostname, port: Number(port) }, () => {
        socket.end(takeRequest(meta.id, 'Idempotency-Key: lost-1\r\n'));
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 100);
      });
    });
    const retry = await takeOnce(meta.id, 'lost-1');
    expect(retry.status).toBe(200);
    const body = (await retry.json()) as { key: string };
    expect(Buffer.from(body.key, 'base64')).toHaveLength(32);
  });

  it('rejects a malformed Idempotency-Key', async () => {
    const meta = await client.keys.create({ size: 32 });
    const res = await takeOnce(meta.id, 'has space');
    expect(res.status).toBe(400);
    expect((await res.json()) as { error: string }).toMatchObject({ error: 'BAD_REQUEST' });
  });
});
