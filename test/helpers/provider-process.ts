import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// Not from run-cli.ts: that one imports vitest, and the bench imports this file too.
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * `qkm provider start` as its own process (tsx, no build step), for the e2e tests and the bench:
 * started on a fixed port so a restart on the same data dir answers at the same URL.
 */

export interface ProviderProcess {
  url: string;
  publicKey: string;
  providerId: string;
  adminToken: string;
  proc: ChildProcess;
  /** SIGTERM and wait for the exit (a clean stop). */
  stop(): Promise<void>;
  /** SIGKILL (kill -9) and wait for the exit. */
  kill(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export async function startProviderProcess(options: {
  dir: string;
  port: number;
  /** Written to `<dir>/provider.json` before the start (e.g. an etcd `store`). */
  config?: Record<string, unknown>;
  timeoutMs?: number;
}): Promise<ProviderProcess> {
  if (options.config) await writeFile(join(options.dir, 'provider.json'), JSON.stringify(options.config));
  const tsx = createRequire(import.meta.url).resolve('tsx');
  const proc = spawn(
    process.execPath,
    [
      '--import',
      tsx,
      join(repoRoot, 'src/cli/bin.ts'),
      '--json',
      'provider',
      'start',
      '--dir',
      options.dir,
      '--port',
      String(options.port),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, QKM_PROVIDER_CONFIG: '' } },
  );
  live.add(proc);
  const exited = new Promise<void>((resolve) =>
    proc.once('exit', () => {
      live.delete(proc);
      resolve();
    }),
  );
  let out = '';
  let err = '';
  proc.stderr?.on('data', (c) => {
    err += String(c);
  });
  const info = await new Promise<{ url: string; publicKey: string; providerId: string }>(
    (resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`provider did not start in time: ${err.slice(-1500)} / stdout: ${out.slice(-500)}`),
          ),
        options.timeoutMs ?? 60_000,
      );
      proc.stdout?.on('data', (c) => {
        out += String(c);
        // Log lines (one JSON object per line) share stdout with the pretty-printed start info,
        // before or after it: cut out the block from a line "{" to the next line "}".
        const at = out.startsWith('{\n') ? 0 : out.indexOf('\n{\n') + 1;
        if (at === 0 && !out.startsWith('{\n')) return;
        const end = out.indexOf('\n}', at);
        if (end < 0) return;
        try {
          const parsed = JSON.parse(out.slice(at, end + 2));
          clearTimeout(timer);
          resolve(parsed);
        } catch {
          // not complete yet
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`provider exited (${code}) before listening: ${err.slice(-2000)}`));
      });
    },
  );
  const adminToken = (await readFile(join(options.dir, 'tokens', 'admin'), 'utf8')).trim();
  const signal = async (sig: NodeJS.Signals) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
    await exited;
  };
  return {
    ...info,
    adminToken,
    proc,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
  };
}
