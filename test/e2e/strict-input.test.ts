import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { QkmClient } from '../../src/client/client.js';
import { loadConfig } from '../../src/core/config.js';
import { ERROR_CATALOGUE } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';

/** Input strictness and connection hygiene, over real HTTP on loopback. */

let dir: string;
let appliance: Appliance;
let token: string;
let adminToken: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-strict-'));
  const base = loadConfig({ env: {}, overrides: { mode: 'simulator' } });
  appliance = await Appliance.start({
    simulator: simulatedQuantis,
    config: loadConfig({
      env: {},
      overrides: {
        dataDir: join(dir, 'data'),
        port: 0,
        logLevel: 'silent',
        mode: 'simulator',
        api: { ...base.api, requestTimeoutMs: 500, badTokensPerMinute: 20 },
      },
    }),
    logger: createLogger({ level: 'silent' }),
  });
  token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
  adminToken = (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim();
});

afterAll(async () => {
  await appliance?.close();
  await rm(dir, { recursive: true, force: true });
});

const get = (path: string, t = token) =>
  fetch(`${appliance.url}${path}`, { headers: { authorization: `Bearer ${t}` } });
const post = (path: string, body: string, t = token) =>
  fetch(`${appliance.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
    body,
  });

describe('strict numbers', () => {
  it.each(['0x20', '1e3', '65536.0', '+32', ' 32', '032', '32abc', ''])(
    'GET /v1/entropy?bytes=%j → 400',
    async (v) => {
      const res = await get(`/v1/entropy?bytes=${encodeURIComponent(v)}`);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toBe('BAD_REQUEST');
    },
  );

  it('a repeated numeric parameter is refused; a plain decimal is served', async () => {
    expect((await get('/v1/entropy?bytes=16&bytes=32')).status).toBe(400);
    expect((await get('/v1/entropy?bytes=32')).status).toBe(200);
    expect((await get('/v1/keys?limit=1e1')).status).toBe(400);
  });

  it.each([
    '{"size":"32"}',
    '{"size":[32]}',
    '{"size":32.0e0,"label":5}',
    '{"label":["x"]}',
    '{"require":["quantum"]}',
  ])('POST /v1/keys %s → 400', async (body) => {
    const res = await post('/v1/keys', body);
    expect(res.status).toBe(400);
    expect(Object.keys(ERROR_CATALOGUE)).toContain(((await res.json()) as { error: string }).error);
  });

  it('a well-typed body is still accepted', async () => {
    expect((await post('/v1/keys', '{"size":32,"label":"db password ✓"}')).status).toBe(201);
  });
});

describe('labels', () => {
  it.each([
    ['NUL', 'a\u0000b'],
    ['ANSI escape', '\u001b[2Jgotcha'],
    ['newline', 'two\nlines'],
    ['DEL', 'x\u007f'],
    ['C1 control', 'x\u009b31m'],
    ['lone high surrogate', 'x\ud800'],
    ['lone low surrogate', '\udc00x'],
  ])('rejects a label with %s', async (_name, label) => {
    const res = await post('/v1/keys', JSON.stringify({ size: 32, label }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('INVALID_PARAMETER');
  });

  it('accepts astral characters (a surrogate pair) and ordinary text', async () => {
    expect((await post('/v1/keys', JSON.stringify({ size: 32, label: 'key 🔑 für Ärzte' }))).status).toBe(
      201,
    );
  });
});

describe('list cursors of other agents', () => {
  it("`after=<other agent's key>` answers exactly like an unknown id", async () => {
    const mine = new QkmClient({ url: appliance.url, token });
    await mine.keys.create({ size: 32 });
    const a = await appliance.agents.add('other-agent', ['keys']);
    const other = new QkmClient({ url: appliance.url, token: a.token });
    const theirs = await other.keys.create({ size: 32 });
    const unknown = '00000000-0000-4000-8000-000000000000';
    const r1 = await get(`/v1/keys?after=${theirs.id}`);
    const r2 = await get(`/v1/keys?after=${unknown}`);
    expect(r1.status).toBe(r2.status);
    const b1 = (await r1.json()) as { error: string; message: string };
    const b2 = (await r2.json()) as { error: string; message: string };
    expect(b1.error).toBe(b2.error);
    expect(b1.message.replace(theirs.id, 'ID')).toBe(b2.message.replace(unknown, 'ID'));
    // The owner (and admin) can page from it.
    expect((await get(`/v1/keys?after=${theirs.id}`, a.token)).status).toBe(200);
    expect((await get(`/v1/keys?after=${theirs.id}`, adminToken)).status).toBe(200);
  });
});

/** Raw bytes on one connection; resolves with what came back when the server closed it. */
function raw(data: string, keepOpenMs = 0): Promise<{ out: string; ms: number }> {
  const { hostname, port } = new URL(appliance.url);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => {
      socket.write(data);
      if (keepOpenMs === 0) socket.end();
    });
    let out = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      out += d;
    });
    socket.on('error', (e) => (out ? undefined : reject(e)));
    socket.on('close', () => resolve({ out, ms: performance.now() - t0 }));
    if (keepOpenMs > 0) setTimeout(() => socket.destroy(), keepOpenMs).unref();
  });
}

describe('connections', () => {
  it('an authenticated request with an unfinished body is answered 408 REQUEST_TIMEOUT and closed', async () => {
    const host = new URL(appliance.url).host;
    const { out, ms } = await raw(
      `POST /v1/keys HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"size":`,
      10_000,
    );
    expect(out).toMatch(/^HTTP\/1\.1 408/);
    expect(out).toContain('"error":"REQUEST_TIMEOUT"');
    expect(ms).toBeLessThan(5000);
  });

  it("Node's own parser errors answer catalogue codes", async () => {
    const bad = await raw('NOT HTTP AT ALL\r\n\r\n');
    expect(bad.out).toMatch(/^HTTP\/1\.1 400/);
    expect(bad.out).toContain('"error":"BAD_REQUEST"');
    const host = new URL(appliance.url).host;
    const huge = await raw(
      `GET /v1/health HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(huge.out).toMatch(/^HTTP\/1\.1 431/);
    expect(huge.out).toContain('"error":"HEADERS_TOO_LARGE"');
  });

  // Last: it locks this test's loopback address out for a minute.
  it('bad tokens are rate-limited per client address, failing closed', async () => {
    let limitedAt = -1;
    for (let i = 0; i < 40; i++) {
      const res = await get('/v1/status', `bad-token-${i}`);
      if (res.status === 429) {
        limitedAt = i;
        expect(((await res.json()) as { error: string }).error).toBe('RATE_LIMITED');
        expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
        break;
      }
      expect(res.status).toBe(401);
    }
    expect(limitedAt).toBe(20);
    // Fail closed: while the address is over the limit, even a valid token gets no answer.
    expect((await get('/v1/status')).status).toBe(429);
  });
});
