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
import { randomUUID } from 'node:crypto';
import cron, { type ScheduledTask } from 'node-cron';
import type { EntropySourceFactory, EntropySourceOpenOptions } from '../../drivers/entropy/interface.js';
import { osEntropyFactory } from '../../drivers/entropy/os/index.js';
import { QkmError } from '../core/errors.js';
import type { DrbgProvenance, Provenance, SourceSnapshot } from '../core/provenance.js';
import { HmacConditioner } from './conditioner.js';
import { CtrDrbg } from './drbg/ctr-drbg.js';
import { type Drbg, ReseedRequiredError } from './drbg/interface.js';
import { type SourceHealthEvent, SourceMonitor, type SourceMonitorOptions } from './source-monitor.js';
import type { EntropyProvider, EntropyRequest, EntropyResult, EntropyStatus } from './types.js';

export interface EntropySourceConfig {
  factory: EntropySourceFactory;
  open?: EntropySourceOpenOptions;
}

export type MonitorTuning = Omit<SourceMonitorOptions, 'factory' | 'open' | 'expectedKind'>;

export interface EntropyServiceOptions {
  /** Quantum sources (one monitor each). Sources whose `info().kind` is not `quantum` are monitored and shown but never seed the quantum DRBG. */
  sources?: EntropySourceConfig[];
  /** The OS source behind the fallback DRBG (default: `drivers/entropy/os`). */
  osSource?: EntropySourceConfig;
  /** Makes a DRBG; called twice (quantum, fallback). Default `new CtrDrbg({cipher: 'aes-256', df: true})`. */
  createDrbg?: () => Drbg;
  /** node-cron expression for scheduled reseeds (default every minute, `* * * * *`); null disables. */
  reseedCron?: string | null;
  /** Reseed after this many bytes served by a DRBG (default 1 MiB). */
  reseedBytes?: number;
  /** Per-request cap in bytes (default 65 536). */
  maxRequestBytes?: number;
  /** Back-off, sentinel interval, pool size for every source monitor. */
  monitor?: MonitorTuning;
  conditioner?: HmacConditioner;
  /** Wall clock in ms since the epoch (default `Date.now`); used for provenance times and nonces. */
  clock?: () => number;
  /**
   * Size of the per-lineage output buffer for small requests (default 0: every request is its
   * own generate call). At most the DRBG's per-request limit.
   */
  outputBufferBytes?: number;
  /** Largest request served from the output buffer (default 256 bytes). */
  bufferedRequestMax?: number;
}

/** Emitted as `reseed`; carries no seed material. */
export interface ReseedEvent {
  origin: 'quantum' | 'os';
  /** `instantiate` starts a new lineage. */
  operation: 'instantiate' | 'reseed';
  cause: 'start' | 'cron' | 'bytes' | 'interval' | 'prediction-resistance' | 'recovery' | 'first-use';
  instance: string;
  creditedBits: number;
  sources: string[];
}

/** Emitted as `degraded` when serving turns degraded or stops being degraded. */
export interface DegradedEvent {
  degraded: boolean;
  reason?: string;
}

interface Lineage {
  drbg: Drbg;
  origin: 'quantum' | 'os';
  seeded: boolean;
  instance: string;
  seededAt: number;
  /** Credited bits of the latest (re)seed input. */
  credited: number;
  /** Every source whose entropy went into this lineage since instantiate. */
  contributors: Set<string>;
  bytesSinceReseed: number;
  /** Set when a contributor failed: the lineage must not be used again. */
  tainted: string | null;
  /** Single-flight for (re)seeding. */
  seeding: Promise<void> | null;
  /** Output of one generate call not yet handed out; bytes before `bufferOffset` are zeroed. */
  buffer: Buffer | null;
  bufferOffset: number;
  /** Reseed counter right after the generate call that filled `buffer`. */
  bufferReseedCounter: number;
  /** Source snapshots for provenance, reused until a state change, a (re)seed or `SNAPSHOT_TTL_MS`. */
  sourcesCache: { sources: SourceSnapshot[]; seededAt: string; at: number } | null;
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
  } | null;
}

interface Gathered {
  entropy: Uint8Array;
  credited: number;
  sources: SourceMonitor[];
  /** Each source's `generation` when its bytes were taken, to detect a failure since. */
  generations: number[];
}

/** The first source of `g` that left `healthy` since its bytes were taken, if any. */
function failedSince(g: Gathered): SourceMonitor | undefined {
  return g.sources.find((m, i) => m.state !== 'healthy' || m.generation !== g.generations[i]);
}

const PERSONALIZATION_QUANTUM = new TextEncoder().encode('qkm/v1 entropy-service quantum');
const PERSONALIZATION_OS = new TextEncoder().encode('qkm/v1 entropy-service os-fallback');
const MIB = 1 << 20;
/** How long provenance may reuse source snapshots (their min-entropy estimates move slowly). */
const SNAPSHOT_TTL_MS = 1000;

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
  private readonly quantumMonitors: SourceMonitor[];
  private readonly tuning: MonitorTuning;
  private readonly osMonitor: SourceMonitor;
  private readonly conditioner: HmacConditioner;
  private readonly clock: () => number;
  private readonly cronExpr: string | null;
  private readonly outputBufferBytes: number;
  private readonly bufferedRequestMax: number;
  private readonly quantum: Lineage;
  private readonly fallback: Lineage;
  private cronTask: ScheduledTask | null = null;
  private started = false;
  /** Background (re)seeding on source recovery; off until start() has done the first seeding. */
  private autoSeed = false;
  private nonceCounter = 0n;
  private lastDegraded: boolean | null = null;
  private readonly counters = {
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
    if (this.cronExpr !== null && !cron.validate(this.cronExpr)) {
      throw new RangeError(`invalid reseed cron expression: ${this.cronExpr}`);
    }
    this.conditioner = options.conditioner ?? new HmacConditioner();
    this.clock = options.clock ?? Date.now;
    const createDrbg = options.createDrbg ?? (() => new CtrDrbg({ cipher: 'aes-256', df: true }));
    this.quantum = this.newLineage(createDrbg(), 'quantum');
    this.fallback = this.newLineage(createDrbg(), 'os');
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
    this.tuning = options.monitor ?? {};
    this.quantumMonitors = (options.sources ?? []).map(
      (s) => new SourceMonitor({ ...this.tuning, factory: s.factory, open: s.open, expectedKind: 'quantum' }),
    );
    const os = options.osSource ?? { factory: osEntropyFactory };
    this.osMonitor = new SourceMonitor({
      ...this.tuning,
      factory: os.factory,
      open: os.open,
      expectedKind: 'os',
    });
    for (const m of [...this.quantumMonitors, this.osMonitor]) this.wire(m);
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
    const driver = source.factory.driver;
    const clash = this.quantumMonitors.some(
      (m) => m.id === id || (m.info === undefined && m.state !== 'closed' && m.driver === driver),
    );
    if (clash || !this.started) return false;
    const m = new SourceMonitor({
      ...this.tuning,
      factory: source.factory,
      open: source.open,
      expectedKind: 'quantum',
    });
    this.quantumMonitors.push(m);
    this.wire(m);
    await m.start();
    return true;
  }

  /** The monitors, for the lead's metrics and the CLI (`sources list`). Read-only use. */
  get monitors(): readonly SourceMonitor[] {
    return [...this.quantumMonitors, this.osMonitor];
  }

  /**
   * Opens every source, runs their start-up tests, seeds both DRBGs (those that can be), and
   * schedules the cron reseed. Resolves even when no quantum source came up (service degraded).
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await Promise.all([...this.quantumMonitors, this.osMonitor].map((m) => m.start()));
    await Promise.allSettled([this.seed(this.quantum, 'start'), this.seed(this.fallback, 'start')]);
    this.autoSeed = true;
    if (this.cronExpr !== null) {
      this.cronTask = cron.schedule(this.cronExpr, () => this.scheduledReseed(), {
        name: 'qkm-entropy-reseed',
        noOverlap: true,
      });
      this.cronTask.unref();
    }
    this.noteDegraded();
  }

  /** Cancels the cron job, stops every monitor (closing the sources) and zeroises both DRBGs. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.autoSeed = false;
    const task = this.cronTask;
    this.cronTask = null;
    if (task) await task.destroy();
    await Promise.all([...this.quantumMonitors, this.osMonitor].map((m) => m.stop()));
    await Promise.allSettled([this.quantum.seeding, this.fallback.seeding]);
    for (const l of [this.quantum, this.fallback]) {
      this.dropBuffer(l);
      if (l.drbg.instantiated) l.drbg.uninstantiate();
      l.seeded = false;
      l.contributors.clear();
    }
  }

  /** Reseeds both DRBGs now (what the cron job does). */
  async reseedNow(): Promise<void> {
    await this.scheduledReseed();
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
      `${this.degradedReason()}; the OS fallback is ${this.osMonitor.state}`,
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
    const lineage = quantumOk ? this.quantum : this.fallback;
    const status: EntropyStatus = {
      quantumAvailable: quantumOk,
      degraded: !quantumOk,
      sources: [...this.quantumMonitors, this.osMonitor].map((m) => m.snapshot()),
      drbg: {
        name: lineage.drbg.name,
        seedOrigin: lineage.seeded ? lineage.origin : 'unseeded',
        reseedCounter: lineage.drbg.reseedCounter,
        seededAt: lineage.seeded ? new Date(lineage.seededAt).toISOString() : null,
        bytesSinceReseed: lineage.bytesSinceReseed,
      },
      counters: {
        ...this.counters,
        healthFailures: [...this.quantumMonitors, this.osMonitor].reduce((a, m) => a + m.failures, 0),
      },
    };
    if (!quantumOk) status.reason = this.degradedReason();
    return status;
  }

  // --- internals ---

  private newLineage(drbg: Drbg, origin: 'quantum' | 'os'): Lineage {
    return {
      drbg,
      origin,
      seeded: false,
      instance: '',
      seededAt: 0,
      credited: 0,
      contributors: new Set(),
      bytesSinceReseed: 0,
      tainted: null,
      seeding: null,
      buffer: null,
      bufferOffset: 0,
      bufferReseedCounter: 0,
      sourcesCache: null,
      lastProvenance: null,
    };
  }

  /** Wipes and forgets a lineage's buffered output and cached snapshots. */
  private dropBuffer(l: Lineage): void {
    l.buffer?.fill(0);
    l.buffer = null;
    l.bufferOffset = 0;
    l.sourcesCache = null;
    l.lastProvenance = null;
  }

  private monitorsOf(l: Lineage): SourceMonitor[] {
    return l.origin === 'quantum'
      ? this.quantumMonitors.filter((m) => m.kind === 'quantum')
      : [this.osMonitor];
  }

  private healthyOf(l: Lineage): SourceMonitor[] {
    return this.monitorsOf(l).filter((m) => m.state === 'healthy');
  }

  /** May this lineage serve right now? Checked synchronously right before every generate. */
  private usable(l: Lineage): boolean {
    if (!l.seeded || l.tainted !== null || !l.drbg.instantiated) return false;
    // Allocation-free (this runs on every request): some source of the lineage is healthy, and
    // every contributor is one of the lineage's sources and healthy.
    const quantum = l.origin === 'quantum';
    let healthy = 0;
    let healthyContributors = 0;
    for (const m of quantum ? this.quantumMonitors : [this.osMonitor]) {
      if (quantum && m.kind !== 'quantum') continue;
      if (m.state !== 'healthy') continue;
      healthy++;
      if (l.contributors.has(m.id)) healthyContributors++;
    }
    return healthy > 0 && healthyContributors === l.contributors.size;
  }

  private onSourceState(m: SourceMonitor, snap: SourceSnapshot): void {
    this.emit('state', snap);
    for (const l of [this.quantum, this.fallback]) {
      l.sourcesCache = null;
      l.lastProvenance = null;
      if (snap.state !== 'healthy' && l.contributors.has(m.id) && l.tainted === null) {
        l.tainted = `${m.id} ${snap.state}${snap.reason ? ` (${snap.reason})` : ''}`;
        this.dropBuffer(l);
      }
      // A source came (back) up: re-instantiate a tainted or unseeded lineage in the background,
      // so status turns non-degraded without waiting for traffic.
      if (snap.state === 'healthy' && this.autoSeed && (!l.seeded || l.tainted !== null)) {
        if (this.monitorsOf(l).includes(m)) void this.seed(l, 'recovery').catch(() => undefined);
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
    const qs = this.quantumMonitors.filter((m) => m.kind === 'quantum');
    if (qs.length === 0) return 'no quantum source configured';
    const healthy = qs.filter((m) => m.state === 'healthy');
    if (healthy.length === 0) {
      const parts = qs.map((m) => `${m.id} ${m.state}${m.reason ? ` (${m.reason})` : ''}`);
      return `no healthy quantum source: ${parts.join('; ')}`;
    }
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
    if (this.healthyOf(l).length === 0) return false;
    try {
      const cause = this.dueSeeding(l, predictionResistance);
      if (cause !== null) await this.seed(l, cause);
    } catch {
      // A source failed while we read from it; its monitor has recorded why.
    }
    return this.usable(l);
  }

  /** Why the lineage must be (re)seeded before it serves, or null when it need not be. */
  private dueSeeding(l: Lineage, predictionResistance: boolean): ReseedEvent['cause'] | null {
    if (!l.seeded || l.tainted !== null) return l.tainted !== null ? 'recovery' : 'first-use';
    if (l.bytesSinceReseed >= this.reseedBytes) return 'bytes';
    // Leave room for the chunks of one request; prediction resistance reseeds anyway.
    if (!predictionResistance && l.drbg.reseedCounter + this.chunksFor(l) > l.drbg.reseedInterval) {
      return 'interval';
    }
    return null;
  }

  private chunksFor(l: Lineage): number {
    return Math.ceil(this.maxRequestBytes / l.drbg.maxRequestBytes);
  }

  /** Single-flight (re)seed of a lineage from its healthy sources. */
  private seed(l: Lineage, cause: ReseedEvent['cause']): Promise<void> {
    if (l.seeding) return l.seeding;
    const run = (async () => {
      const fresh = !l.seeded || l.tainted !== null || !l.drbg.instantiated;
      const g = await this.gather(l);
      // Output generated under the previous seed must not be served with the new seed's provenance.
      this.dropBuffer(l);
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
      l.seededAt = this.clock();
      l.bytesSinceReseed = 0;
      this.counters.reseeds++;
      this.emit('reseed', {
        origin: l.origin,
        operation: fresh ? 'instantiate' : 'reseed',
        cause,
        instance: l.instance,
        creditedBits: g.credited,
        sources: g.sources.map((m) => m.id),
      } satisfies ReseedEvent);
      this.noteDegraded();
    })();
    l.seeding = run;
    const clear = (): void => {
      if (l.seeding === run) l.seeding = null;
    };
    run.then(clear, clear);
    return run;
  }

  /**
   * Full-entropy input from every healthy source of the lineage: per source ⌈strength/256⌉
   * conditioned blocks, each from the fewest whole APT windows of tested raw bytes that give
   * h_in ≥ 256 + 64. Throws if no
   * source delivered. Sources that failed while being read are left out (their bytes discarded).
   */
  private async gather(l: Lineage): Promise<Gathered> {
    const blocksPerSource = Math.ceil(l.drbg.securityStrength / this.conditioner.outputBits);
    const healthy = this.healthyOf(l);
    const results = await Promise.allSettled(
      healthy.map(async (m) => {
        const gen = m.generation;
        const perByte = m.entropyPerByte;
        // Whole APT windows per block: the unit the monitor tests, and cheap per byte to hash.
        const blockBytes = this.conditioner.blockBytesFor(perByte, m.windowBytes);
        const raw = await m.take(blockBytes * blocksPerSource);
        if (m.generation !== gen || m.state !== 'healthy') throw new Error(`${m.id} failed while read`);
        const conditioned = this.conditioner.conditionBlocks(raw, blockBytes, perByte);
        raw.fill(0);
        if (!conditioned.fullEntropy) throw new Error(`${m.id}: conditioned blocks not full entropy`);
        return {
          monitor: m,
          blocks: [conditioned.output],
          credited: conditioned.creditedBits,
          generation: gen,
        };
      }),
    );
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    // Re-check after the await: a source that failed meanwhile must not contribute.
    const good = ok.filter((r) => r.monitor.state === 'healthy' && r.monitor.generation === r.generation);
    if (good.length === 0) throw new Error(`no healthy ${l.origin} source delivered entropy`);
    const blocks = good.flatMap((r) => r.blocks);
    const entropy = new Uint8Array(blocks.reduce((a, b) => a + b.length, 0));
    let off = 0;
    for (const b of blocks) {
      entropy.set(b, off);
      off += b.length;
      b.fill(0);
    }
    return {
      entropy,
      credited: good.reduce((a, r) => a + r.credited, 0),
      sources: good.map((r) => r.monitor),
      generations: good.map((r) => r.generation),
    };
  }

  /** SP 800-90A §8.6.7: a timestamp concatenated with a monotonically increasing sequence number. */
  private nonce(): Uint8Array {
    const nonce = new Uint8Array(16);
    const view = new DataView(nonce.buffer);
    view.setBigUint64(0, BigInt(Math.floor(this.clock())));
    view.setBigUint64(8, ++this.nonceCounter);
    return nonce;
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
    let prInput: Gathered | null = null;
    if (predictionResistance) {
      try {
        prInput = await this.gather(l);
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
    prInput: Gathered | null,
  ): EntropyResult | null {
    if (!this.usable(l) || (prInput && failedSince(prInput))) {
      prInput?.entropy.fill(0);
      return null;
    }
    if (prInput === null && additionalInput === undefined && n <= this.bufferedRequestMax) {
      return this.fromBuffer(l, n);
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
        this.dropBuffer(l);
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

  /** `n` bytes from the lineage's output buffer, refilled by one generate call when short. */
  private fromBuffer(l: Lineage, n: number): EntropyResult | null {
    let buf = l.buffer;
    if (buf === null || buf.length - l.bufferOffset < n) {
      this.dropBuffer(l);
      let fresh: Uint8Array;
      try {
        fresh = l.drbg.generate(this.outputBufferBytes);
      } catch (err) {
        if (err instanceof ReseedRequiredError) {
          l.bytesSinceReseed = this.reseedBytes;
          return null;
        }
        throw err;
      }
      buf = Buffer.from(fresh.buffer, fresh.byteOffset, fresh.byteLength);
      l.buffer = buf;
      l.bufferOffset = 0;
      l.bufferReseedCounter = l.drbg.reseedCounter;
      l.bytesSinceReseed += buf.length;
    }
    const start = l.bufferOffset;
    const out = new Uint8Array(n);
    out.set(buf.subarray(start, start + n));
    buf.fill(0, start, start + n);
    l.bufferOffset = start + n;
    return this.served(l, out, l.bufferReseedCounter, false);
  }

  private lastIso = { ms: Number.NaN, iso: '' };

  /** `new Date(ms).toISOString()`, formatted once per millisecond. */
  private isoAt(ms: number): string {
    if (ms !== this.lastIso.ms) this.lastIso = { ms, iso: new Date(ms).toISOString() };
    return this.lastIso.iso;
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
    let cache = l.sourcesCache;
    if (cache === null || now - cache.at >= SNAPSHOT_TTL_MS || now < cache.at) {
      cache = {
        sources: this.monitorsOf(l)
          .filter((m) => l.contributors.has(m.id))
          .map((m) => Object.freeze(m.snapshot())),
        seededAt: new Date(l.seededAt).toISOString(),
        at: now,
      };
      Object.freeze(cache.sources);
      l.sourcesCache = cache;
    }
    const reason = degraded ? this.degradedReason() : undefined;
    const last = l.lastProvenance;
    if (
      last !== null &&
      last.sources === cache &&
      last.reseedCounter === reseedCounter &&
      last.now === now &&
      last.predictionResistance === predictionResistance &&
      last.reason === reason
    ) {
      return { bytes: out, provenance: last.value };
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
      degraded,
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
    return { bytes: out, provenance };
  }

  private async scheduledReseed(): Promise<void> {
    await Promise.allSettled(
      [this.quantum, this.fallback].map(async (l) => {
        if (this.healthyOf(l).length === 0) return;
        await this.seed(l, l.seeded && l.tainted === null ? 'cron' : 'recovery');
      }),
    );
  }
}
