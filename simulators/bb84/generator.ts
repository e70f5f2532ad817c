/**
 * A simulated QKD link that emits secret key at the rate the BB84 model predicts.
 *
 * Contract:
 * - Every 'keys' event carries one post-processed block cut into keys of `keySizeBits`; the
 *   same frozen array (identical bytes, identical key IDs) goes to every listener, so a KME pair
 *   that subscribes twice (or fans one subscription out) holds the same keys at both ends.
 *   Listeners must treat the array and the key bytes as read-only; copy before wiping.
 * - Throttled mode emits on a schedule derived from the elapsed time since `start()` (blocks due
 *   = ⌊elapsed × rate / blockBits⌋), never from summed timer delays, so timer jitter does not
 *   accumulate into rate drift; bits of a block that do not fill a whole key carry over.
 * - An intercept-resend eavesdropper on a fraction φ of pulses raises each block's QBER from E
 *   to E + φ(¼ − ½E) (Eve picks the wrong basis half the time, then Bob's bit is random; the
 *   link's own error flips on top). A block whose QBER exceeds `abortQber` is discarded
 *   ('abort' event, no key); a block below it yields secret bits in proportion to the
 *   key-rate formula evaluated at the raised error rates.
 * - All timers are unref'd: a running generator never keeps the process alive.
 * - Keys come from node:crypto; nothing here logs or puts key bytes into errors.
 */
import { randomFillSync, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  type Bb84Scheme,
  h2,
  type LinkParams,
  optimalKeyRate,
  type RatePoint,
  resolveParams,
} from './model.js';

/** One key as both ends of the link receive it. */
export type KeyBlock = {
  /** UUID v4 (crypto.randomUUID), identical at both ends. */
  keyId: string;
  /** keySizeBits / 8 random bytes from node:crypto, each key in its own ArrayBuffer. */
  key: Uint8Array;
};

/** Payload of the 'abort' event: a block whose estimated QBER was above the threshold. */
export type AbortInfo = { qber: number; threshold: number; bitsLost: number };

/** Time source and timers; inject one in tests to drive the generator deterministically. */
export interface GeneratorClock {
  /** Monotonic milliseconds. */
  now(): number;
  /** Schedule `fn` after `ms`; the handle must not keep the process alive. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Monotonic clock on performance.now() with unref'd timers (resolved at call time, so fake timers apply). */
export const systemClock: GeneratorClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface LinkKeyGeneratorOptions {
  distanceKm: number;
  /** Decoy analysis; default 'vacuum-weak' (what a deployed link runs). */
  scheme?: Bb84Scheme;
  params?: Partial<LinkParams>;
  /** Pin the signal intensity instead of optimising it for the distance. */
  mu?: number;
  /** Weak-decoy intensity for 'vacuum-weak' (default 0.05). */
  nu?: number;
  /** Size of each emitted key, bits; a positive multiple of 8 (default 256). */
  keySizeBits?: number;
  /** Secret bits per post-processed block (default 4 × keySizeBits). */
  blockBits?: number;
  /** Simulated seconds per real second (default 1): 10 runs the link ten times faster. */
  timeScale?: number;
  /** Ignore the model rate and emit a block per event-loop turn (throughput benches); honours pause(). */
  unthrottled?: boolean;
  /** Intercept-resend attack on this fraction of pulses, 0..1. */
  eavesdropper?: { fraction: number };
  /** Blocks whose estimated QBER exceeds this are discarded (default 0.11). */
  abortQber?: number;
  /** Time source (default systemClock). */
  clock?: GeneratorClock;
}

export interface GeneratorStats {
  keysEmitted: number;
  /** Key bits delivered in 'keys' events (keysEmitted × keySizeBits). */
  bitsEmitted: number;
  blocksAborted: number;
  /** Secret-key rate of the model without an eavesdropper, bits per simulated second. */
  modelRateBps: number;
  /** Estimated QBER of the latest block (before the first block: the expected value). */
  qber: number;
  /** Date.now() at the latest start(), or null if never started. */
  startedAt: number | null;
}

type GeneratorEvents = {
  keys: [keys: readonly KeyBlock[]];
  abort: [info: AbortInfo];
};

/** Most blocks emitted in one timer turn; a backlog beyond it continues on the next turn. */
const MAX_BLOCKS_PER_TURN = 1000;
/** Blocks emitted per event-loop turn in unthrottled mode. */
const UNTHROTTLED_BLOCKS_PER_TURN = 32;
/** Longest single timer delay, ms (setTimeout caps at 2³¹−1; shorter wakes cost nothing). */
const MAX_DELAY_MS = 10_000;

function positiveNumber(value: unknown, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number`);
  if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be > 0 and finite`);
  return value;
}

/** Key rate per pulse at the model's operating point with extra errors e → e + φ(¼ − ½e). */
function rateUnderAttack(point: RatePoint, p: LinkParams, fraction: number): number {
  const raise = (e: number) => Math.min(0.5, e + fraction * (0.25 - 0.5 * e));
  const r = p.q * (-point.gainMu * p.f * h2(raise(point.qber)) + point.q1 * (1 - h2(raise(point.e1))));
  return Math.max(r, 0);
}

export class LinkKeyGenerator extends EventEmitter<GeneratorEvents> {
  /** The model's operating point for this link (μ, ν, QBER, rate per pulse, …). */
  readonly operatingPoint: RatePoint;
  readonly keySizeBits: number;
  readonly blockBits: number;
  readonly abortQber: number;
  /** Estimated QBER of every block (with the eavesdropper, if any). */
  readonly blockQber: number;

  private readonly rateBps: number;
  private readonly timeScale: number;
  private readonly unthrottled: boolean;
  /** Secret bits a non-aborted block yields, ≤ blockBits (less under a sub-threshold attack). */
  private readonly secretBitsPerBlock: number;
  private readonly clock: GeneratorClock;

  private running = false;
  private paused = false;
  private timer: unknown = null;
  private immediate: NodeJS.Immediate | null = null;
  private startMs = 0;
  /** Blocks processed (emitted or aborted) since the latest start(). */
  private blocksSinceStart = 0;
  /** Secret bits not yet cut into a whole key. */
  private carryBits = 0;
  private keysEmitted = 0;
  private blocksAborted = 0;
  private startedAt: number | null = null;

  /** @throws TypeError / RangeError for invalid options (before anything starts). */
  constructor(options: LinkKeyGeneratorOptions) {
    super();
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const params = resolveParams(options.params);
    this.operatingPoint = optimalKeyRate(options.scheme ?? 'vacuum-weak', options.distanceKm, {
      mu: options.mu,
      nu: options.nu,
      params,
    });
    this.keySizeBits = positiveNumber(options.keySizeBits ?? 256, 'keySizeBits');
    if (!Number.isInteger(this.keySizeBits / 8)) throw new RangeError('keySizeBits must be a multiple of 8');
    this.blockBits = positiveNumber(options.blockBits ?? 4 * this.keySizeBits, 'blockBits');
    this.timeScale = positiveNumber(options.timeScale ?? 1, 'timeScale');
    this.abortQber = positiveNumber(options.abortQber ?? 0.11, 'abortQber');
    this.unthrottled = options.unthrottled === true;
    this.clock = options.clock ?? systemClock;

    const fraction = options.eavesdropper?.fraction ?? 0;
    if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
      throw new RangeError('eavesdropper.fraction must be in [0, 1]');
    }
    const e = this.operatingPoint.qber;
    this.blockQber = e + fraction * (0.25 - 0.5 * e);
    this.rateBps = this.operatingPoint.bitsPerSecond;
    const base = this.operatingPoint.ratePerPulse;
    const attacked = fraction === 0 ? base : rateUnderAttack(this.operatingPoint, params, fraction);
    this.secretBitsPerBlock = base > 0 ? this.blockBits * Math.min(1, attacked / base) : 0;
  }

  /** Secret-key rate of the model, bits per simulated second (0 beyond the maximum distance). */
  get modelRateBps(): number {
    return this.rateBps;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Begin emitting. Idempotent. The schedule restarts from now; counters keep accumulating. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.startMs = this.clock.now();
    this.blocksSinceStart = 0;
    this.startedAt = Date.now();
    this.schedule();
  }

  /** Stop emitting and cancel timers. Idempotent; start() may be called again. */
  stop(): void {
    this.running = false;
    this.cancelTimers();
  }

  /**
   * Unthrottled mode: stop emitting until resume() (e.g. a consumer's pool is full). Throttled
   * mode: the link keeps its schedule, and blocks that fall due while paused are dropped, not
   * queued — the key a real link distils while its KMEs cannot store it is lost, and a burst of
   * stale blocks on resume() would break the rate model.
   */
  pause(): void {
    this.paused = true;
    if (this.unthrottled) this.cancelTimers();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.running) this.schedule();
  }

  stats(): GeneratorStats {
    return {
      keysEmitted: this.keysEmitted,
      bitsEmitted: this.keysEmitted * this.keySizeBits,
      blocksAborted: this.blocksAborted,
      modelRateBps: this.rateBps,
      qber: this.blockQber,
      startedAt: this.startedAt,
    };
  }

  private cancelTimers(): void {
    if (this.timer !== null) {
      this.clock.clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.immediate !== null) {
      clearImmediate(this.immediate);
      this.immediate = null;
    }
  }

  private schedule(): void {
    if (!this.running) return;
    // Beyond the maximum distance the link never yields a block, throttled or not.
    if (this.rateBps <= 0) return;
    if (this.unthrottled) {
      if (this.paused || this.immediate !== null) return;
      this.immediate = setImmediate(() => {
        this.immediate = null;
        // A batch per turn: one block per turn would cap throughput at the loop's turn rate,
        // while the batch still yields to I/O (the consumers' HTTP traffic) between turns.
        for (let i = 0; i < UNTHROTTLED_BLOCKS_PER_TURN && this.running && !this.paused; i++) {
          this.processBlock();
        }
        this.schedule();
      });
      this.immediate.unref();
      return;
    }
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    const dueMs =
      this.startMs + (((this.blocksSinceStart + 1) * this.blockBits) / this.rateBps / this.timeScale) * 1000;
    const delay = Math.min(MAX_DELAY_MS, Math.max(0, Math.ceil(dueMs - this.clock.now())));
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.tick();
    }, delay);
  }

  private tick(): void {
    if (!this.running) return;
    const elapsedS = ((this.clock.now() - this.startMs) / 1000) * this.timeScale;
    const due = Math.floor((elapsedS * this.rateBps) / this.blockBits);
    let n = 0;
    try {
      while (this.blocksSinceStart < due && n < MAX_BLOCKS_PER_TURN && this.running) {
        this.blocksSinceStart++;
        n++;
        if (this.paused) continue;
        this.processBlock();
      }
    } finally {
      // A throwing listener is the caller's bug and still surfaces, but the link keeps running.
      this.schedule();
    }
  }

  private processBlock(): void {
    if (this.blockQber > this.abortQber) {
      this.blocksAborted++;
      this.emit('abort', { qber: this.blockQber, threshold: this.abortQber, bitsLost: this.blockBits });
      return;
    }
    this.carryBits += this.secretBitsPerBlock;
    const count = Math.floor(this.carryBits / this.keySizeBits);
    if (count === 0) return;
    this.carryBits -= count * this.keySizeBits;
    const keyBytes = this.keySizeBits / 8;
    const material = randomFillSync(new Uint8Array(count * keyBytes));
    const keys: KeyBlock[] = [];
    for (let i = 0; i < count; i++) {
      // slice() copies, so a consumer that wipes one key cannot touch another.
      keys.push(
        Object.freeze({ keyId: randomUUID(), key: material.slice(i * keyBytes, (i + 1) * keyBytes) }),
      );
    }
    material.fill(0);
    this.keysEmitted += count;
    this.emit('keys', Object.freeze(keys));
  }
}
