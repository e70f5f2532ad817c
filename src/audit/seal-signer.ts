import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { PqcWorker } from '../core/pqc-worker.js';
import { DSA_CONTEXT, type NodeIdentity } from '../session/identity.js';
import type { AuditSigner, SealCounts } from './log.js';

/**
 * An audit seal signer that computes the ML-DSA-65 signature on the node's PQC worker thread.
 * Why: a signature takes 7–10 ms here, and on the event loop it stalled every request in flight
 * — entropy requests too, which are never audited — once per `sealEvery` audited events. Appends
 * still wait for a seal in progress (a seal covers the record before it), but nothing else does.
 *
 * Seals queue on the worker (they are not latency-sensitive; inline they would stall the loop).
 * If the worker cannot start, fails or dies, seals are signed inline as before: they never stop.
 */
export class WorkerSealSigner implements AuditSigner {
  readonly nodeId: string;
  readonly publicKey: Uint8Array;
  private readonly secretKey: Uint8Array;
  private readonly worker: PqcWorker;
  /** Whether close() ends the worker: only one this signer started itself. */
  private readonly ownsWorker: boolean;
  /** Seals signed by the worker, and here (the worker unavailable or failing). */
  readonly signed: SealCounts = { worker: 0, inline: 0 };

  /**
   * `worker`: the node's PQC worker, holding this identity's signing key; its owner closes it.
   * Without one the signer starts its own (`moduleUrl` as for PqcWorker) and closes it.
   */
  constructor(identity: NodeIdentity, options: { worker?: PqcWorker; moduleUrl?: string } = {}) {
    this.nodeId = identity.nodeId;
    this.publicKey = identity.signing.publicKey;
    this.secretKey = identity.signing.secretKey;
    this.ownsWorker = options.worker === undefined;
    this.worker =
      options.worker ??
      new PqcWorker({
        signingKey: identity.signing.secretKey,
        ...(options.moduleUrl ? { moduleUrl: options.moduleUrl } : {}),
      });
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    if (this.worker.running) {
      try {
        const signature = await this.worker.sign(message, DSA_CONTEXT.audit);
        this.signed.worker++;
        return signature;
      } catch {
        // Reported by the worker or its death; the seal is signed here instead.
      }
    }
    this.signed.inline++;
    return ml_dsa65.sign(message, this.secretKey, { context: DSA_CONTEXT.audit });
  }

  /** Ends the worker if this signer started it (wiping its key copy). Later seals are signed inline. */
  async close(): Promise<void> {
    if (this.ownsWorker) await this.worker.close();
  }
}
