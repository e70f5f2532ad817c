import { EventEmitter } from 'node:events';
import { EntropySourceError } from '../errors.js';
import type { EntropySource, EntropySourceEvents, EntropySourceInfo } from '../interface.js';

/**
 * The part every streaming device driver shares: an ordered queue of `read(n)` calls served
 * from a bounded read-ahead buffer that one pump loop fills from the device.
 *
 * Subclasses implement `fetch()` (one device transfer) and `release()` (free the device).
 * This class enforces the `EntropySource` contract on top: exactly `n` bytes per read, reads
 * served in call order, `canceled` for reads pending at `close()` or aborted by their signal,
 * `disconnected` (plus one `detach` event) once the device is gone.
 *
 * Why a read-ahead at all: a USB device delivers whole packets, a serial device whatever the
 * kernel has; the buffer decouples those transfer sizes from the caller's `n` and lets the
 * next transfer be in flight while the pipeline health-tests the previous one. It is bounded
 * (`readAheadBytes`, 0 = fetch only for pending reads) so an idle source does not hold more
 * raw entropy in memory than needed.
 *
 * Why buffered bytes can expire (`maxBufferAgeMs`): the pipeline health-tests what it reads
 * when it reads it, and a verdict on bytes the device produced long ago says nothing about the
 * device now. A 64 KiB read-ahead drained one 1 KiB test window a second once kept a stuck
 * Quantis looking healthy for a minute. Bytes older than the bound are wiped unread.
 */
export abstract class BufferedEntropySource extends EventEmitter implements EntropySource {
  /** Buffered chunks, oldest first; `buffered` is their total length; `at` their fetch times. */
  private chunks: Uint8Array[] = [];
  private chunkTimes: number[] = [];
  private buffered = 0;
  private readonly queue: PendingRead[] = [];
  private pumping = false;
  private state: 'open' | 'closed' | 'detached' = 'open';
  /** A fault seen while pre-fetching with nobody waiting; the next read reports it. */
  private deferredFault: EntropySourceError | undefined;

  private readonly maxBufferAgeMs: number;

  protected constructor(
    protected readonly sourceId: string,
    private readonly readAheadBytes: number,
    options: BufferedSourceOptions = {},
  ) {
    super();
    this.maxBufferAgeMs = options.maxBufferAgeMs ?? Number.POSITIVE_INFINITY;
    if (!(this.maxBufferAgeMs > 0)) throw new RangeError('maxBufferAgeMs must be positive');
  }

  abstract info(): EntropySourceInfo;

  /**
   * One transfer from the device: resolves with ≥ 1 byte or rejects with an
   * `EntropySourceError`. Never called concurrently. Called only while the source is open.
   * `wanted` (≥ 1) is how many bytes the pending reads (or the read-ahead) still lack; a
   * driver may fetch more or fewer, but fetching about that many keeps leftovers small.
   */
  protected abstract fetch(wanted: number): Promise<Uint8Array>;

  /** Releases the device; in-flight `fetch()` calls may reject afterwards (ignored). */
  protected abstract release(): Promise<void>;

  /** Whether the pump should keep the read-ahead topped up while no read is pending. */
  protected prefetchWhenIdle(): boolean {
    return true;
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  read(n: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (!Number.isSafeInteger(n) || n < 1) {
      return Promise.reject(new RangeError(`read(n): n must be a positive integer, got ${String(n)}`));
    }
    if (this.state === 'closed') {
      return Promise.reject(new EntropySourceError(this.sourceId, 'canceled', 'source is closed'));
    }
    if (this.state === 'detached') {
      return Promise.reject(new EntropySourceError(this.sourceId, 'disconnected', 'device was removed'));
    }
    if (signal?.aborted) {
      return Promise.reject(new EntropySourceError(this.sourceId, 'canceled', 'read aborted'));
    }
    if (this.deferredFault !== undefined && this.queue.length === 0) {
      const fault = this.deferredFault;
      this.deferredFault = undefined;
      return Promise.reject(fault);
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const pending: PendingRead = { out: new Uint8Array(n), filled: 0, resolve, reject };
      if (signal !== undefined) {
        const onAbort = () => this.abortRead(pending);
        signal.addEventListener('abort', onAbort, { once: true });
        pending.detachSignal = () => signal.removeEventListener('abort', onAbort);
      }
      this.queue.push(pending);
      this.serve();
      this.kick();
    });
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.failAll(new EntropySourceError(this.sourceId, 'canceled', 'source closed'));
    this.dropBuffer();
    if (wasOpen) await this.release().catch(() => undefined);
  }

  override on<E extends keyof EntropySourceEvents>(event: E, listener: EntropySourceEvents[E]): this {
    return super.on(event, listener);
  }

  override off<E extends keyof EntropySourceEvents>(event: E, listener: EntropySourceEvents[E]): this {
    return super.off(event, listener);
  }

  /**
   * For subclasses: the device is gone. Fails pending and later reads with `disconnected`,
   * emits `detach` once, and releases the device.
   */
  protected markDetached(cause?: unknown): void {
    if (this.state !== 'open') return;
    this.state = 'detached';
    this.failAll(new EntropySourceError(this.sourceId, 'disconnected', 'device was removed', { cause }));
    this.dropBuffer();
    this.emit('detach');
    this.release().catch(() => undefined);
  }

  /**
   * For subclasses: the device reported a fault outside a transfer (e.g. a start-up test
   * request). Discards the read-ahead (its bytes predate the fault), fails pending reads with
   * `err`, or — with none pending — holds it for the next read; emits `error` if anyone listens
   * (an unheard EventEmitter `error` would throw).
   */
  protected reportFault(err: EntropySourceError): void {
    if (this.state !== 'open') return;
    this.dropBuffer();
    if (this.queue.length > 0) this.failAll(err);
    else this.deferredFault = err;
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** Starts the pump loop if it is not running. */
  private kick(): void {
    if (this.pumping || this.state !== 'open') return;
    if (!this.wantsMore()) return;
    this.pumping = true;
    void this.pump();
  }

  private wantsMore(): boolean {
    return this.wanted() > 0;
  }

  /** Bytes the pump should fetch now: what pending reads lack, else what the read-ahead lacks. */
  private wanted(): number {
    if (this.state !== 'open' || this.deferredFault !== undefined) return 0;
    if (this.queue.length > 0) {
      let need = 0;
      for (const p of this.queue) need += p.out.length - p.filled;
      return Math.max(1, need - this.buffered);
    }
    return this.prefetchWhenIdle() ? Math.max(0, this.readAheadBytes - this.buffered) : 0;
  }

  private async pump(): Promise<void> {
    try {
      for (let wanted = this.wanted(); wanted > 0; wanted = this.wanted()) {
        let chunk: Uint8Array;
        try {
          chunk = await this.fetch(wanted);
        } catch (err) {
          if (this.state !== 'open') return;
          const e =
            err instanceof EntropySourceError
              ? err
              : new EntropySourceError(this.sourceId, 'io', 'device transfer failed', { cause: err });
          if (e.disconnected) {
            this.markDetached(e);
            return;
          }
          if (e.canceled && this.state !== 'open') return;
          this.reportFault(e);
          if (this.queue.length === 0) return;
          continue;
        }
        if (this.state !== 'open') return;
        if (chunk.length > 0) {
          this.chunks.push(chunk);
          this.chunkTimes.push(performance.now());
          this.buffered += chunk.length;
          this.serve();
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Hands buffered bytes to pending reads, in call order; stale ones are wiped first. */
  private serve(): void {
    if (this.queue.length > 0) this.dropStale();
    while (this.queue.length > 0 && this.buffered > 0) {
      const head = this.queue[0]!;
      while (head.filled < head.out.length && this.chunks.length > 0) {
        const chunk = this.chunks[0]!;
        const take = Math.min(chunk.length, head.out.length - head.filled);
        head.out.set(chunk.subarray(0, take), head.filled);
        head.filled += take;
        this.buffered -= take;
        if (take === chunk.length) {
          this.chunks.shift();
          this.chunkTimes.shift();
        } else this.chunks[0] = chunk.subarray(take);
      }
      if (head.filled < head.out.length) return;
      this.queue.shift();
      head.detachSignal?.();
      head.resolve(head.out);
    }
  }

  private abortRead(pending: PendingRead): void {
    const i = this.queue.indexOf(pending);
    if (i < 0) return;
    this.queue.splice(i, 1);
    // Bytes already copied into an aborted read were never handed out: give them back.
    if (pending.filled > 0) {
      this.chunks.unshift(pending.out.slice(0, pending.filled));
      // Their age is unknown here; count them as fetched now (they were at most one read ago).
      this.chunkTimes.unshift(performance.now());
      this.buffered += pending.filled;
    }
    pending.out.fill(0);
    pending.reject(new EntropySourceError(this.sourceId, 'canceled', 'read aborted'));
    this.serve();
  }

  private failAll(err: EntropySourceError): void {
    const pending = this.queue.splice(0, this.queue.length);
    for (const p of pending) {
      p.detachSignal?.();
      p.out.fill(0);
      p.reject(err);
    }
  }

  private dropBuffer(): void {
    for (const c of this.chunks) c.fill(0);
    this.chunks = [];
    this.chunkTimes = [];
    this.buffered = 0;
  }

  /** Wipes chunks fetched more than `maxBufferAgeMs` ago (oldest first). */
  private dropStale(): void {
    if (this.chunks.length === 0 || this.maxBufferAgeMs === Number.POSITIVE_INFINITY) return;
    const oldest = performance.now() - this.maxBufferAgeMs;
    while (this.chunks.length > 0 && this.chunkTimes[0]! < oldest) {
      const c = this.chunks.shift()!;
      this.chunkTimes.shift();
      this.buffered -= c.length;
      c.fill(0);
    }
  }
}

export interface BufferedSourceOptions {
  /** Buffered bytes older than this (ms since fetched) are wiped, not served (default: no bound). */
  maxBufferAgeMs?: number;
}

interface PendingRead {
  out: Uint8Array;
  filled: number;
  resolve: (bytes: Uint8Array) => void;
  reject: (err: unknown) => void;
  detachSignal?: () => void;
}
