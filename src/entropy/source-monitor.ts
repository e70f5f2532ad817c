/**
 * Health monitor for one raw entropy source: opens it through its factory, runs the SP 800-90B
 * start-up test (§4.3 req. 12) and the continuous RCT/APT (§4.4) on everything it reads, and
 * hands out only bytes whose APT window passed. On any failure the source is quarantined (health
 * test, read timeout, I/O error) or marked detached (unplug), its buffered bytes are discarded,
 * and recovery runs with exponential back-off: re-open if needed, then a fresh start-up test.
 *
 * Start-up samples are discarded, never credited or handed out (the conservative reading of
 * §4.3 req. 12). Reads happen in whole APT windows, so a failing window is discarded whole.
 * While healthy and idle the monitor keeps testing: it reads `sentinelWindows` fresh windows
 * every `sentinelIntervalMs` and rotates them into its pool, so faults are found without
 * traffic, and the verdict it holds is never older than one interval. With the defaults
 * (4 windows every 250 ms, a read deadline of 200 ms) every simulator fault is visible in
 * status and provenance well within a second (test/e2e/fault-latency.test.ts).
 */
import { EventEmitter } from 'node:events';
import type {
  EntropySource,
  EntropySourceErrorShape,
  EntropySourceFactory,
  EntropySourceInfo,
  EntropySourceOpenOptions,
} from '../../drivers/entropy/interface.js';
import type { SourceKind, SourceSnapshot, SourceState } from '../core/provenance.js';
import { HealthTester, MONITOR_ALPHA_LOG2, type SampleBits, startupBytes, windowBytes } from './health.js';
import { RollingMcvEstimator } from './min-entropy.js';

export interface BackoffOptions {
  /** First wait after a failure, ms (default 1000). */
  initialMs: number;
  /** Upper bound, ms (default 60 000). */
  maxMs: number;
  /** Growth per consecutive failure (default 2). */
  factor: number;
}

export interface SourceMonitorOptions {
  factory: EntropySourceFactory;
  open?: EntropySourceOpenOptions;
  /** Kind assumed before the first successful open (default `quantum`); `info().kind` wins after. */
  expectedKind?: SourceKind;
  backoff?: Partial<BackoffOptions>;
  /** Tested bytes kept ready (default 4 APT windows). */
  poolBytes?: number;
  /** While idle and healthy, `sentinelWindows` windows are read and tested this often, ms (default 250). */
  sentinelIntervalMs?: number;
  /**
   * APT windows per sentinel read (default 4: 4 KiB of a byte source). One window catches a
   * stuck output (RCT); a biased one is caught by a window whose first sample is the favoured
   * value, so more windows per interval make that near-certain within a second.
   */
  sentinelWindows?: number;
  /**
   * A read not complete after this many ms is a stall (read-error), whatever the driver's own
   * timeout (Quantis: 1000 ms). Default: 20 × the read's duration at the source's nominal rate,
   * at least 200 ms; no deadline when the source states no rate. 0 disables it.
   */
  readDeadlineMs?: number;
  /** Samples in the rolling MCV window (default 65 536). */
  mcvWindow?: number;
  /** −log2 of the health tests' false-positive probability per sample (default MONITOR_ALPHA_LOG2 = 40). */
  healthAlphaLog2?: number;
}

/** What the monitor reports about failures and recoveries. Never carries sample values. */
export interface SourceHealthEvent {
  sourceId: string;
  type:
    | 'startup-passed'
    | 'health-failure' // RCT/APT failed (start-up or continuous)
    | 'read-error' // timeout or I/O error
    | 'detached'
    | 'open-failed'
    | 'reopened';
  test?: 'RCT' | 'APT';
  /** True when the failure happened during a start-up test. */
  startup?: boolean;
  state: SourceState;
  reason: string;
}

export interface SourceMonitorCounters {
  /** RCT/APT failures, start-up and continuous. */
  healthFailures: number;
  /** Read timeouts and I/O errors. */
  readErrors: number;
  detaches: number;
  /** Start-up tests passed after a failure. */
  recoveries: number;
  /** Bytes handed out through `take()`. */
  bytesDelivered: number;
}

/** `take()` could not deliver because the source is not (or stopped being) healthy. */
export class SourceUnavailableError extends Error {
  readonly sourceId: string;
  readonly state: SourceState;
  constructor(sourceId: string, state: SourceState, reason: string) {
    super(`${sourceId} is ${state}: ${reason}`);
    this.name = 'SourceUnavailableError';
    this.sourceId = sourceId;
    this.state = state;
  }
}

interface Waiter {
  n: number;
  resolve: (bytes: Uint8Array) => void;
  reject: (err: Error) => void;
}

function isSourceError(err: unknown): err is EntropySourceErrorShape {
  return (
    err instanceof Error &&
    typeof (err as Partial<EntropySourceErrorShape>).disconnected === 'boolean' &&
    typeof (err as Partial<EntropySourceErrorShape>).canceled === 'boolean'
  );
}

export interface SourceMonitor {
  on(event: 'state', listener: (snapshot: SourceSnapshot, previous: SourceState) => void): this;
  on(event: 'health', listener: (event: SourceHealthEvent) => void): this;
  off(event: 'state', listener: (snapshot: SourceSnapshot, previous: SourceState) => void): this;
  off(event: 'health', listener: (event: SourceHealthEvent) => void): this;
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: typed event overloads for EventEmitter
export class SourceMonitor extends EventEmitter {
  private readonly factory: EntropySourceFactory;
  private readonly openOptions: EntropySourceOpenOptions | undefined;
  private readonly backoffOpts: BackoffOptions;
  private readonly sentinelMs: number;
  private readonly sentinelWindows: number;
  private readonly readDeadlineMs: number | undefined;
  private readonly healthAlphaLog2: number;
  private readonly poolOption: number | undefined;
  private readonly mcvWindow: number;

  private handle: EntropySource | null = null;
  private infoValue: EntropySourceInfo | undefined;
  private tester: HealthTester | null = null;
  private mcv: RollingMcvEstimator | null = null;
  private stateValue: SourceState = 'startup';
  private reasonValue: string | undefined = 'not opened yet';
  private readonly idValue: string;
  private readonly expectedKind: SourceKind;

  private pool: Uint8Array[] = [];
  private poolLength = 0;
  private readonly waiters: Waiter[] = [];
  private backoffMs: number;
  private hadFailure = false;

  private loop: Promise<void> | null = null;
  private stopping = false;
  private abort = new AbortController();
  private wake: (() => void) | null = null;
  private unwatch: (() => void) | null = null;
  /** Bumped on every transition out of `healthy`, so callers can tell a failure happened meanwhile. */
  private generationValue = 0;

  readonly counters: SourceMonitorCounters = {
    healthFailures: 0,
    readErrors: 0,
    detaches: 0,
    recoveries: 0,
    bytesDelivered: 0,
  };

  constructor(options: SourceMonitorOptions) {
    super();
    this.factory = options.factory;
    this.openOptions = options.open;
    this.idValue = options.open?.id ?? options.open?.serial ?? options.open?.path ?? options.factory.driver;
    this.expectedKind = options.expectedKind ?? 'quantum';
    this.backoffOpts = {
      initialMs: options.backoff?.initialMs ?? 1000,
      maxMs: options.backoff?.maxMs ?? 60_000,
      factor: options.backoff?.factor ?? 2,
    };
    if (!(this.backoffOpts.initialMs > 0 && this.backoffOpts.maxMs >= this.backoffOpts.initialMs)) {
      throw new RangeError('backoff: need 0 < initialMs ≤ maxMs');
    }
    if (!(this.backoffOpts.factor >= 1)) throw new RangeError('backoff: factor must be ≥ 1');
    this.backoffMs = this.backoffOpts.initialMs;
    this.sentinelMs = options.sentinelIntervalMs ?? 250;
    this.sentinelWindows = options.sentinelWindows ?? 4;
    if (!(Number.isInteger(this.sentinelWindows) && this.sentinelWindows >= 1)) {
      throw new RangeError('sentinelWindows must be a positive integer');
    }
    this.readDeadlineMs = options.readDeadlineMs;
    if (this.readDeadlineMs !== undefined && !(this.readDeadlineMs >= 0)) {
      throw new RangeError('readDeadlineMs must be ≥ 0');
    }
    this.healthAlphaLog2 = options.healthAlphaLog2 ?? MONITOR_ALPHA_LOG2;
    this.poolOption = options.poolBytes;
    this.mcvWindow = options.mcvWindow ?? 65_536;
  }

  /** The source id (from `info()` once opened). */
  get id(): string {
    return this.infoValue?.id ?? this.idValue;
  }

  /** The driver family (the factory's name). */
  get driver(): string {
    return this.factory.driver;
  }

  get state(): SourceState {
    return this.stateValue;
  }

  get reason(): string | undefined {
    return this.stateValue === 'healthy' ? undefined : this.reasonValue;
  }

  get kind(): SourceKind {
    return this.infoValue?.kind ?? this.expectedKind;
  }

  get info(): EntropySourceInfo | undefined {
    return this.infoValue;
  }

  /** Changes whenever the source leaves `healthy`; compare before/after an await. */
  get generation(): number {
    return this.generationValue;
  }

  /** Credited min-entropy per byte of tested output: H × samples per byte. */
  get entropyPerByte(): number {
    const info = this.infoValue;
    if (!info) return 0;
    return Math.min(8, info.claimedMinEntropy * (8 / info.sampleBits));
  }

  /** Bytes in one APT window of this source: the unit the monitor reads and tests. */
  get windowBytes(): number {
    return windowBytes(this.infoValue?.sampleBits ?? 8);
  }

  /** Failures of every kind: health tests, read errors and detaches. */
  get failures(): number {
    return this.counters.healthFailures + this.counters.readErrors + this.counters.detaches;
  }

  snapshot(): SourceSnapshot {
    const info = this.infoValue;
    const snap: SourceSnapshot = {
      id: this.id,
      driver: info?.driver ?? this.factory.driver,
      kind: this.kind,
      simulated: info?.simulated ?? false,
      state: this.stateValue,
      claimedMinEntropy: info?.claimedMinEntropy ?? this.openOptions?.claimedMinEntropy ?? 0,
    };
    const est = this.mcv?.estimate();
    if (est !== undefined) snap.estimatedMinEntropy = Math.round(est * 1e4) / 1e4;
    const reason = this.reason;
    if (reason !== undefined) snap.reason = reason;
    return snap;
  }

  /**
   * Opens the source and runs its first start-up test. Resolves once that first attempt is over,
   * whether the source came up healthy or not (recovery then continues in the background).
   */
  async start(): Promise<void> {
    if (!this.loop) this.launch();
    // A driver whose first read never settles must not hang the caller forever.
    await this.waitFor((s) => s !== 'startup').catch(() => undefined);
  }

  private launch(): void {
    if (this.stateValue === 'closed') this.setState('startup', 'restarting');
    this.stopping = false;
    this.abort = new AbortController();
    this.unwatch =
      this.factory.watch?.((d) => {
        if (d.id === this.id && this.stateValue === 'detached') this.wake?.();
      }) ?? null;
    this.loop = this.run();
  }

  /** Stops testing, cancels pending reads and `take()`s, and closes the source. */
  async stop(): Promise<void> {
    if (!this.loop) {
      this.setState('closed', 'stopped');
      return;
    }
    this.stopping = true;
    this.abort.abort();
    this.wake?.();
    this.unwatch?.();
    this.unwatch = null;
    this.rejectWaiters('monitor stopped');
    await this.loop;
    this.loop = null;
    await this.closeHandle();
    this.clearPool();
    this.setState('closed', 'stopped');
  }

  /** Resolves when the state satisfies `predicate` (now or later); rejects after `timeoutMs`. */
  waitFor(predicate: (state: SourceState) => boolean, timeoutMs = 60_000): Promise<void> {
    if (predicate(this.stateValue)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onState = (snap: SourceSnapshot): void => {
        if (predicate(snap.state)) {
          clearTimeout(timer);
          this.off('state', onState);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.off('state', onState);
        reject(new Error(`${this.id}: state still ${this.stateValue} after ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.on('state', onState);
    });
  }

  /**
   * `n` bytes that passed the health tests, taken from the pool (read on demand). Rejects with
   * `SourceUnavailableError` if the source is not healthy, or stops being healthy before enough
   * tested bytes are available — bytes from a source that failed are never returned.
   */
  take(n: number): Promise<Uint8Array> {
    if (!Number.isInteger(n) || n < 1) return Promise.reject(new RangeError('n must be a positive integer'));
    if (this.stateValue !== 'healthy') {
      return Promise.reject(new SourceUnavailableError(this.id, this.stateValue, this.reasonValue ?? ''));
    }
    if (this.waiters.length === 0 && this.poolLength >= n) return Promise.resolve(this.drain(n));
    return new Promise((resolve, reject) => {
      this.waiters.push({ n, resolve, reject });
      this.wake?.();
    });
  }

  // --- internals ---

  private get poolTarget(): number {
    const w = windowBytes(this.infoValue?.sampleBits ?? 8);
    return this.poolOption ?? 4 * w;
  }

  private setState(state: SourceState, reason?: string): void {
    const previous = this.stateValue;
    if (previous === 'healthy' && state !== 'healthy') this.generationValue++;
    this.stateValue = state;
    this.reasonValue = reason;
    if (previous !== state) this.emit('state', this.snapshot(), previous);
  }

  private report(event: Omit<SourceHealthEvent, 'sourceId' | 'state'>): void {
    this.emit('health', { sourceId: this.id, state: this.stateValue, ...event });
  }

  private nextBackoff(): number {
    const d = this.backoffMs;
    this.backoffMs = Math.min(this.backoffOpts.maxMs, this.backoffMs * this.backoffOpts.factor);
    return d;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.wake === done) this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.wake = done;
    });
  }

  /**
   * Discarded bytes are wiped, not just dropped: they are raw device output a caller could have
   * been handed, and a heap dump or a reused buffer must not recover them. (JavaScript cannot
   * promise no copy survives elsewhere; this removes the copies this class holds.)
   */
  private clearPool(): void {
    for (const chunk of this.pool) chunk.fill(0);
    this.pool = [];
    this.poolLength = 0;
  }

  private drain(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const head = this.pool[0]!;
      const k = Math.min(head.length, n - off);
      out.set(head.subarray(0, k), off);
      head.fill(0, 0, k); // handed out: the pool's copy goes
      off += k;
      if (k === head.length) this.pool.shift();
      else this.pool[0] = head.subarray(k);
    }
    this.poolLength -= n;
    this.counters.bytesDelivered += n;
    return out;
  }

  private serveWaiters(): void {
    while (this.waiters.length > 0 && this.poolLength >= this.waiters[0]!.n) {
      const w = this.waiters.shift()!;
      w.resolve(this.drain(w.n));
    }
  }

  private rejectWaiters(reason: string): void {
    const err = new SourceUnavailableError(this.id, this.stateValue, reason);
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private demand(): number {
    let d = 0;
    for (const w of this.waiters) d += w.n;
    return d;
  }

  private async closeHandle(): Promise<void> {
    const h = this.handle;
    if (!h) return;
    this.handle = null;
    h.off('detach', this.onDetach);
    h.off('error', this.onError);
    await h.close().catch(() => undefined);
  }

  private readonly onDetach = (): void => {
    if (this.stopping || this.stateValue === 'detached') return;
    this.fail('detached', 'device detached');
  };

  private readonly onError = (err: EntropySourceErrorShape): void => {
    if (this.stopping) return;
    if (err.disconnected) this.onDetach();
    else this.fail('read-error', `driver reported: ${err.message}`);
  };

  /** Moves out of service: discards buffered bytes, rejects pending takes, counts the failure. */
  private fail(
    type: 'health-failure' | 'read-error' | 'detached',
    reason: string,
    test?: 'RCT' | 'APT',
  ): void {
    const startup = this.stateValue === 'startup';
    if (type === 'health-failure') this.counters.healthFailures++;
    else if (type === 'read-error') this.counters.readErrors++;
    else this.counters.detaches++;
    this.hadFailure = true;
    this.clearPool();
    this.tester?.reset();
    this.setState(type === 'detached' ? 'detached' : 'quarantined', reason);
    this.rejectWaiters(reason);
    const ev: Omit<SourceHealthEvent, 'sourceId' | 'state'> = { type, reason, startup };
    if (test) ev.test = test;
    this.report(ev);
    if (type === 'detached') {
      void this.closeHandle();
      this.wake?.();
    } else if (type === 'health-failure') {
      // Recovery re-opens the device: whatever the driver or device buffered during the fault
      // (read-ahead, FIFO) must not be what the fresh start-up test looks at, and re-opening
      // runs the device's own reset sequence (Quantis: module disable/enable, discard 4 KiB).
      void this.closeHandle();
    }
  }

  private async open(): Promise<boolean> {
    try {
      const h = await this.factory.open(this.openOptions);
      if (this.stopping) {
        await h.close().catch(() => undefined);
        return false;
      }
      const info = h.info();
      this.handle = h;
      h.on('detach', this.onDetach);
      h.on('error', this.onError);
      const sampleBits: SampleBits = info.sampleBits;
      if (
        !this.tester ||
        this.tester.sampleBits !== sampleBits ||
        this.tester.claimedMinEntropy !== info.claimedMinEntropy
      ) {
        this.tester = new HealthTester({
          sampleBits,
          claimedMinEntropy: info.claimedMinEntropy,
          alphaLog2: this.healthAlphaLog2,
        });
      }
      if (!this.mcv || this.mcv.sampleBits !== sampleBits) {
        this.mcv = new RollingMcvEstimator({ sampleBits, window: this.mcvWindow });
      }
      const reopened = this.infoValue !== undefined;
      this.infoValue = info;
      if (reopened) this.report({ type: 'reopened', reason: 'source re-opened' });
      return true;
    } catch (err) {
      const reason = `cannot open: ${err instanceof Error ? err.message : String(err)}`;
      // Already detached: keep the original cause (e.g. `device detached`) as the reason.
      if (this.stateValue !== 'detached') this.setState('detached', reason);
      this.report({ type: 'open-failed', reason });
      return false;
    }
  }

  /** The stall deadline for a read of `n` bytes, or undefined for none. */
  private deadlineFor(n: number): number | undefined {
    if (this.readDeadlineMs !== undefined) return this.readDeadlineMs > 0 ? this.readDeadlineMs : undefined;
    const rate = this.infoValue?.nominalRate;
    if (rate === undefined || !(rate > 0)) return undefined;
    return Math.max(200, Math.ceil((20 * n * 1000) / rate));
  }

  /** Reads `n` raw bytes; returns null (and has already moved state) if the read failed or the state moved. */
  private async readRaw(n: number): Promise<Uint8Array | null> {
    const h = this.handle!;
    const gen = this.generationValue;
    const state = this.stateValue;
    const deadline = this.deadlineFor(n);
    let stalled = false;
    let timer: NodeJS.Timeout | undefined;
    let signal = this.abort.signal;
    if (deadline !== undefined) {
      const ac = new AbortController();
      timer = setTimeout(() => {
        stalled = true;
        ac.abort();
      }, deadline);
      timer.unref();
      signal = AbortSignal.any([this.abort.signal, ac.signal]);
    }
    try {
      const bytes = await h.read(n, signal);
      // A detach/error event may have moved us while the read was in flight: discard.
      if (this.stopping || this.handle !== h || this.stateValue !== state || this.generationValue !== gen) {
        bytes.fill(0);
        return null;
      }
      return bytes;
    } catch (err) {
      if (this.stopping || this.handle !== h || this.stateValue !== state) return null;
      if (stalled) {
        this.fail('read-error', `read timeout (source stalled: ${n} bytes not delivered in ${deadline} ms)`);
      } else if (isSourceError(err) && err.disconnected) {
        this.fail('detached', 'device detached');
      } else if (isSourceError(err) && err.timeout) {
        this.fail('read-error', 'read timeout (source stalled)');
      } else {
        this.fail('read-error', `read error: ${err instanceof Error ? err.message : String(err)}`);
        // An I/O error leaves the handle in an unknown state: re-open on recovery.
        await this.closeHandle();
      }
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      switch (this.stateValue) {
        case 'startup':
          await this.startupStep();
          break;
        case 'healthy':
          await this.healthyStep();
          break;
        case 'quarantined':
          await this.sleep(this.nextBackoff());
          // A detach during the back-off wins: re-open first.
          if (!this.stopping && this.stateValue === 'quarantined') {
            this.setState('startup', `start-up test after: ${this.reasonValue ?? 'failure'}`);
          }
          break;
        case 'detached':
          await this.sleep(this.nextBackoff());
          if (!this.stopping && this.stateValue === 'detached' && (await this.open())) {
            this.setState('startup', `start-up test after: ${this.reasonValue ?? 'detach'}`);
          }
          break;
        case 'closed':
          return;
      }
    }
  }

  private async startupStep(): Promise<void> {
    if (!this.handle && !(await this.open())) return;
    if (this.reasonValue === 'not opened yet') this.reasonValue = 'start-up test in progress';
    const tester = this.tester!;
    tester.reset();
    const bytes = await this.readRaw(startupBytes(tester.sampleBits));
    if (!bytes) return;
    this.mcv!.feed(bytes);
    const failure = tester.feed(bytes);
    // Start-up samples are tested and estimated, never served: wipe them either way.
    bytes.fill(0);
    if (failure) {
      this.fail('health-failure', `start-up test: ${failure.message}`, failure.test);
      return;
    }
    // Start-up samples are discarded (not credited). Continuous testing carries on from here.
    this.backoffMs = this.backoffOpts.initialMs;
    if (this.hadFailure) this.counters.recoveries++;
    this.setState('healthy');
    this.report({ type: 'startup-passed', reason: 'start-up test passed' });
  }

  private async healthyStep(): Promise<void> {
    const target = Math.max(this.poolTarget, this.demand());
    const tester = this.tester!;
    let windows = 1;
    if (this.poolLength >= target && this.waiters.length === 0) {
      // Idle: sleep, then read fresh sentinel windows so continuous testing never stops.
      const gen = this.generationValue;
      await this.sleep(this.sentinelMs);
      if (this.stopping || this.stateValue !== 'healthy' || gen !== this.generationValue) return;
      if (this.waiters.length > 0) return; // woken by demand: the next step reads for it
      windows = this.sentinelWindows;
    }
    const bytes = await this.readRaw(windows * windowBytes(tester.sampleBits));
    if (!bytes) return;
    this.mcv!.feed(bytes);
    const failure = tester.feed(bytes);
    if (failure) {
      // The whole window is discarded, and so is the pool: it came from the same stream.
      bytes.fill(0);
      this.fail('health-failure', failure.message, failure.test);
      return;
    }
    this.pool.push(bytes);
    this.poolLength += bytes.length;
    this.serveWaiters();
    // Rotate: keep the freshest bytes, bounded.
    const cap = Math.max(this.poolTarget, this.demand());
    while (
      this.waiters.length === 0 &&
      this.pool.length > 1 &&
      this.poolLength - this.pool[0]!.length >= cap
    ) {
      const stale = this.pool.shift()!;
      this.poolLength -= stale.length;
      stale.fill(0);
    }
  }
}
