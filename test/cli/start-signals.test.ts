import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { mallocWarning } from '../../src/core/malloc.js';
import { repoRoot } from './run-cli.js';

/**
 * `qkm start` as a process: SIGHUP stops it cleanly, the audit log sealed, like SIGTERM — the
 * next start finds no unsealed tail left behind.
 */
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-signals-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('qkm start and signals', () => {
  it('SIGHUP: exits 0 after sealing the audit log', async () => {
    const dataDir = join(dir, 'data');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/bin.ts', 'start', '--json', '--port', '0', '--mode', 'simulator'],
      {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, QKM_DATA: dataDir, QKM_LOG_LEVEL: 'warn' },
      },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.once('exit', (code, signal) => done({ code, signal })),
    );
    // --json prints one pretty-printed object once listening.
    const info = await new Promise<{ url: string; tokenFile: string; warnings?: string[] }>((done, fail) => {
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (out.trimEnd().endsWith('}')) done(JSON.parse(out));
      });
      exited.then(({ code }) => fail(new Error(`qkm start exited (${code}) early: ${stderr}`)));
    });
    // Launched without the allocator setting qkm.service sets (unless the test runner has it):
    // the start-up output says so, in the JSON too (#16).
    const malloc = mallocWarning({ ...process.env });
    expect(info.warnings ?? []).toEqual(malloc ? [malloc] : []);
    const token = (await readFile(info.tokenFile, 'utf8')).trim();
    // A key created and taken: audited records that only a seal at stop can cover.
    const headers = { authorization: `Bearer ${token}` };
    const key = (await (await fetch(`${info.url}/v1/keys`, { method: 'POST', headers })).json()) as {
      id: string;
    };
    expect((await fetch(`${info.url}/v1/keys/${key.id}/take`, { method: 'POST', headers })).status).toBe(200);

    child.kill('SIGHUP');
    expect(await exited).toEqual({ code: 0, signal: null });

    const again = await Appliance.start({
      simulator: simulatedQuantis,
      config: loadConfig({ env: {}, overrides: { dataDir, port: 0, mode: 'simulator' } }),
      logger: createLogger({ level: 'silent' }),
    });
    try {
      const audit = (await again.status()).audit;
      expect(audit.unsealedTail).toBeUndefined();
      expect(audit.sealedThrough).toBeGreaterThanOrEqual(3);
    } finally {
      await again.close();
    }
  }, 30_000);
});
