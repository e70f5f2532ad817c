/**
 * A simulated QRNG (kind `quantum`, `simulated: true`) implementing the entropy-source driver
 * interface directly. Its bytes come from `node:crypto` at a configurable rate; fault-injection
 * controls on the *device* object make it misbehave the way hardware does, so the health
 * pipeline can be tested end to end:
 *
 * - `setStuck(value)`: every byte is `value` (RCT failure);
 * - `setBias({value, probability})`: each byte is `value` with that probability (APT failure);
 * - `setStall(true)`: reads hang and reject after the read timeout with `timeout: true`;
 * - `detach()`: emits `detach` on open sources, pending and later reads reject `disconnected`,
 *   and `open()` fails until `reattach()`, which also notifies `watch()` listeners.
 *
 * Simulators never import `src/`; this module only depends on the driver interface.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { EntropySourceError } from '../../drivers/entropy/errors.js';
import type {
  EntropySource,
  EntropySourceDescriptor,
  EntropySourceEvents,
  EntropySourceFactory,
  EntropySourceInfo,
  EntropySourceOpenOptions,
} from '../../drivers/entropy/interface.js';

export const SIM_QRNG_DRIVER = 'sim-qrng';
/** 4 Mbit/s, the rate of a Quantis USB 4M. */
export const SIM_QRNG_DEFAULT_RATE = 500_000;
export const SIM_QRNG_DEFAULT_MIN_ENTROPY = 7.5;
export const SIM_QRNG_DEFAULT_TIMEOUT_MS = 1000;

export interface SimulatedQrngDeviceOptions {
  /** Default `sim-qrng:<serial>`. */
  id?: string;
  /** Default `0`. */
  serial?: string;
  /** Raw output rate in bytes/s (default 500 000 = 4 Mbit/s); `Infinity` serves reads at once. */
  rate?: number;
  /** Claimed min-entropy per byte (default 7.5). */
  claimedMinEntropy?: number;
  /** A read that cannot complete within this many ms rejects with `timeout` (default 1000). */
  readTimeoutMs?: number;
}

export interface SimulatedQrngBias {
  /** The favoured byte value, 0–255. */
  value: number;
  /** Probability in [0, 1] that each byte is replaced by `value`. */
  probability: number;
}

export interface SimulatedQrngFaults {
  stuck: number | null;
  bias: SimulatedQrngBias | null;
  stalled: boolean;
  attached: boolean;
}

function checkByte(value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 255) throw new RangeError('byte value must be 0–255');
}

/** The simulated hardware: owns the fault state; sources opened on it read through it. */
export class SimulatedQrngDevice extends EventEmitter {
  readonly id: string;
  readonly serial: string;
  rate: number;
  claimedMinEntropy: number;
  readTimeoutMs: number;
  private stuck: number | null = null;
  private bias: SimulatedQrngBias | null = null;
  private stalled = false;
  private attached = true;

  constructor(options: SimulatedQrngDeviceOptions = {}) {
    super();
    this.serial = options.serial ?? '0';
    this.id = options.id ?? `${SIM_QRNG_DRIVER}:${this.serial}`;
    this.rate = options.rate ?? SIM_QRNG_DEFAULT_RATE;
    this.claimedMinEntropy = options.claimedMinEntropy ?? SIM_QRNG_DEFAULT_MIN_ENTROPY;
    this.readTimeoutMs = options.readTimeoutMs ?? SIM_QRNG_DEFAULT_TIMEOUT_MS;
    if (!(this.rate > 0)) throw new RangeError('rate must be > 0 bytes/s');
    if (!(this.claimedMinEntropy > 0 && this.claimedMinEntropy <= 8)) {
      throw new RangeError('claimedMinEntropy must be in (0, 8]');
    }
  }

  descriptor(): EntropySourceDescriptor {
    return {
      id: this.id,
      driver: SIM_QRNG_DRIVER,
      description: 'Simulated QRNG (node:crypto bytes at a configurable rate, with fault injection)',
      serial: this.serial,
      simulated: true,
    };
  }

  get faults(): SimulatedQrngFaults {
    return {
      stuck: this.stuck,
      bias: this.bias && { ...this.bias },
      stalled: this.stalled,
      attached: this.attached,
    };
  }

  get isAttached(): boolean {
    return this.attached;
  }

  get isStalled(): boolean {
    return this.stalled;
  }

  /** Every byte becomes `value` (null clears). */
  setStuck(value: number | null): void {
    if (value !== null) checkByte(value);
    this.stuck = value;
  }

  /** Each byte becomes `bias.value` with `bias.probability` (null clears). */
  setBias(bias: SimulatedQrngBias | null): void {
    if (bias !== null) {
      checkByte(bias.value);
      if (!(bias.probability >= 0 && bias.probability <= 1))
        throw new RangeError('probability must be in [0, 1]');
    }
    this.bias = bias && { ...bias };
  }

  /** While stalled, reads do not complete; each rejects with `timeout` after `readTimeoutMs`. */
  setStall(stalled: boolean): void {
    this.stalled = stalled;
    if (!stalled) this.emit('resume');
  }

  /** Unplug: open sources emit `detach`; reads fail `disconnected`; `open()` fails until `reattach()`. */
  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.emit('unplug');
  }

  /** Plug back in: `open()` works again and `watch()` listeners hear about it. */
  reattach(): void {
    if (this.attached) return;
    this.attached = true;
    this.emit('plug', this.descriptor());
  }

  /** Clears stuck, bias and stall (attachment is left as it is). */
  clearFaults(): void {
    this.stuck = null;
    this.bias = null;
    this.setStall(false);
  }

  /** Produces `n` bytes with the current stuck/bias faults applied. */
  produce(n: number): Uint8Array {
    const out = new Uint8Array(randomBytes(n));
    if (this.stuck !== null) {
      out.fill(this.stuck);
      return out;
    }
    if (this.bias !== null && this.bias.probability > 0) {
      const { value, probability } = this.bias;
      const threshold = probability * 2 ** 32;
      const coins = randomBytes(4 * n);
      for (let i = 0; i < n; i++) {
        if (coins.readUInt32LE(4 * i) < threshold) out[i] = value;
      }
    }
    return out;
  }
}

interface PendingRead {
  n: number;
  resolve: (bytes: Uint8Array) => void;
  reject: (err: EntropySourceError) => void;
  settled: boolean;
  /** Armed when the read reaches the head of the queue. */
  timer: NodeJS.Timeout | null;
  cleanup: () => void;
}

class SimulatedQrngSource extends EventEmitter implements EntropySource {
  private readonly queue: PendingRead[] = [];
  private closed = false;
  private gone = false;
  private busy = false;
  /** The timer producing the head read's bytes, while one is in flight. */
  private production: NodeJS.Timeout | null = null;
  /** Time (ms, performance clock) when the device finishes producing what it was already asked for. */
  private readyAt = 0;
  private readonly onUnplug = (): void => this.handleUnplug();
  private readonly onResume = (): void => this.pump();

  constructor(
    private readonly device: SimulatedQrngDevice,
    private readonly claimed: number,
  ) {
    super();
    device.on('unplug', this.onUnplug);
    device.on('resume', this.onResume);
  }

  info(): EntropySourceInfo {
    return {
      id: this.device.id,
      driver: SIM_QRNG_DRIVER,
      kind: 'quantum',
      simulated: true,
      description: 'Simulated QRNG (node:crypto bytes at a configurable rate, with fault injection)',
      serial: this.device.serial,
      sampleBits: 8,
      claimedMinEntropy: this.claimed,
      nominalRate: this.device.rate,
    };
  }

  read(n: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (!Number.isInteger(n) || n < 1) return Promise.reject(new RangeError('n must be a positive integer'));
    if (this.closed) return Promise.reject(this.error('canceled', 'source is closed'));
    if (this.gone) return Promise.reject(this.error('disconnected', 'device detached'));
    if (signal?.aborted) return Promise.reject(this.error('canceled', 'read aborted'));
    return new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = (): void => this.fail(entry, this.error('canceled', 'read aborted'));
      const entry: PendingRead = {
        n,
        resolve,
        reject,
        settled: false,
        timer: null,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(entry);
      this.pump();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.detachFromDevice();
    this.failAll(this.error('canceled', 'source closed'));
  }

  override on<E extends keyof EntropySourceEvents>(event: E, listener: EntropySourceEvents[E]): this {
    return super.on(event, listener);
  }

  override off<E extends keyof EntropySourceEvents>(event: E, listener: EntropySourceEvents[E]): this {
    return super.off(event, listener);
  }

  private error(failure: 'canceled' | 'disconnected' | 'timeout', message: string): EntropySourceError {
    return new EntropySourceError(this.device.id, failure, `${this.device.id}: ${message}`);
  }

  private fail(entry: PendingRead, err: EntropySourceError): void {
    if (entry.settled) return;
    entry.settled = true;
    if (entry.timer) clearTimeout(entry.timer);
    entry.cleanup();
    const i = this.queue.indexOf(entry);
    if (i >= 0) this.queue.splice(i, 1);
    entry.reject(err);
    if (i === 0) {
      // The bytes being produced for the failed head are dropped; the device is free now.
      if (this.production) {
        clearTimeout(this.production);
        this.production = null;
        this.busy = false;
        this.readyAt = performance.now();
      }
      // The next read becomes the head and gets its own deadline.
      this.pump();
    }
  }

  private failAll(err: EntropySourceError): void {
    for (const entry of [...this.queue]) this.fail(entry, err);
  }

  private detachFromDevice(): void {
    this.device.off('unplug', this.onUnplug);
    this.device.off('resume', this.onResume);
  }

  private handleUnplug(): void {
    if (this.closed || this.gone) return;
    this.gone = true;
    this.detachFromDevice();
    this.failAll(this.error('disconnected', 'device detached'));
    this.emit('detach');
  }

  /**
   * Serves the head of the queue after the time the device needs to produce it. Its timers are
   * deliberately *not* unref'ed: a pending read is pending I/O and keeps the process alive, as a
   * real device read would (they are bounded by the read timeout and cleared on close). The head's
   * deadline is the read timeout plus its production time at the nominal rate, so a large read
   * at a slow rate is not mistaken for a stall; a read waiting behind others is not yet timed.
   */
  private pump(): void {
    if (this.closed || this.gone) return;
    const head = this.queue[0];
    if (!head) return;
    if (!head.timer) {
      const deadline = this.device.readTimeoutMs + (head.n / this.device.rate) * 1000;
      head.timer = setTimeout(
        () => this.fail(head, this.error('timeout', `no data within ${this.device.readTimeoutMs} ms`)),
        deadline,
      );
    }
    if (this.busy || this.device.isStalled) return;
    this.busy = true;
    const now = performance.now();
    const start = Math.max(now, this.readyAt);
    this.readyAt = start + (head.n / this.device.rate) * 1000;
    const delay = Math.max(0, this.readyAt - now);
    this.production = setTimeout(() => {
      this.production = null;
      this.busy = false;
      if (this.closed || this.gone) return;
      if (this.device.isStalled) {
        // The stall began while this read was in flight: nothing more arrives until resume.
        this.readyAt = 0;
        return;
      }
      const entry = this.queue[0];
      if (entry === head && !entry.settled) {
        entry.settled = true;
        if (entry.timer) clearTimeout(entry.timer);
        entry.cleanup();
        this.queue.shift();
        entry.resolve(this.device.produce(entry.n));
      }
      this.pump();
    }, delay);
  }
}

/** The factory with its devices exposed, so tests (and `qkm sim`) can reach the fault controls. */
export interface SimulatedQrngFactory extends EntropySourceFactory {
  readonly devices: readonly SimulatedQrngDevice[];
  /** The device with this id, or the first one. Throws if there is none. */
  device(id?: string): SimulatedQrngDevice;
}

export interface SimulatedQrngFactoryOptions {
  /** Devices to simulate (default: one with default options). */
  devices?: Array<SimulatedQrngDevice | SimulatedQrngDeviceOptions>;
}

export function createSimulatedQrngFactory(options: SimulatedQrngFactoryOptions = {}): SimulatedQrngFactory {
  const devices = (options.devices ?? [{}]).map((d) =>
    d instanceof SimulatedQrngDevice ? d : new SimulatedQrngDevice(d),
  );
  const find = (id?: string): SimulatedQrngDevice | undefined =>
    id === undefined ? devices[0] : devices.find((d) => d.id === id || d.serial === id);
  return {
    driver: SIM_QRNG_DRIVER,
    devices,
    device(id?: string) {
      const d = find(id);
      if (!d) throw new RangeError(`no simulated QRNG ${id ?? ''}`.trim());
      return d;
    },
    async list() {
      return devices.filter((d) => d.isAttached).map((d) => d.descriptor());
    },
    async open(openOptions?: EntropySourceOpenOptions) {
      const key = openOptions?.id ?? openOptions?.serial;
      const d = key === undefined ? devices.find((x) => x.isAttached) : find(key);
      if (!d?.isAttached) {
        throw new EntropySourceError(
          key ?? SIM_QRNG_DRIVER,
          'disconnected',
          `simulated QRNG ${key ?? ''} is not attached`.trim(),
        );
      }
      const claim = openOptions?.claimedMinEntropy ?? d.claimedMinEntropy;
      if (!(claim > 0 && claim <= 8)) throw new RangeError('claimedMinEntropy must be in (0, 8]');
      return new SimulatedQrngSource(d, claim);
    },
    watch(listener: (descriptor: EntropySourceDescriptor) => void) {
      const handlers = devices.map((d) => {
        const h = (desc: EntropySourceDescriptor): void => listener(desc);
        d.on('plug', h);
        return () => d.off('plug', h);
      });
      return () => {
        for (const off of handlers) off();
      };
    },
  };
}
