import { chmod, mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * The data directory holds the LevelDB store, the key-encryption key and the agents' token
 * files. Everything secret in it is created with mode 0600 inside directories of mode 0700,
 * so another local user cannot read a token or the KEK even if the umask is permissive.
 */

export const tokenFile = (dataDir: string, agent: string) => join(dataDir, 'tokens', agent);

export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

/** Writes a secret file with mode 0600, durably (fsync), replacing any previous content. */
export async function writeSecretFile(path: string, content: string | Uint8Array): Promise<void> {
  await ensurePrivateDir(dirname(path));
  const fh = await open(path, 'w', 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Reads a token file, refusing one that other users can read (it would already be compromised). */
export async function readTokenFile(path: string): Promise<string> {
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) {
    throw new Error(
      `${path} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
    );
  }
  return (await readFile(path, 'utf8')).trim();
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
