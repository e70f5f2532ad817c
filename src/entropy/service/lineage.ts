import type { Provenance, SourceSnapshot } from '../../core/provenance.js';
import { type Drbg, ReseedRequiredError } from '../drbg/interface.js';
import type { ReseedEvent } from './options.js';
import type { Origin } from './sources.js';

/**
 * One DRBG and what is known about its current lineage (one instantiate and the reseeds since):
 * which sources fed it, whether one of them has failed since (taint), how much it has served,
 * and the per-lineage output buffer. The service keeps two, quantum and fallback.
 */
export class Lineage {
  seeded = false;
  instance = '';
  seededAt = 0;
  /** Credited bits of the latest (re)seed input. */
  credited = 0;
  /** Every source whose entropy went into this lineage since instantiate. */
  contributors = new Set<string>();
  bytesSinceReseed = 0;
  /** Set when a contributor failed: the lineage must not be used again. */
  tainted: string | null = null;
  /** Single-flight for (re)seeding. */
  seeding: Promise<void> | null = null;
  /** Output of one generate call not yet handed out; bytes before `bufferOffset` are zeroed. */
  buffer: Buffer | null = null;
  bufferOffset = 0;
  /** Reseed counter right after the generate call that filled `buffer`. */
  bufferReseedCounter = 0;
  /** Source snapshots for provenance, reused until a state change, a (re)seed or their TTL. */
  sourcesCache: { sources: SourceSnapshot[]; seededAt: string; at: number } | null = null;
  /**
   * The last provenance handed out (frozen): outputs in the same millisecond from the same
   * generate call have identical provenance, so they share one object (and its serialisation).
   */
  lastProvenance: {
    value: Provenance;
    sources: Lineage['sourcesCache'];
    reseedCounter: number;
    now: number;
    predictionResistance: boolean;
    reason: string | undefined;
  } | null = null;

  constructor(
    readonly drbg: Drbg,
    readonly origin: Origin,
  ) {}

  /** Wipes and forgets the buffered output and the cached snapshots. */
  dropBuffer(): void {
    this.buffer?.fill(0);
    this.buffer = null;
    this.bufferOffset = 0;
    this.sourcesCache = null;
    this.lastProvenance = null;
  }

  /** Forgets everything the lineage was seeded with (on stop): buffer wiped, DRBG zeroised. */
  wipe(): void {
    this.dropBuffer();
    if (this.drbg.instantiated) this.drbg.uninstantiate();
    this.seeded = false;
    this.contributors.clear();
  }

  /**
   * Why the lineage must be (re)seeded before it serves, or null when it need not be.
   * `maxRequestBytes` is the service's per-request cap: room is left for one request's chunks.
   */
  dueSeeding(
    predictionResistance: boolean,
    reseedBytes: number,
    maxRequestBytes: number,
  ): ReseedEvent['cause'] | null {
    if (!this.seeded || this.tainted !== null) return this.tainted !== null ? 'recovery' : 'first-use';
    if (this.bytesSinceReseed >= reseedBytes) return 'bytes';
    // Leave room for the chunks of one request; prediction resistance reseeds anyway.
    const chunks = Math.ceil(maxRequestBytes / this.drbg.maxRequestBytes);
    if (!predictionResistance && this.drbg.reseedCounter + chunks > this.drbg.reseedInterval) {
      return 'interval';
    }
    return null;
  }

  /**
   * `n` bytes from the output buffer, refilled by one generate call of `bufferBytes` when short
   * (`bufferReseedCounter` then names that call). Each slice is zeroed in the buffer as it
   * leaves. Null when the DRBG wants a reseed first (forced on the next request).
   */
  takeBuffered(n: number, bufferBytes: number, reseedBytes: number): Uint8Array | null {
    let buf = this.buffer;
    if (buf === null || buf.length - this.bufferOffset < n) {
      this.dropBuffer();
      let fresh: Uint8Array;
      try {
        fresh = this.drbg.generate(bufferBytes);
      } catch (err) {
        if (err instanceof ReseedRequiredError) {
          this.bytesSinceReseed = reseedBytes;
          return null;
        }
        throw err;
      }
      buf = Buffer.from(fresh.buffer, fresh.byteOffset, fresh.byteLength);
      this.buffer = buf;
      this.bufferOffset = 0;
      this.bufferReseedCounter = this.drbg.reseedCounter;
      this.bytesSinceReseed += buf.length;
    }
    const start = this.bufferOffset;
    const out = new Uint8Array(n);
    out.set(buf.subarray(start, start + n));
    buf.fill(0, start, start + n);
    this.bufferOffset = start + n;
    return out;
  }
}
