import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { type Server, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.js';

/**
 * `qkm start` / `qkm init` refusing to start: a taken port, a missing or invalid config file.
 * Each must fail with a message an operator can act on, and before anything is written.
 */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-cli-appliance-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the CLI with `env` set in process.env for the call (loadConfig reads process.env). */
async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe('qkm start on a port already in use', () => {
  let blocker: Server;
  let port: number;
  beforeAll(async () => {
    blocker = createServer();
    await new Promise<void>((done) => blocker.listen(0, '127.0.0.1', done));
    port = (blocker.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise((done) => blocker.close(done));
  });

  it('fails with a clear message and creates no data dir, KEK, tokens, identity or audit', async () => {
    const data = join(dir, 'taken');
    const r = await runCli('start', '--port', String(port), '--data', data, '--mode', 'simulator');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `qkm: 127.0.0.1:${port} is already in use (another qkm running?); choose another with --port or QKM_PORT. Nothing was written.\n`,
    );
    expect(existsSync(data)).toBe(false);
  });

  it('--json: {error: PORT_IN_USE}', async () => {
    const data = join(dir, 'taken-json');
    const r = await runCli('--json', 'start', '--port', String(port), '--data', data);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stderr)).toMatchObject({ error: 'PORT_IN_USE' });
    expect(existsSync(data)).toBe(false);
  });
});

describe('configuration errors', () => {
  it('QKM_CONFIG naming a file that does not exist fails (it is not silently ignored)', async () => {
    const missing = join(dir, 'no-such-config.json');
    const data = join(dir, 'cfg-missing');
    const r = await withEnv({ QKM_CONFIG: missing }, () => runCli('init', '--data', data));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`qkm: QKM_CONFIG names ${missing}, which does not exist\n`);
    expect(existsSync(data)).toBe(false);
    const json = await withEnv({ QKM_CONFIG: missing }, () =>
      runCli('--json', 'sources', 'test', 'os:urandom'),
    );
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stderr)).toEqual({
      error: 'CONFIG',
      message: `QKM_CONFIG names ${missing}, which does not exist`,
    });
  });

  it('invalid values say which are allowed, not TypeBox or pino internals', async () => {
    const data = join(dir, 'cfg-bad');
    const mode = await runCli('init', '--data', data, '--mode', 'hw');
    expect(mode.code).toBe(1);
    expect(mode.stderr).toBe(
      'qkm: invalid configuration: /mode: must be one of "simulator", "hardware" (got "hw")\n',
    );
    const level = await withEnv({ QKM_LOG_LEVEL: 'loud' }, () => runCli('init', '--data', data));
    expect(level.stderr).toBe(
      'qkm: invalid configuration: /logLevel: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent" (got "loud")\n',
    );
    const file = join(dir, 'bad-store.json');
    await writeFile(file, JSON.stringify({ store: { backend: 'redis' }, entropy: { healthAlpha: 30 } }));
    const store = await withEnv({ QKM_CONFIG: file }, () => runCli('init', '--data', data));
    expect(store.code).toBe(1);
    expect(store.stderr).toContain('/store/backend: must be one of "level", "etcd" (got "redis")');
    expect(store.stderr).toContain('/entropy/healthAlpha: unknown setting; allowed here: maxRequestBytes,');
    for (const r of [mode, level, store]) {
      expect(r.stderr).not.toMatch(/Expected union value|must be equal to constant|custom levels/);
    }
    await writeFile(file, JSON.stringify({ store: { backend: 'etcd', endpoints: [] } }));
    const etcd = await withEnv({ QKM_CONFIG: file }, () => runCli('init', '--data', data));
    expect(etcd.stderr).toContain('/store/endpoints: Expected array length to be greater or equal to 1');
    expect(existsSync(data)).toBe(false);
  });
});
