import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { QkmError } from '../../src/core/errors.js';
import { KekError, StoreIntegrityError } from '../../src/keys/errors.js';
import { loadOrCreateKek } from '../../src/keys/kek.js';
import { LevelKeyStore } from '../../src/keys/level-store.js';
import { openLevelBackend } from '../../src/store/level.js';
import { newKey, T0, tempDir } from './helpers.js';

/** What LevelDB actually writes to disk: no plaintext, authenticated ciphertext, one process. */

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await allFiles(p)));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

/** Every encoding of `secret` a careless implementation might write. */
function forms(secret: Uint8Array): Buffer[] {
  const b = Buffer.from(secret);
  return [
    b,
    Buffer.from(b.toString('hex')),
    Buffer.from(b.toString('hex').toUpperCase()),
    Buffer.from(b.toString('base64')),
    Buffer.from(b.toString('base64url')),
    // JSON of a Uint8Array/Buffer would spell the bytes as decimal numbers.
    Buffer.from(JSON.stringify(Array.from(b))),
  ];
}

/**
 * LevelDB Snappy-compresses table blocks, which can split a byte string where a few of its bytes
 * happen to repeat earlier data. So a needle counts as present if any of its 64-bit windows is:
 * 8 raw bytes, or 16 characters of a text form. (A chance 64-bit match in these few hundred KB is
 * about 1e-14.)
 */
function presentIn(content: Buffer, needle: Buffer, window: number): boolean {
  for (let o = 0; o + window <= needle.length; o += window) {
    if (content.includes(needle.subarray(o, o + window))) return true;
  }
  return false;
}

function leaks(content: Buffer, secret: Uint8Array): boolean {
  return forms(secret).some((form, i) => presentIn(content, form, i === 0 ? 8 : 16));
}

/** Opens the raw database (no qkm layer) to play the attacker with write access to the files. */
async function withRawDb(path: string, fn: (db: ClassicLevel<string, Buffer>) => Promise<void>) {
  const db = new ClassicLevel<string, Buffer>(path, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    await fn(db);
  } finally {
    await db.close();
  }
}

describe('LevelDB key store at rest', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let dbPath: string;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('at-rest'));
    dbPath = join(dir, 'db');
  });
  afterEach(async () => cleanup());

  it('never writes raw key bytes (or their hex/base64/JSON forms) to any file in the data dir', async () => {
    const kek = await loadOrCreateKek(dir);
    const backend = await openLevelBackend({ path: dbPath, kek });
    const secrets: Uint8Array[] = [];
    // Enough keys, and big enough ones, that LevelDB writes its log, and keep some of every state.
    for (let i = 0; i < 60; i++) {
      const key = newKey(
        { expires: i % 3 === 0 ? new Date(T0.getTime() + 1000).toISOString() : null },
        randomBytes(16 + (i % 7) * 40),
      );
      secrets.push(Uint8Array.from(key.material));
      await backend.keys.put(key);
      if (i % 3 === 1) await backend.keys.take(key.meta.id, T0);
    }
    await backend.keys.sweepExpired(new Date(T0.getTime() + 5000));
    await backend.records<{ note: string }>('audit').put('x', { note: 'not secret' });
    await backend.close();

    const files = await allFiles(dir);
    expect(files.some((f) => f.endsWith('.log') || f.endsWith('.ldb'))).toBe(true);
    let scanned = 0;
    for (const file of files) {
      const content = await readFile(file);
      scanned += content.length;
      for (const secret of secrets)
        expect(leaks(content, secret), `${file} contains key material`).toBe(false);
    }
    expect(scanned).toBeGreaterThan(1000);
  });

  it('control: the scanner finds material that is written in the clear, through compression', async () => {
    const backend = await openLevelBackend({ path: dbPath, kek: randomBytes(32) });
    const secrets = Array.from({ length: 20 }, () => randomBytes(48));
    // Compressible neighbours, so LevelDB does compress these blocks.
    for (const [i, secret] of secrets.entries()) {
      await backend
        .records<object>('leaky')
        .put(`k${i}`, { pad: 'x'.repeat(200), hex: secret.toString('hex') });
    }
    await backend.close();
    await withRawDb(dbPath, async (db) => {
      for (const [i, secret] of secrets.entries())
        await db.put(`raw${i}`, Buffer.concat([Buffer.alloc(200, 7), secret]));
      await db.compactRange('\x00', '\xff');
    });
    const contents = await Promise.all((await allFiles(dir)).map((f) => readFile(f)));
    for (const secret of secrets) {
      expect(contents.some((c) => presentIn(c, Buffer.from(secret.toString('hex')), 16))).toBe(true);
      expect(contents.some((c) => presentIn(c, secret, 8))).toBe(true);
    }
  });

  it.each([
    { compactOnDestroy: true, leftBehind: false },
    // Control: shows the test can fail — without compaction LevelDB keeps the old value.
    { compactOnDestroy: false, leftBehind: true },
  ])(
    'destroyed material with compactOnDestroy=$compactOnDestroy: ciphertext left in files = $leftBehind',
    async ({ compactOnDestroy, leftBehind }) => {
      const kek = randomBytes(32);
      const backend = await openLevelBackend({ path: dbPath, kek, compactOnDestroy });
      const key = newKey({}, randomBytes(64));
      await backend.keys.put(key);
      const keep = newKey({}, randomBytes(64));
      await backend.keys.put(keep);
      await backend.close();
      // Read both sealed values as the attacker would see them.
      const sealed: Record<string, Buffer> = {};
      await withRawDb(dbPath, async (db) => {
        sealed.taken = (await db.get(`!mat!${key.meta.id}`))!;
        sealed.kept = (await db.get(`!mat!${keep.meta.id}`))!;
      });
      const again = await openLevelBackend({ path: dbPath, kek, compactOnDestroy });
      await again.keys.take(key.meta.id, T0);
      await again.close(); // waits for the background compaction

      const contents = await Promise.all((await allFiles(dbPath)).map((f) => readFile(f)));
      expect(contents.some((c) => presentIn(c, sealed.kept!, 8))).toBe(true);
      expect(contents.some((c) => presentIn(c, sealed.taken!, 8))).toBe(leftBehind);
    },
  );

  it('without a close, destroyed material is compacted away once its gathering window ends', async () => {
    const kek = randomBytes(32);
    const backend = await openLevelBackend({ path: dbPath, kek, compactDelayMs: 50 });
    const key = newKey({}, randomBytes(64));
    await backend.keys.put(key);
    await backend.close();
    let sealed: Buffer | undefined;
    await withRawDb(dbPath, async (db) => {
      sealed = (await db.get(`!mat!${key.meta.id}`))!;
    });
    const again = await openLevelBackend({ path: dbPath, kek, compactDelayMs: 50 });
    try {
      await again.keys.take(key.meta.id, T0);
      const lingers = async () =>
        (
          await Promise.all((await allFiles(dbPath)).map((f) => readFile(f).catch(() => Buffer.alloc(0))))
        ).some((c) => presentIn(c, sealed!, 8));
      const deadline = Date.now() + 4000;
      while ((await lingers()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await lingers()).toBe(false);
    } finally {
      await again.close();
    }
  });

  it('destroys within one gathering window share one compaction, which close runs at once', async () => {
    const root = new ClassicLevel<string, string>(dbPath, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    await root.open();
    try {
      // A window far longer than the test: only close can have run the compaction.
      const store = await LevelKeyStore.open(root, dbPath, randomBytes(32), { compactDelayMs: 60_000 });
      const compactions = vi.spyOn(root, 'compactRange');
      const keys = Array.from({ length: 40 }, () => newKey({}, randomBytes(32)));
      for (const k of keys) await store.put(k);
      await Promise.all(keys.map((k) => store.take(k.meta.id, T0)));
      expect(compactions).not.toHaveBeenCalled();
      const t = performance.now();
      await store.close();
      expect(performance.now() - t).toBeLessThan(30_000);
      expect(compactions).toHaveBeenCalledTimes(1);
      // The one compaction spans every destroyed id.
      const ids = keys.map((k) => k.meta.id).sort();
      const [start, end] = compactions.mock.calls[0]! as unknown as [string, string];
      expect(start.endsWith(ids[0]!)).toBe(true);
      expect(end.endsWith(ids.at(-1)!)).toBe(true);
    } finally {
      await root.close();
    }
  });

  it('a tampered ciphertext makes take/read fail with StoreIntegrityError, not return garbage', async () => {
    const kek = randomBytes(32);
    let backend = await openLevelBackend({ path: dbPath, kek });
    const key = newKey();
    await backend.keys.put(key);
    await backend.close();
    await withRawDb(dbPath, async (db) => {
      const k = `!mat!${key.meta.id}`;
      const value = (await db.get(k))!;
      value[20]! ^= 0x01; // one bit of the ciphertext body
      await db.put(k, value);
    });
    backend = await openLevelBackend({ path: dbPath, kek });
    for (const op of [() => backend.keys.read(key.meta.id, T0), () => backend.keys.take(key.meta.id, T0)]) {
      const err = await op().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreIntegrityError);
      expect((err as QkmError).code).toBe('INTERNAL');
      expect((err as Error).message).toContain(key.meta.id);
      expect((err as Error).message).not.toContain(Buffer.from(key.material).toString('hex'));
    }
    // State unchanged: the operator can inspect it; nothing was marked taken.
    expect((await backend.keys.meta(key.meta.id)).state).toBe('active');
    await backend.close();
  });

  it('ciphertexts swapped between records, or edited metadata, fail authentication', async () => {
    const kek = randomBytes(32);
    let backend = await openLevelBackend({ path: dbPath, kek });
    const a = newKey();
    const b = newKey();
    const c = newKey();
    for (const k of [a, b, c]) await backend.keys.put(k);
    await backend.close();
    await withRawDb(dbPath, async (db) => {
      const va = (await db.get(`!mat!${a.meta.id}`))!;
      const vb = (await db.get(`!mat!${b.meta.id}`))!;
      await db.put(`!mat!${a.meta.id}`, vb);
      await db.put(`!mat!${b.meta.id}`, va);
      // Extend c's lifetime and relabel its provenance: the bound metadata no longer matches.
      const meta = JSON.parse((await db.get(`!meta!${c.meta.id}`))!.toString('utf8'));
      meta.expires = null;
      await db.put(`!meta!${c.meta.id}`, Buffer.from(JSON.stringify(meta)));
    });
    backend = await openLevelBackend({ path: dbPath, kek });
    for (const id of [a.meta.id, b.meta.id, c.meta.id]) {
      await expect(backend.keys.take(id, T0)).rejects.toBeInstanceOf(StoreIntegrityError);
    }
    await backend.close();
  });

  it('reverting a taken key to active in the store does not bring its material back', async () => {
    const kek = randomBytes(32);
    let backend = await openLevelBackend({ path: dbPath, kek });
    const key = newKey();
    await backend.keys.put(key);
    await backend.keys.take(key.meta.id, T0);
    await backend.close();
    await withRawDb(dbPath, async (db) => {
      const meta = JSON.parse((await db.get(`!meta!${key.meta.id}`))!.toString('utf8'));
      meta.state = 'active';
      delete meta.closedAt;
      await db.put(`!meta!${key.meta.id}`, Buffer.from(JSON.stringify(meta)));
    });
    backend = await openLevelBackend({ path: dbPath, kek });
    await expect(backend.keys.take(key.meta.id, T0)).rejects.toBeInstanceOf(StoreIntegrityError);
    await backend.close();
  });

  it('an unknown format version byte is refused', async () => {
    const kek = randomBytes(32);
    let backend = await openLevelBackend({ path: dbPath, kek });
    const key = newKey();
    await backend.keys.put(key);
    await backend.close();
    await withRawDb(dbPath, async (db) => {
      const value = (await db.get(`!mat!${key.meta.id}`))!;
      value[0] = 2;
      await db.put(`!mat!${key.meta.id}`, value);
    });
    backend = await openLevelBackend({ path: dbPath, kek });
    const err = await backend.keys.take(key.meta.id, T0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreIntegrityError);
    expect((err as Error).message).toContain('version');
    await backend.close();
  });

  it('refuses to open with the wrong KEK (KekError wrong-key, STORE_UNAVAILABLE)', async () => {
    const kek = randomBytes(32);
    const backend = await openLevelBackend({ path: dbPath, kek });
    await backend.close();
    const err = await openLevelBackend({ path: dbPath, kek: randomBytes(32) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KekError);
    expect((err as KekError).problem).toBe('wrong-key');
    expect((err as QkmError).code).toBe('STORE_UNAVAILABLE');
    // The failed open released the lock: the right key still opens it.
    await (await openLevelBackend({ path: dbPath, kek })).close();
  });

  it('refuses a store whose data-key record was removed, rather than minting a new one', async () => {
    const kek = randomBytes(32);
    const backend = await openLevelBackend({ path: dbPath, kek });
    await backend.keys.put(newKey());
    await backend.close();
    await withRawDb(dbPath, (db) => db.del('!sys!store'));
    await expect(openLevelBackend({ path: dbPath, kek })).rejects.toBeInstanceOf(StoreIntegrityError);
  });

  it('a second opener of the same data dir gets STORE_UNAVAILABLE naming the likely cause', async () => {
    const kek = randomBytes(32);
    const first = await openLevelBackend({ path: dbPath, kek });
    const err = await openLevelBackend({ path: dbPath, kek }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QkmError);
    expect((err as QkmError).code).toBe('STORE_UNAVAILABLE');
    expect((err as Error).message).toMatch(/data dir in use by another qkm process\?/);
    await first.close();
    const second = await openLevelBackend({ path: dbPath, kek });
    await second.close();
  });

  it('creates the database directory with mode 0700', async () => {
    const backend = await openLevelBackend({ path: dbPath, kek: randomBytes(32) });
    await backend.close();
    expect((await stat(dbPath)).mode & 0o777).toBe(0o700);
  });

  it('rejects a KEK that is not 32 bytes', async () => {
    await expect(openLevelBackend({ path: dbPath, kek: new Uint8Array(16) })).rejects.toThrow(RangeError);
  });
});
