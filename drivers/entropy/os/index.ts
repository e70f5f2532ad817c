/**
 * The operating system's CSPRNG as an entropy source (kind `os`). It is what the appliance
 * falls back to when no quantum source is healthy; outputs seeded from it are always degraded.
 *
 * Honesty note: this is not a physical noise source. Its bytes come from a kernel DRBG
 * (`node:crypto` randomFill → getrandom(2) on Linux); the 8 bits per byte is a *claim* about
 * that DRBG's output, not something health tests can measure. The health tests still run on it,
 * which catches a broken binding (e.g. a zero-filled buffer), not a weak kernel seed.
 */
import { EventEmitter } from 'node:events';
import { randomFill } from 'node:crypto';
import { EntropySourceError } from '../errors.js';
import type {
  EntropySource,
  EntropySourceDescriptor,
  EntropySourceEvents,
  EntropySourceFactory,
  EntropySourceInfo,
  EntropySourceOpenOptions,
} from '../interface.js';

export const OS_SOURCE_ID = 'os';
const DRIVER = 'os';
const DESCRIPTION =
  'Operating-system CSPRNG (node:crypto randomFill, getrandom(2) on Linux); a kernel DRBG, not a physical noise source';

/** randomFill refuses more than 2^31−1 bytes per call; stay well under it. */
const MAX_CHUNK = 1 << 20;

export const OS_DESCRIPTOR: EntropySourceDescriptor = {
  id: OS_SOURCE_ID,
  driver: DRIVER,
  description: DESCRIPTION,
  simulated: false,
};

function fill(buf: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    randomFill(buf, (err) => (err ? reject(err) : resolve()));
  });
}

class OsEntropySource extends EventEmitter implements EntropySource {
  private closed = false;
  /** Settles after the previous read settles: randomFill runs on the thread pool and may finish out of order. */
  private tail: Promise<void> = Promise.resolve();
  private readonly pending = new Set<(err: EntropySourceError) => void>();
  private readonly claimed: number;

  constructor(claimedMinEntropy: number) {
    super();
    this.claimed = claimedMinEntropy;
  }

  info(): EntropySourceInfo {
    return {
      id: OS_SOURCE_ID,
      driver: DRIVER,
      kind: 'os',
      simulated: false,
      description: DESCRIPTION,
      sampleBits: 8,
      claimedMinEntropy: this.claimed,
    };
  }

  read(n: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (!Number.isInteger(n) || n < 1) return Promise.reject(new RangeError('n must be a positive integer'));
    if (this.closed) {
      return Promise.reject(new EntropySourceError(OS_SOURCE_ID, 'canceled', 'source is closed'));
    }
    if (signal?.aborted) {
      return Promise.reject(new EntropySourceError(OS_SOURCE_ID, 'canceled', 'read aborted'));
    }
    const previous = this.tail;
    const result = new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const cancel = (err: EntropySourceError): void => {
        if (settled) return;
        settled = true;
        cleanup();
        reject(err);
      };
      const onAbort = (): void => cancel(new EntropySourceError(OS_SOURCE_ID, 'canceled', 'read aborted'));
      const cleanup = (): void => {
        this.pending.delete(cancel);
        signal?.removeEventListener('abort', onAbort);
      };
      this.pending.add(cancel);
      signal?.addEventListener('abort', onAbort, { once: true });
      const out = new Uint8Array(n);
      (async () => {
        for (let off = 0; off < n; off += MAX_CHUNK) {
          await fill(out.subarray(off, Math.min(n, off + MAX_CHUNK)));
        }
        await previous; // serve in call order
      })().then(
        () => {
          if (settled) return;
          settled = true;
          cleanup();
          resolve(out);
        },
        (err: unknown) =>
          cancel(new EntropySourceError(OS_SOURCE_ID, 'io', 'the OS CSPRNG failed', { cause: err })),
      );
    });
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new EntropySourceError(OS_SOURCE_ID, 'canceled', 'source closed');
    for (const cancel of [...this.pending]) cancel(err);
  }

  override on<E extends keyof EntropySourceEvents>(event: E, listener: EntropySourceEvents[E]): this {
    return super.on(event, listener);
  }

  override off<E extends keyof EntropySourceEvents>(event: E, listener: EntropySourceEvents[E]): this {
    return super.off(event, listener);
  }
}

export interface OsEntropyFactoryOptions {
  /** Claimed min-entropy per byte; default 8 (the kernel DRBG's output is treated as full entropy). */
  claimedMinEntropy?: number;
}

/** Factory for the single `os` source. `open()` always succeeds; the kernel never detaches. */
export function createOsEntropyFactory(options: OsEntropyFactoryOptions = {}): EntropySourceFactory {
  const defaultClaim = options.claimedMinEntropy ?? 8;
  return {
    driver: DRIVER,
    async list() {
      return [{ ...OS_DESCRIPTOR }];
    },
    async open(openOptions?: EntropySourceOpenOptions) {
      if (openOptions?.id !== undefined && openOptions.id !== OS_SOURCE_ID) {
        throw new EntropySourceError(
          openOptions.id,
          'disconnected',
          `no OS entropy source named ${openOptions.id}`,
        );
      }
      const claim = openOptions?.claimedMinEntropy ?? defaultClaim;
      if (!(claim > 0 && claim <= 8)) throw new RangeError('claimedMinEntropy must be in (0, 8]');
      return new OsEntropySource(claim);
    },
  };
}

/** The default factory instance. */
export const osEntropyFactory: EntropySourceFactory = createOsEntropyFactory();
