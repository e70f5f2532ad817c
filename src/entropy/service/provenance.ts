import type { DrbgProvenance, Provenance } from '../../core/provenance.js';
import type { EntropyStatus } from '../types.js';
import type { Lineage } from './lineage.js';
import type { SourceSet } from './sources.js';

/** How long provenance may reuse source snapshots (their min-entropy estimates move slowly). */
const SNAPSHOT_TTL_MS = 1000;

/** What the service has served and refused since start (`EntropyStatus.counters`, less health failures). */
export interface ServiceCounters {
  bytesServed: number;
  bytesServedDegraded: number;
  reseeds: number;
  requestsRejected: number;
}

/**
 * What the service says about its output and about itself: the frozen provenance attached to
 * every output, and `status()`. Provenance is built once per lineage state and millisecond and
 * shared (it runs on every request); source snapshots are reused for at most `SNAPSHOT_TTL_MS`.
 */
export class ProvenanceBuilder {
  private lastIso = { ms: Number.NaN, iso: '' };

  constructor(private readonly sources: SourceSet) {}

  /**
   * The provenance of output from `l` produced by the generate call that left the DRBG at
   * `reseedCounter`, at `now`. `reason` is set when the output is degraded.
   */
  of(
    l: Lineage,
    reseedCounter: number,
    predictionResistance: boolean,
    now: number,
    reason: string | undefined,
  ): Provenance {
    let cache = l.sourcesCache;
    if (cache === null || now - cache.at >= SNAPSHOT_TTL_MS || now < cache.at) {
      cache = {
        sources: this.sources
          .feeding(l.origin)
          .filter((m) => l.contributors.has(m.id))
          .map((m) => Object.freeze(m.snapshot())),
        seededAt: new Date(l.seededAt).toISOString(),
        at: now,
      };
      Object.freeze(cache.sources);
      l.sourcesCache = cache;
    }
    const last = l.lastProvenance;
    if (
      last !== null &&
      last.sources === cache &&
      last.reseedCounter === reseedCounter &&
      last.now === now &&
      last.predictionResistance === predictionResistance &&
      last.reason === reason
    ) {
      return last.value;
    }
    const drbg: DrbgProvenance = Object.freeze({
      name: l.drbg.name,
      instance: l.instance,
      reseedCounter,
      seededAt: cache.seededAt,
      predictionResistance,
    });
    const provenance: Provenance = {
      seedOrigin: l.origin,
      sources: cache.sources,
      entropyCredited: l.credited,
      drbg,
      degraded: l.origin !== 'quantum',
      at: this.isoAt(now),
    };
    if (reason !== undefined) provenance.reason = reason;
    Object.freeze(provenance);
    l.lastProvenance = {
      value: provenance,
      sources: cache,
      reseedCounter,
      now,
      predictionResistance,
      reason,
    };
    return provenance;
  }

  /**
   * The service's status: `serving` is the lineage output would come from now (the quantum one
   * when `quantumOk`), `reason` why the quantum one cannot serve (when it cannot).
   */
  status(
    serving: Lineage,
    quantumOk: boolean,
    counters: ServiceCounters,
    reason: string | undefined,
  ): EntropyStatus {
    const status: EntropyStatus = {
      quantumAvailable: quantumOk,
      degraded: !quantumOk,
      sources: this.sources.all().map((m) => m.snapshot()),
      drbg: {
        name: serving.drbg.name,
        seedOrigin: serving.seeded ? serving.origin : 'unseeded',
        reseedCounter: serving.drbg.reseedCounter,
        seededAt: serving.seeded ? new Date(serving.seededAt).toISOString() : null,
        bytesSinceReseed: serving.bytesSinceReseed,
      },
      counters: { ...counters, healthFailures: this.sources.failures() },
    };
    if (reason !== undefined) status.reason = reason;
    return status;
  }

  /** `new Date(ms).toISOString()`, formatted once per millisecond. */
  private isoAt(ms: number): string {
    if (ms !== this.lastIso.ms) this.lastIso = { ms, iso: new Date(ms).toISOString() };
    return this.lastIso.iso;
  }
}
