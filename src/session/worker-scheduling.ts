import type { PqcWorkCounts, PqcWorker } from '../core/pqc-worker.js';

/**
 * Handshake ML-DSA goes to the PQC worker unless this many operations are queued there already;
 * then this thread does it, so that under load both cores sign and verify. Measured with 8
 * concurrent agent pairs (both nodes in one process, 2 cores): worker only when idle 68–71
 * sessions/s, with up to 3–4 queued 90–108, always queued 91–105, never (all inline) 52–58.
 * Sequential sessions find the queue empty, or holding one audit seal.
 */
export const WORKER_QUEUE_LIMIT = 4;

/**
 * Runs `op` on the PQC worker unless WORKER_QUEUE_LIMIT operations are queued there already
 * (undefined then: the caller does the work inline). A worker that fails mid-way gets the work done here instead, so the promise
 * settles as the inline call would; the counters say where it ran.
 */
export function onWorker<T>(
  worker: PqcWorker | undefined,
  counts: PqcWorkCounts,
  op: (w: PqcWorker) => Promise<T>,
  inline: () => T,
): Promise<T> | undefined {
  const w = worker;
  if (!w?.running || w.queued >= WORKER_QUEUE_LIMIT) return undefined;
  return op(w).then(
    (result) => {
      counts.worker++;
      return result;
    },
    () => {
      counts.inline++;
      return inline();
    },
  );
}
