import { chmod, lstat, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KekError } from '../../src/keys/errors.js';
import { KEK_BYTES, loadOrCreateKek } from '../../src/keys/kek.js';
import { tempDir } from './helpers.js';

describe('loadOrCreateKek', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('kek'));
  });
  afterEach(async () => cleanup());

  async function refusal(p: Promise<unknown>): Promise<KekError> {
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KekError);
    expect((err as KekError).code).toBe('STORE_UNAVAILABLE');
    return err as KekError;
  }

  it('creates a random 32-byte key with mode 0600 (data dir 0700) and loads the same key later', async () => {
    const dataDir = join(dir, 'data');
    const kek = await loadOrCreateKek(dataDir);
    expect(kek).toHaveLength(KEK_BYTES);
    expect(kek.some((b) => b !== 0)).toBe(true);
    const st = await stat(join(dataDir, 'kek'));
    expect(st.mode & 0o777).toBe(0o600);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    expect(Buffer.from(await readFile(join(dataDir, 'kek'))).equals(Buffer.from(kek))).toBe(true);
    expect(await loadOrCreateKek(dataDir)).toEqual(kek);
    // No temporary file is left behind.
    expect(await readdir(dataDir)).toEqual(['kek']);
  });

  it('two data dirs get different keys', async () => {
    const a = await loadOrCreateKek(join(dir, 'a'));
    const b = await loadOrCreateKek(join(dir, 'b'));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });

  it('concurrent first starts all end up with the one key that won', async () => {
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateKek(dir)));
    for (const k of keys) expect(k).toEqual(keys[0]);
    expect(await readdir(dir)).toEqual(['kek']);
  });

  it.each([0o640, 0o604, 0o644, 0o620, 0o660])('refuses a key file with mode %s', async (mode) => {
    const kek = await loadOrCreateKek(dir);
    await chmod(join(dir, 'kek'), mode);
    const err = await refusal(loadOrCreateKek(dir));
    expect(err.problem).toBe('insecure-permissions');
    expect(err.message).toContain(mode.toString(8));
    // The message carries no key bytes in any form.
    const hex = Buffer.from(kek).toString('hex');
    expect(err.message).not.toContain(hex);
    expect(err.message).not.toContain(Buffer.from(kek).toString('base64'));
    expect(JSON.stringify(err.details)).not.toContain(hex);
  });

  it.each([0, 16, 31, 33, 64])('refuses a key file of %s bytes', async (size) => {
    await writeFile(join(dir, 'kek'), Buffer.alloc(size, 0xab), { mode: 0o600 });
    const err = await refusal(loadOrCreateKek(dir));
    expect(err.problem).toBe('wrong-size');
    expect(err.message).toContain(`${size} bytes`);
    expect(err.message).not.toMatch(/abab/i);
  });

  it('refuses a symlink and a directory in place of the key file', async () => {
    const real = join(dir, 'elsewhere');
    await writeFile(real, Buffer.alloc(32, 1), { mode: 0o600 });
    await symlink(real, join(dir, 'kek'));
    expect((await refusal(loadOrCreateKek(dir))).problem).toBe('not-a-file');
    expect((await lstat(join(dir, 'kek'))).isSymbolicLink()).toBe(true);

    const other = join(dir, 'd');
    await loadOrCreateKek(other);
    await cleanupFile(join(other, 'kek'));
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(other, 'kek'), { mode: 0o700 });
    expect((await refusal(loadOrCreateKek(other))).problem).toBe('not-a-file');
  });
});

async function cleanupFile(path: string): Promise<void> {
  const { rm } = await import('node:fs/promises');
  await rm(path);
}
