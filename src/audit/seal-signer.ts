import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { DSA_CONTEXT, type NodeIdentity } from '../session/identity.js';
import type { AuditSigner, SealCounts } from './log.js';

/**
 * The worker's whole program. Plain JavaScript evaluated as a script, so it runs the same under
 * the TypeScript loader of the tests and from the built package; it loads only @noble/post-quantum.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { secretKey, context, moduleUrl } = workerData;
const dsa = import(moduleUrl).then((m) => m.ml_dsa65);
dsa.catch(() => undefined);
parentPort.on('message', async (msg) => {
  if (msg.close) {
    secretKey.fill(0);
    process.exit(0);
  }
  try {
    const signature = (await dsa).sign(msg.message, secretKey, { context });
    parentPort.postMessage({ id: msg.id, signature });
  } catch (e) {
    parentPort.postMessage({ id: msg.id, error: String((e && e.message) || e) });
  }
});
`;

interface Pending {
  resolve: (signature: Uint8Array) => void;
  reject: (error: Error) => void;
}

/**
 * An audit seal signer that computes the ML-DSA-65 signature on a worker thread. Why: a
 * signature takes 7–10 ms here, and on the event loop it stalled every request in flight —
 * entropy requests too, which are never audited — once per `sealEvery` audited events. Appends
 * still wait for a seal in progress (a seal covers the record before it), but nothing else does.
 *
 * The worker holds a copy of the node's signing key, wiped when the signer closes. If the worker
 * cannot start, fails or dies, seals are signed inline as before: they never stop.
 */
export class WorkerSealSigner implements AuditSigner {
  readonly nodeId: string;
  readonly publicKey: Uint8Array;
  private readonly secretKey: Uint8Array;
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** Seals signed by the worker, and here (the worker unavailable or failing). */
  readonly signed: SealCounts = { worker: 0, inline: 0 };

  /** `moduleUrl` overrides where the worker loads ML-DSA from (tests use it to make the worker fail). */
  constructor(identity: NodeIdentity, options: { moduleUrl?: string } = {}) {
    this.nodeId = identity.nodeId;
    this.publicKey = identity.signing.publicKey;
    this.secretKey = identity.signing.secretKey;
    try {
      const moduleUrl =
        options.moduleUrl ??
        pathToFileURL(createRequire(import.meta.url).resolve('@noble/post-quantum/ml-dsa.js')).href;
      // A copy of exactly the key's bytes: cloning a view would send its whole underlying buffer.
      const secretKey = Uint8Array.from(this.secretKey);
      let worker: Worker;
      try {
        worker = new Worker(WORKER_SOURCE, {
          eval: true,
          workerData: { secretKey, context: DSA_CONTEXT.audit, moduleUrl },
        });
      } finally {
        secretKey.fill(0); // workerData is cloned when the worker is created
      }
      // Idle, the worker must not keep the process alive; with a signature pending it must (a
      // final seal at shutdown would otherwise be lost).
      worker.unref();
      worker.on('message', (m: { id: number; signature?: Uint8Array; error?: string }) => this.settle(m));
      worker.on('error', (e) => this.abandon(e));
      worker.on('exit', () => this.abandon(new Error('the audit seal worker exited')));
      this.worker = worker;
    } catch {
      this.worker = undefined;
    }
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    const worker = this.worker;
    if (worker) {
      try {
        const signature = await new Promise<Uint8Array>((resolve, reject) => {
          const id = this.nextId++;
          this.pending.set(id, { resolve, reject });
          if (this.pending.size === 1) worker.ref();
          worker.postMessage({ id, message });
        });
        this.signed.worker++;
        return signature;
      } catch {
        // Reported by the worker or its death; the seal is signed here instead.
      }
    }
    this.signed.inline++;
    return ml_dsa65.sign(message, this.secretKey, { context: DSA_CONTEXT.audit });
  }

  /** Wipes the worker's copy of the key and ends the worker. Later seals are signed inline. */
  async close(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = undefined;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ close: true });
    const timer = setTimeout(() => void worker.terminate(), 2000);
    await exited;
    clearTimeout(timer);
  }

  private settle(m: { id: number; signature?: Uint8Array; error?: string }): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (this.pending.size === 0) this.worker?.unref();
    if (m.signature) p.resolve(m.signature);
    else p.reject(new Error(m.error ?? 'the audit seal worker gave no signature'));
  }

  private abandon(error: Error): void {
    this.worker = undefined;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }
}
