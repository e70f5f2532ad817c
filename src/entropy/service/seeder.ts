import { randomUUID } from 'node:crypto';
import type { HmacConditioner } from '../conditioner.js';
import type { Lineage } from './lineage.js';
import type { ReseedEvent } from './options.js';
import { type SeedInput, failedSince, gatherSeedInput } from './seed-input.js';
import type { SourceSet } from './sources.js';

const PERSONALIZATION_QUANTUM = new TextEncoder().encode('qkm/v1 entropy-service quantum');
const PERSONALIZATION_OS = new TextEncoder().encode('qkm/v1 entropy-service os-fallback');

export interface LineageSeederOptions {
  sources: SourceSet;
  conditioner: HmacConditioner;
  /** Wall clock in ms since the epoch: nonces and `seededAt`. */
  clock: () => number;
  /** Called after every (re)seed, with the lineage updated (counting, events, degraded check). */
  onSeeded: (event: ReseedEvent) => void;
}

/**
 * (Re)instantiates and reseeds lineages from their healthy sources only, one seeding at a time
 * per lineage. A new instantiate is a new lineage: new instance id, contributors reset, taint
 * cleared; a source that failed while its bytes were on the way taints the result at once.
 */
export class LineageSeeder {
  private nonceCounter = 0n;

  constructor(private readonly o: LineageSeederOptions) {}

  /** Seed input from every healthy source of the lineage (prediction resistance uses it too). */
  gather(l: Lineage): Promise<SeedInput> {
    return gatherSeedInput(
      this.o.sources.healthy(l.origin),
      l.drbg.securityStrength,
      this.o.conditioner,
      l.origin,
    );
  }

  /** Single-flight (re)seed of a lineage from its healthy sources. */
  seed(l: Lineage, cause: ReseedEvent['cause']): Promise<void> {
    if (l.seeding) return l.seeding;
    const run = (async () => {
      const fresh = !l.seeded || l.tainted !== null || !l.drbg.instantiated;
      const g = await this.gather(l);
      // Output generated under the previous seed must not be served with the new seed's provenance.
      l.dropBuffer();
      // Sources may have failed while we awaited them; use only those still healthy on the same generation.
      if (fresh) {
        const nonce = this.nonce();
        if (l.drbg.instantiated) l.drbg.uninstantiate();
        l.drbg.instantiate(
          g.entropy,
          nonce,
          l.origin === 'quantum' ? PERSONALIZATION_QUANTUM : PERSONALIZATION_OS,
        );
        l.instance = randomUUID();
        l.contributors = new Set(g.sources.map((m) => m.id));
        l.tainted = null;
        l.seeded = true;
      } else {
        l.drbg.reseed(g.entropy);
        for (const m of g.sources) l.contributors.add(m.id);
      }
      g.entropy.fill(0);
      // Monitors run on their own timers: one may have failed between gather() and here. Its
      // bytes are now in the state, so the lineage must not be used.
      const failed = failedSince(g);
      if (failed && l.tainted === null)
        l.tainted = `${failed.id} ${failed.state} (${failed.reason ?? 'failed'})`;
      l.credited = g.credited;
      l.seededAt = this.o.clock();
      l.bytesSinceReseed = 0;
      this.o.onSeeded({
        origin: l.origin,
        operation: fresh ? 'instantiate' : 'reseed',
        cause,
        instance: l.instance,
        creditedBits: g.credited,
        sources: g.sources.map((m) => m.id),
      });
    })();
    l.seeding = run;
    const clear = (): void => {
      if (l.seeding === run) l.seeding = null;
    };
    run.then(clear, clear);
    return run;
  }

  /** The scheduled reseed: every lineage with a healthy source; a tainted or unseeded one anew. */
  async reseedAll(lineages: Lineage[]): Promise<void> {
    await Promise.allSettled(
      lineages.map(async (l) => {
        if (this.o.sources.healthy(l.origin).length === 0) return;
        await this.seed(l, l.seeded && l.tainted === null ? 'cron' : 'recovery');
      }),
    );
  }

  /** SP 800-90A §8.6.7: a timestamp concatenated with a monotonically increasing sequence number. */
  private nonce(): Uint8Array {
    const nonce = new Uint8Array(16);
    const view = new DataView(nonce.buffer);
    view.setBigUint64(0, BigInt(Math.floor(this.o.clock())));
    view.setBigUint64(8, ++this.nonceCounter);
    return nonce;
  }
}
