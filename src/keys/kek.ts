import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { type FileHandle, link, mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { KekError } from './errors.js';

/** Length of the key-encryption key: an AES-256 key. */
export const KEK_BYTES = 32;
/** File name of the key-encryption key inside the data dir. */
export const KEK_FILE = 'kek';

/**
 * Loads the 32-byte key-encryption key from `<dataDir>/kek`, creating it (and the data dir,
 * mode 0700) on first start.
 *
 * Creation is exclusive and never leaves a partial file under the final name: the bytes go to a
 * temporary file opened `wx` with mode 0600 and fsync'd, which is then hard-linked to `kek`
 * (link fails if `kek` already exists, so of two racing first starts exactly one key wins and
 * both return it); the data dir is fsync'd so the new name survives a crash.
 *
 * An existing file is refused with a `KekError` (STORE_UNAVAILABLE) when it is not a regular
 * file, is not owned by this user, has any group/other permission bit (stricter than "readable":
 * a group-writable key could be replaced), or is not exactly 32 bytes. The error names the path
 * and the offending mode/size/owner, never key bytes.
 */
export async function loadOrCreateKek(dataDir: string): Promise<Uint8Array> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, KEK_FILE);
  const existing = await readExisting(path);
  if (existing) return existing;
  await createExclusive(dataDir, path);
  // Read back what is now under the final name: ours, or the winner's of a concurrent first start.
  const created = await readExisting(path);
  if (!created)
    throw new KekError('io', path, `key-encryption key ${path} vanished right after it was created`);
  return created;
}

async function readExisting(path: string): Promise<Uint8Array | undefined> {
  let fh: FileHandle;
  try {
    // O_NOFOLLOW: a symlink planted in the data dir must not redirect us to another file.
    fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (err) {
    if (errCode(err) === 'ENOENT') return undefined;
    if (errCode(err) === 'ELOOP') {
      throw new KekError(
        'not-a-file',
        path,
        `key-encryption key ${path} is a symbolic link; refusing to use it`,
      );
    }
    throw new KekError('io', path, `cannot open key-encryption key ${path}: ${errCode(err) ?? 'error'}`, {
      cause: err,
    });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new KekError('not-a-file', path, `key-encryption key ${path} is not a regular file`);
    }
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new KekError(
        'wrong-owner',
        path,
        `key-encryption key ${path} is owned by uid ${st.uid}, not by this process (uid ${uid}); refusing to use it`,
      );
    }
    const perms = st.mode & 0o777;
    if ((perms & 0o077) !== 0) {
      throw new KekError(
        'insecure-permissions',
        path,
        `key-encryption key ${path} has mode ${perms.toString(8).padStart(4, '0')}; ` +
          'it must not be accessible by group or others (run: chmod 600 on it)',
      );
    }
    if (st.size !== KEK_BYTES) {
      throw new KekError(
        'wrong-size',
        path,
        `key-encryption key ${path} is ${st.size} bytes, expected ${KEK_BYTES}; refusing to start`,
      );
    }
    const key = new Uint8Array(KEK_BYTES);
    const { bytesRead } = await fh.read(key, 0, KEK_BYTES, 0);
    if (bytesRead !== KEK_BYTES) {
      key.fill(0);
      throw new KekError(
        'wrong-size',
        path,
        `key-encryption key ${path} was shorter than ${KEK_BYTES} bytes`,
      );
    }
    return key;
  } finally {
    await fh.close();
  }
}

async function createExclusive(dataDir: string, path: string): Promise<void> {
  const tmp = join(dataDir, `.${KEK_FILE}.${randomBytes(8).toString('hex')}.tmp`);
  const key = randomBytes(KEK_BYTES);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(key);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } finally {
    key.fill(0);
  }
  try {
    await link(tmp, path);
  } catch (err) {
    // EEXIST: another start won the race; its key stands. Anything else is a real I/O failure.
    if (errCode(err) !== 'EEXIST') {
      await unlink(tmp).catch(() => undefined);
      throw new KekError('io', path, `cannot create key-encryption key ${path}: ${errCode(err) ?? 'error'}`, {
        cause: err,
      });
    }
  }
  await unlink(tmp).catch(() => undefined);
  await fsyncDir(dataDir);
}

async function fsyncDir(dir: string): Promise<void> {
  // Makes the new directory entry durable. Not every platform can fsync a directory; that only
  // weakens crash durability of the *first* start, so failures here are ignored.
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* best effort */
  }
}

function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}
