/**
 * EntropyService: serves DRBG output seeded from conditioned, health-tested quantum entropy,
 * and tells the truth about it in every output's provenance.
 *
 * Two DRBG instances:
 * - the *quantum* DRBG, instantiated and reseeded only from healthy quantum sources, each of
 *   which contributes ⌈strength/256⌉ full-entropy HMAC-SHA-256 blocks (SP 800-90B §3.1.5.1.2),
 *   each block conditioned from whole APT windows of tested bytes;
 * - the *fallback* DRBG, seeded the same way from the OS CSPRNG (after the same health tests);
 *   everything it serves is `degraded: true` with a reason.
 *
 * The invariant: once a quantum source that fed the quantum DRBG's current lineage leaves
 * `healthy`, that lineage is *tainted* and is never used again. From the next request on, output
 * comes from the fallback (degraded) or `require: 'quantum'` is rejected, until some quantum source
 * is healthy (for a recovered one: after a fresh start-up test) and the quantum DRBG has been
 * re-instantiated — a new lineage, new instance id — from healthy sources only.
 *
 * Small requests (≤ `bufferedRequestMax` bytes, no prediction resistance, no additional input)
 * may be served from a per-lineage buffer of one earlier generate call's output, when
 * `outputBufferBytes` > 0: a 32-byte request then costs a copy, not an AES key schedule. The
 * buffer belongs to its lineage and its seed: it is wiped on every (re)seed, on taint and on
 * stop, each served slice is zeroed as it leaves (backtracking resistance for what was handed
 * out), and the provenance names the reseed counter of the generate call that produced it.
 */
import { EventEmitter } from 'node:events';
import { osEntropyFactory } from '../../drivers/entropy/os/index.js';
import { QkmError } from '../core/errors.js';
import { JobScheduler, isValidCron } from '../core/jobs.js';
import type { SourceSnapshot } from '../core/provenance.js';
import { HmacConditioner } from './conditioner.js';
import { CtrDrbg } from './drbg/ctr-drbg.js';
import { ReseedRequiredError } from './drbg/interface.js';
import { Lineage } from './service/lineage.js';
import type {
  DegradedEvent,
  EntropyServiceOptions,
  EntropySourceConfig,
  ReseedEvent,
} from './service/options.js';
import { ProvenanceBuilder, type ServiceCounters } from './service/provenance.js';
import { type SeedInput, failedSince } from './service/seed-input.js';
import { LineageSeeder } from './service/seeder.js';
import { SourceSet } from './service/sources.js';
import type { SourceHealthEvent, SourceMonitor } from './source-monitor.js';
import type { EntropyProvider, EntropyRequest, EntropyResult, EntropyStatus } from './types.js';

// The service's parts live in ./service/: sources (which monitor feeds which DRBG), seed-input
// (conditioning), seeder (instantiate/reseed), lineage (DRBG state, output buffer), provenance
// (provenance and status). Callers import from here.
export type {
  DegradedEvent,
  EntropyServiceOptions,
  EntropySourceConfig,
  MonitorTuning,
  ReseedEvent,
} from './service/options.js';

const MIB = 1 << 20;

export interface EntropyService {
  on(event: 'health', listener: (event: SourceHealthEvent) => void): this;
  on(event: 'state', listener: (snapshot: SourceSnapshot) => void): this;
  on(event: 'reseed', listener: (event: ReseedEvent) => void): this;
  on(event: 'degraded', listener: (event: DegradedEvent) => void): this;
  off(event: string, listener: (...args: never[]) => void): this;
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: typed event overloads for EventEmitter
export class EntropyService extends EventEmitter implements EntropyProvider {
  readonly maxRequestBytes: number;
  readonly reseedBytes: number;
  private readonly sources: SourceSet;
  private readonly seeder: LineageSeeder;
  private readonly provenance: ProvenanceBuilder;
  private readonly clock: () => number;
  private readonly cronExpr: string | null;
  private readonly outputBufferBytes: number;
  private readonly bufferedRequestMax: number;
  private readonly quantum: Lineage;
  private readonly fallback: Lineage;
  /** The scheduled reseed (src/core/jobs.ts); its one job cannot fail, so it has no logger. */
  private readonly jobs = new JobScheduler();
  private started = false;
  /** Background (re)seeding on source recovery; off until start() has done the first seeding. */
  private autoSeed = false;
  private lastDegraded: boolean | null = null;
  private readonly counters: ServiceCounters = {
    bytesServed: 0,
    bytesServedDegraded: 0,
    reseeds: 0,
    requestsRejected: 0,
  };

  constructor(options: EntropyServiceOptions = {}) {
    super();
    this.maxRequestBytes = options.maxRequestBytes ?? 65_536;
    this.reseedBytes = options.reseedBytes ?? MIB;
    if (!Number.isInteger(this.maxRequestBytes) || this.maxRequestBytes < 1) {
      throw new RangeError('maxRequestBytes must be a positive integer');
    }
    if (!(this.reseedBytes >= 1)) throw new RangeError('reseedBytes must be ≥ 1');
    this.cronExpr = options.reseedCron === undefined ? '* * * * *' : options.reseedCron;
    if (this.cronExpr !== null && !isValidCron(this.cronExpr)) {
      throw new RangeError(`invalid reseed cron expression: ${this.cronExpr}`);
    }
    const conditioner = options.conditioner ?? new HmacConditioner();
    this.clock = options.clock ?? Date.now;
    const createDrbg = options.createDrbg ?? (() => new CtrDrbg({ cipher: 'aes-256', df: true }));
    this.quantum = new Lineage(createDrbg(), 'quantum');
    this.fallback = new Lineage(createDrbg(), 'os');
    this.outputBufferBytes = options.outputBufferBytes ?? 0;
    this.bufferedRequestMax = Math.min(options.bufferedRequestMax ?? 256, this.outputBufferBytes);
    const drbgMax = Math.min(this.quantum.drbg.maxRequestBytes, this.fallback.drbg.maxRequestBytes);
    if (
      !Number.isInteger(this.outputBufferBytes) ||
      this.outputBufferBytes < 0 ||
      this.outputBufferBytes > drbgMax
    ) {
      throw new RangeError(`outputBufferBytes must be an integer in 0..${drbgMax}`);
    }
    this.sources = new SourceSet(
      options.sources ?? [],
      options.osSource ?? { factory: osEntropyFactory },
      options.monitor ?? {},
      (m) => this.wire(m),
    );
    this.seeder = new LineageSeeder({
      sources: this.sources,
      conditioner,
      clock: this.clock,
      onSeeded: (ev) => {
        this.counters.reseeds++;
        this.emit('reseed', ev);
        this.noteDegraded();
      },
    });
    this.provenance = new ProvenanceBuilder(this.sources);
  }

  private wire(m: SourceMonitor): void {
    m.on('health', (ev) => this.emit('health', ev));
    m.on('state', (snap) => this.onSourceState(m, snap));
  }

  /**
   * Adds a quantum source while running: a device plugged in after start. It runs its start-up
   * test like any other and feeds the quantum DRBG from its next (re)seed on; a lineage that
   * cannot serve (no healthy source so far) is re-instantiated as soon as it passes. Resolves
   * with false, adding nothing, when a monitor already watches that id (it re-opens its own
   * device on replug) or when one of the same driver has not opened its device yet (it may be
   * about to open this one). Resolves after the new source's first start-up attempt.
   */
  async addSource(source: EntropySourceConfig): Promise<boolean> {
    const id = source.open?.id ?? source.open?.serial ?? source.open?.path;
    if (id === undefined) throw new RangeError('addSource needs open.id, serial or path');
    if (!this.started) return false;
    const m = this.sources.add(source, id);
    if (!m) return false;
    await m.start();
    return true;
  }

  /** The monitors, for the lead's metrics and the CLI (`sources list`). Read-only use. */
  get monitors(): readonly SourceMonitor[] {
    return this.sources.all();
  }

  /**
   * Opens every source, runs their start-up tests, seeds both DRBGs (those that can be), and
   * schedules the cron reseed. Resolves even when no quantum source came up (service degraded).
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await Promise.all(this.sources.all().map((m) => m.start()));
    await Promise.allSettled([
      this.seeder.seed(this.quantum, 'start'),
      this.seeder.seed(this.fallback, 'start'),
    ]);
    this.autoSeed = true;
    if (this.cronExpr !== null) this.jobs.cron('entropy-reseed', this.cronExpr, () => this.reseedNow());
    this.noteDegraded();
  }

  /** Cancels the cron job, stops every monitor (closing the sources) and zeroises both DRBGs. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.autoSeed = false;
    this.jobs.stop();
    await Promise.all(this.sources.all().map((m) => m.stop()));
    await Promise.allSettled([this.quantum.seeding, this.fallback.seeding]);
    for (const l of [this.quantum, this.fallback]) l.wipe();
  }

  /** Reseeds both DRBGs now (what the cron job does). */
  async reseedNow(): Promise<void> {
    await this.seeder.reseedAll([this.quantum, this.fallback]);
  }

  /**
   * The synchronous fast path of getEntropy: the output when the quantum DRBG can serve right
   * now with nothing to (re)seed or gather first, else null (then call getEntropy). Throws what
   * getEntropy throws for an invalid request.
   */
  getEntropyNow(n: number, request: EntropyRequest = {}): EntropyResult | null {
    this.validate(n, request);
    if (request.predictionResistance === true) return null;
    if (this.dueSeeding(this.quantum, false) !== null || !this.usable(this.quantum)) return null;
    return this.produce(this.quantum, n, false, request.additionalInput, null);
  }

  async getEntropy(n: number, request: EntropyRequest = {}): Promise<EntropyResult> {
    const now = this.getEntropyNow(n, request);
    if (now) return now;
    const require = request.require ?? 'any';
    const pr = request.predictionResistance === true;
    if (await this.prepare(this.quantum, pr)) {
      const out = await this.generate(this.quantum, n, pr, request.additionalInput);
      if (out) return out;
    }
    if (require === 'quantum') {
      this.counters.requestsRejected++;
      throw new QkmError(
        'QUANTUM_ENTROPY_UNAVAILABLE',
        `quantum entropy required but ${this.degradedReason()}`,
      );
    }
    if (await this.prepare(this.fallback, pr)) {
      const out = await this.generate(this.fallback, n, pr, request.additionalInput);
      if (out) return out;
    }
    this.counters.requestsRejected++;
    throw new QkmError(
      'ENTROPY_UNAVAILABLE',
      `${this.degradedReason()}; the OS fallback is ${this.sources.os.state}`,
    );
  }

  private validate(n: number, request: EntropyRequest): void {
    if (!Number.isInteger(n) || n < 1 || n > this.maxRequestBytes) {
      throw new QkmError('INVALID_PARAMETER', `bytes must be an integer in 1..${this.maxRequestBytes}`);
    }
    const require = request.require ?? 'any';
    if (require !== 'any' && require !== 'quantum') {
      throw new QkmError('INVALID_PARAMETER', "require must be 'quantum' or 'any'");
    }
    if (request.additionalInput !== undefined && !(request.additionalInput instanceof Uint8Array)) {
      throw new QkmError('INVALID_PARAMETER', 'additionalInput must be bytes');
    }
    if (!this.started) throw new QkmError('ENTROPY_UNAVAILABLE', 'the entropy service is not started');
  }

  status(): EntropyStatus {
    const quantumOk = this.usable(this.quantum);
    const serving = quantumOk ? this.quantum : this.fallback;
    const reason = quantumOk ? undefined : this.degradedReason();
    return this.provenance.status(serving, quantumOk, this.counters, reason);
  }

  // --- internals ---

  /** May this lineage serve right now? Checked synchronously right before every generate. */
  private usable(l: Lineage): boolean {
    if (!l.seeded || l.tainted !== null || !l.drbg.instantiated) return false;
    return this.sources.servesWith(l.origin, l.contributors);
  }

  private onSourceState(m: SourceMonitor, snap: SourceSnapshot): void {
    this.emit('state', snap);
    for (const l of [this.quantum, this.fallback]) {
      l.sourcesCache = null;
      l.lastProvenance = null;
      if (snap.state !== 'healthy' && l.contributors.has(m.id) && l.tainted === null) {
        l.tainted = `${m.id} ${snap.state}${snap.reason ? ` (${snap.reason})` : ''}`;
        l.dropBuffer();
      }
      // A source came (back) up: re-instantiate a tainted or unseeded lineage in the background,
      // so status turns non-degraded without waiting for traffic.
      if (snap.state === 'healthy' && this.autoSeed && (!l.seeded || l.tainted !== null)) {
        if (this.sources.feeding(l.origin).includes(m))
          void this.seeder.seed(l, 'recovery').catch(() => undefined);
      }
    }
    this.noteDegraded();
  }

  private noteDegraded(): void {
    const degraded = !this.usable(this.quantum);
    if (degraded === this.lastDegraded) return;
    this.lastDegraded = degraded;
    const ev: DegradedEvent = { degraded };
    if (degraded) ev.reason = this.degradedReason();
    this.emit('degraded', ev);
  }

  /** Why the quantum DRBG cannot serve now (only meaningful when it cannot). */
  private degradedReason(): string {
    const noSource = this.sources.quantumUnavailable();
    if (noSource !== null) return noSource;
    if (this.quantum.tainted !== null) {
      return `quantum DRBG awaiting re-instantiation from healthy sources after ${this.quantum.tainted}`;
    }
    if (!this.quantum.seeded) return 'quantum DRBG not seeded yet';
    return 'quantum DRBG not usable';
  }

  /**
   * Gets a lineage ready to serve: (re)instantiates when unseeded or tainted, reseeds when the
   * byte count or the DRBG's reseed interval says so. False if it cannot serve.
   */
  private async prepare(l: Lineage, predictionResistance: boolean): Promise<boolean> {
    if (this.sources.healthy(l.origin).length === 0) return false;
    try {
      const cause = this.dueSeeding(l, predictionResistance);
      if (cause !== null) await this.seeder.seed(l, cause);
    } catch {
      // A source failed while we read from it; its monitor has recorded why.
    }
    return this.usable(l);
  }

  private dueSeeding(l: Lineage, predictionResistance: boolean): ReseedEvent['cause'] | null {
    return l.dueSeeding(predictionResistance, this.reseedBytes, this.maxRequestBytes);
  }

  /**
   * Generates `n` bytes from a lineage in DRBG-sized chunks. With prediction resistance, fresh
   * entropy is gathered first and the first chunk uses generateWithReseed. Returns null when the
   * lineage stopped being usable (the caller falls through to the next option).
   */
  private async generate(
    l: Lineage,
    n: number,
    predictionResistance: boolean,
    additionalInput: Uint8Array | undefined,
  ): Promise<EntropyResult | null> {
    let prInput: SeedInput | null = null;
    if (predictionResistance) {
      try {
        prInput = await this.seeder.gather(l);
      } catch {
        return null;
      }
    }
    return this.produce(l, n, predictionResistance, additionalInput, prInput);
  }

  /**
   * The synchronous part of generate: checks the lineage, then takes `n` bytes from the output
   * buffer or from the DRBG. Nothing can change between the check and the output.
   */
  private produce(
    l: Lineage,
    n: number,
    predictionResistance: boolean,
    additionalInput: Uint8Array | undefined,
    prInput: SeedInput | null,
  ): EntropyResult | null {
    if (!this.usable(l) || (prInput && failedSince(prInput))) {
      prInput?.entropy.fill(0);
      return null;
    }
    if (prInput === null && additionalInput === undefined && n <= this.bufferedRequestMax) {
      const out = l.takeBuffered(n, this.outputBufferBytes, this.reseedBytes);
      return out && this.served(l, out, l.bufferReseedCounter, false);
    }
    const out = new Uint8Array(n);
    try {
      let off = 0;
      if (prInput) {
        const k = Math.min(n, l.drbg.maxRequestBytes);
        out.set(l.drbg.generateWithReseed(k, prInput.entropy, additionalInput), 0);
        off = k;
        for (const m of prInput.sources) l.contributors.add(m.id);
        // Buffered output predates this reseed; so do the cached seededAt and contributors.
        l.dropBuffer();
        l.credited = prInput.credited;
        l.seededAt = this.clock();
        l.bytesSinceReseed = 0;
        this.counters.reseeds++;
        prInput.entropy.fill(0);
      }
      while (off < n) {
        const k = Math.min(n - off, l.drbg.maxRequestBytes);
        out.set(l.drbg.generate(k, additionalInput), off);
        off += k;
      }
    } catch (err) {
      out.fill(0);
      if (err instanceof ReseedRequiredError) {
        l.bytesSinceReseed = this.reseedBytes; // forces a reseed on the next request
        return null;
      }
      throw err;
    }
    if (prInput) {
      this.emit('reseed', {
        origin: l.origin,
        operation: 'reseed',
        cause: 'prediction-resistance',
        instance: l.instance,
        creditedBits: prInput.credited,
        sources: prInput.sources.map((m) => m.id),
      } satisfies ReseedEvent);
    }
    l.bytesSinceReseed += n;
    return this.served(l, out, l.drbg.reseedCounter, predictionResistance);
  }

  /** Counts the output and attaches its provenance. */
  private served(
    l: Lineage,
    out: Uint8Array,
    reseedCounter: number,
    predictionResistance: boolean,
  ): EntropyResult {
    const n = out.length;
    const degraded = l.origin !== 'quantum';
    this.counters.bytesServed += n;
    if (degraded) this.counters.bytesServedDegraded += n;
    const now = this.clock();
    const reason = degraded ? this.degradedReason() : undefined;
    return {
      bytes: out,
      provenance: this.provenance.of(l, reseedCounter, predictionResistance, now, reason),
    };
  }
}
