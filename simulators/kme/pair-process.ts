/**
 * The KME pair and its BB84 link in a child process of their own. A KME is a separate machine:
 * run in the caller's process, its TLS and key bookkeeping would share one event loop (and one
 * core) with the SAEs that call it, and every round trip to it would be charged to the caller.
 * `qkm demo`, its end-to-end test and the session benchmark use this; unit tests use the
 * in-process pair, which is simpler to inspect.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KmePairDescription, RunKmePairOptions } from './pair.js';

export type KmeChildRequest = { id: number; op: 'stopLink' | 'restartLink' | 'stop' };
export type KmeChildReply =
  | { type: 'ready'; description: KmePairDescription }
  | { type: 'failed'; message: string }
  | { type: 'done'; id: number; error?: string };

/** Control of a running KME pair and its link, wherever it runs. */
export interface KmePairControl {
  description: KmePairDescription;
  /** The child's process id, when the pair runs in a child process. */
  pid?: number;
  /** Stops the BB84 link (the KMEs keep serving what they hold). */
  stopLink(): Promise<void>;
  /** Starts the link again after `stopLink` (or after the feeder paused it). */
  restartLink(): Promise<void>;
  /** Stops the KMEs and the link (and waits for a child process to exit). Idempotent. */
  stop(): Promise<void>;
}

/** The child entry next to this module: .ts under a TypeScript loader, .js once built. */
function childEntry(): { path: string; execArgv: string[] } {
  const self = fileURLToPath(import.meta.url);
  const ext = extname(self);
  const path = self.slice(0, -ext.length).replace(/pair-process$/, 'pair-child') + ext;
  // A .ts child needs the same loader as this process; tsx is a dev dependency, present
  // exactly when this module runs from source.
  const execArgv = ext === '.ts' ? ['--import', createRequire(import.meta.url).resolve('tsx')] : [];
  return { path, execArgv };
}

export async function forkKmePair(options: RunKmePairOptions, timeoutMs = 30_000): Promise<KmePairControl> {
  const { path, execArgv } = childEntry();
  const child: ChildProcess = fork(path, [JSON.stringify(options)], {
    execArgv,
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const description = await new Promise<KmePairDescription>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`the KME pair process did not start within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the KME pair process exited (${code}) before it was ready`));
    });
    child.once('message', (m: KmeChildReply) => {
      clearTimeout(timer);
      if (m.type === 'ready') resolve(m.description);
      else reject(new Error(`the KME pair process failed: ${m.type === 'failed' ? m.message : m.type}`));
    });
  });
  let seq = 0;
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  child.on('message', (m: KmeChildReply) => {
    if (m.type !== 'done') return;
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error) p?.reject(new Error(m.error));
    else p?.resolve();
  });
  void exited.then(() => {
    for (const p of pending.values()) p.reject(new Error('the KME pair process exited'));
    pending.clear();
  });
  const call = (op: KmeChildRequest['op']) =>
    new Promise<void>((resolve, reject) => {
      if (!child.connected) return reject(new Error('the KME pair process is gone'));
      const id = ++seq;
      pending.set(id, { resolve, reject });
      child.send({ id, op } satisfies KmeChildRequest);
    });
  let stopped: Promise<void> | undefined;
  return {
    description,
    ...(child.pid === undefined ? {} : { pid: child.pid }),
    stopLink: () => call('stopLink'),
    restartLink: () => call('restartLink'),
    stop: () => {
      stopped ??= (async () => {
        await call('stop').catch(() => undefined);
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killer);
      })();
      return stopped;
    },
  };
}
