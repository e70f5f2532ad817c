import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isQkmError } from '../../src/core/errors.js';
import { loadOrCreateKek } from '../../src/keys/kek.js';
import { openLevelBackend } from '../../src/store/level.js';
import { newKey, tempDir } from './helpers.js';

const TAKE_LOOP = resolve(import.meta.dirname, 'fixtures/take-loop.ts');
const PUT_LOOP = resolve(import.meta.dirname, 'fixtures/put-loop.ts');
const KEYS = 400;

/**
 * Runs the take loop in a child process and SIGKILLs it once it has printed `killAfter` ids.
 * The child runs under `node --import tsx` rather than `npx tsx`: the tsx CLI runs the script in
 * a grandchild, which a SIGKILL to the CLI would leave running (and holding the LevelDB lock).
 */
function runAndKill(
  fixture: string,
  dataDir: string,
  killAfter: number,
): Promise<{ printed: string[]; finished: boolean }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, dataDir], {
      cwd: resolve(import.meta.dirname, '../..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const printed: string[] = [];
    let finished = false;
    let buffer = '';
    let stderr = '';
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    guard.unref();
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffer += chunk;
      let nl = buffer.indexOf('\n');
      while (nl >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const [verb, id] = line.split(' ');
        if ((verb === 'taken' || verb === 'put') && id) printed.push(id);
        if (line === 'done') finished = true;
        nl = buffer.indexOf('\n');
      }
      if (printed.length >= killAfter && child.exitCode === null) child.kill('SIGKILL');
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL' && code !== 0) reject(new Error(`child failed (${code}): ${stderr}`));
      else resolvePromise({ printed, finished });
    });
  });
}

describe('crash safety (LevelDB)', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('crash'));
  });
  afterEach(async () => cleanup());

  it('a SIGKILL mid-take never hands a key out twice and never loses one', async () => {
    const kek = await loadOrCreateKek(dir);
    const path = join(dir, 'db');
    let backend = await openLevelBackend({ path, kek });
    const material = new Map<string, Buffer>();
    for (let i = 0; i < KEYS; i++) {
      const key = newKey({ expires: null }, randomBytes(32));
      material.set(key.meta.id, Buffer.from(key.material));
      await backend.keys.put(key);
    }
    await backend.close();

    const started = Date.now();
    const { printed, finished } = await runAndKill(TAKE_LOOP, dir, 25);
    expect(printed.length).toBeGreaterThanOrEqual(25);
    // Killed mid-run: if the child ever raced to the end, the test proved nothing.
    expect(finished).toBe(false);
    expect(printed.length).toBeLessThan(KEYS);
    expect(Date.now() - started).toBeLessThan(20_000);

    backend = await openLevelBackend({ path, kek });
    try {
      const all = await backend.keys.list({ limit: 1000 });
      expect(all).toHaveLength(KEYS);
      const printedSet = new Set(printed);
      let taken = 0;
      for (const meta of all) {
        expect(['active', 'taken']).toContain(meta.state);
        if (printedSet.has(meta.id)) expect(meta.state).toBe('taken');
        if (meta.state === 'taken') {
          taken++;
          const err = await backend.keys.take(meta.id).catch((e: unknown) => e);
          expect(isQkmError(err, 'KEY_ALREADY_TAKEN')).toBe(true);
        } else {
          // Active keys still have their exact material.
          const got = await backend.keys.read(meta.id);
          expect(Buffer.from(got.material).equals(material.get(meta.id)!)).toBe(true);
        }
      }
      // At most the one take in flight at the kill went through without being printed.
      expect(taken - printed.length).toBeGreaterThanOrEqual(0);
      expect(taken - printed.length).toBeLessThanOrEqual(1);
      expect(await backend.keys.counts()).toEqual({ active: KEYS - taken, taken, expired: 0 });
    } finally {
      await backend.close();
    }
  });

  it('a SIGKILL mid-put leaves every acknowledged key whole, and nothing half-written', async () => {
    const kek = await loadOrCreateKek(dir);
    const { printed, finished } = await runAndKill(PUT_LOOP, dir, 40);
    expect(finished).toBe(false);
    const backend = await openLevelBackend({ path: join(dir, 'db'), kek });
    try {
      const all = await backend.keys.list({ limit: 1000 });
      const ids = new Set(all.map((m) => m.id));
      for (const id of printed) expect(ids.has(id)).toBe(true);
      // At most the one put in flight at the kill landed without being acknowledged.
      expect(all.length - printed.length).toBeGreaterThanOrEqual(0);
      expect(all.length - printed.length).toBeLessThanOrEqual(1);
      for (const meta of all) {
        expect(meta.state).toBe('active');
        // Metadata and sealed material were written together: every key opens and authenticates.
        expect((await backend.keys.read(meta.id)).material).toHaveLength(32);
      }
      expect(await backend.keys.counts()).toEqual({ active: all.length, taken: 0, expired: 0 });
    } finally {
      await backend.close();
    }
  });
});
