import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * The worker's whole program. Plain JavaScript evaluated as a script, so it runs the same under
 * the TypeScript loader of the tests and from the built package; it loads only @noble/post-quantum.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { signingKey, moduleUrl } = workerData;
const dsa = import(moduleUrl).then((m) => m.ml_dsa65);
dsa.catch(() => undefined);
parentPort.on('message', async (msg) => {
  if (msg.close) {
    if (signingKey) signingKey.fill(0);
    process.exit(0);
  }
  try {
    const d = await dsa;
    if (msg.op === 'sign') {
      if (!signingKey) throw new Error('this worker holds no signing key');
      parentPort.postMessage({ id: msg.id, signature: d.sign(msg.message, signingKey, { context: msg.context }) });
    } else {
      let ok = false;
      try {
        ok = d.verify(msg.signature, msg.message, msg.publicKey, { context: msg.context }) === true;
      } catch {
        ok = false;
      }
      parentPort.postMessage({ id: msg.id, ok });
    }
  } catch (e) {
    parentPort.postMessage({ id: msg.id, error: String((e && e.message) || e) });
  }
});
`;

/** Operations done on the worker thread, and inline (on the event loop) instead. */
export interface PqcWorkCounts {
  worker: number;
  inline: number;
}

interface Pending {
  resolve: (reply: WorkerReply) => void;
  reject: (error: Error) => void;
}

interface WorkerReply {
  id: number;
  signature?: Uint8Array;
  ok?: boolean;
  error?: string;
}

/** The worker is gone, never started, or could not do the operation: the caller does it inline. */
export class PqcWorkerUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PqcWorkerUnavailable';
  }
}

/**
 * One worker thread for the node's ML-DSA-65 work. Why: a signature takes 7–10 ms here and a
 * verification 2.5–3 ms; on the event loop they stall every request in flight, and they keep
 * the second core idle while the first decapsulates. The worker holds a copy of the node's
 * signing key when given one (wiped on close); verification needs public data only.
 *
 * Every operation may fail with `PqcWorkerUnavailable` (the worker could not start, died, or
 * was closed); callers then do the operation on their own thread, so nothing ever stops
 * because of the worker. `queued` lets callers with a thread of their own do the work there
 * rather than wait behind a long queue.
 */
export class PqcWorker {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;

  /** `moduleUrl` overrides where the worker loads ML-DSA from (tests use it to make the worker fail). */
  constructor(options: { signingKey?: Uint8Array; moduleUrl?: string } = {}) {
    try {
      const moduleUrl =
        options.moduleUrl ??
        pathToFileURL(createRequire(import.meta.url).resolve('@noble/post-quantum/ml-dsa.js')).href;
      // A copy of exactly the key's bytes: cloning a view would send its whole underlying buffer.
      const signingKey = options.signingKey ? Uint8Array.from(options.signingKey) : undefined;
      let worker: Worker;
      try {
        worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { signingKey, moduleUrl } });
      } finally {
        signingKey?.fill(0); // workerData is cloned when the worker is created
      }
      // Idle, the worker must not keep the process alive; with work pending it must (a final
      // audit seal at shutdown would otherwise be lost).
      worker.unref();
      worker.on('message', (m: WorkerReply) => this.settle(m));
      worker.on('error', (e) => this.abandon(e));
      worker.on('exit', () => this.abandon(new PqcWorkerUnavailable('the PQC worker exited')));
      this.worker = worker;
    } catch {
      this.worker = undefined;
    }
  }

  /** Operations sent and not yet answered (0: work sent now starts at once). */
  get queued(): number {
    return this.pending.size;
  }

  get running(): boolean {
    return this.worker !== undefined;
  }

  /** ML-DSA-65 signature with the key the worker was given (hedged, as FIPS 204 recommends). */
  async sign(message: Uint8Array, context: Uint8Array): Promise<Uint8Array> {
    const reply = await this.call({ op: 'sign', message: message.slice(), context: context.slice() });
    if (!reply.signature) throw new PqcWorkerUnavailable(reply.error ?? 'the PQC worker gave no signature');
    return reply.signature;
  }

  /** ML-DSA-65 verification; false for any malformed input, as on this thread. */
  async verify(
    signature: Uint8Array,
    message: Uint8Array,
    publicKey: Uint8Array,
    context: Uint8Array,
  ): Promise<boolean> {
    const reply = await this.call({
      op: 'verify',
      // Exact copies: a view into a larger buffer would be cloned whole.
      signature: signature.slice(),
      message: message.slice(),
      publicKey: publicKey.slice(),
      context: context.slice(),
    });
    if (typeof reply.ok !== 'boolean') {
      throw new PqcWorkerUnavailable(reply.error ?? 'the PQC worker gave no verdict');
    }
    return reply.ok;
  }

  /** Wipes the worker's copy of the key and ends the worker. Later calls fail (callers go inline). */
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

  private call(message: Record<string, unknown>): Promise<WorkerReply> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new PqcWorkerUnavailable('the PQC worker is not running'));
    return new Promise<WorkerReply>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, ...message });
    });
  }

  private settle(m: WorkerReply): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (this.pending.size === 0) this.worker?.unref();
    p.resolve(m);
  }

  private abandon(error: Error): void {
    this.worker = undefined;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }
}
