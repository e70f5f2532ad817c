import { randomBytes } from 'node:crypto';
import {
  QUANTIS_BULK_IN_ENDPOINT,
  QUANTIS_HIGH_SPEED_PACKET,
  QUANTIS_PRODUCT_ID,
  QUANTIS_VENDOR_ID,
  QuantisRequest,
} from '../../drivers/entropy/quantis-usb/protocol.js';
import { UsbTransportError } from '../../drivers/entropy/quantis-usb/transport.js';

/** Faults a test or an operator demo can switch on; all off by default. */
export interface QuantisFaults {
  /** Bulk IN never completes: every transfer times out (device stopped delivering). */
  stall: boolean;
  /** Every bulk transfer ends with a short packet. */
  shortPacket: boolean;
  /** Output stuck at one byte value (a dead detector or latched FIFO). */
  stuck: boolean;
  /** Fraction (0–1) of output bytes forced to 0x00: a biased detector. 0 = unbiased. */
  bias: number;
  /** GET_MODULES_STATUS (0x13) answers 0 (not ready), even after a board reset. */
  statusNotReady: boolean;
}

export interface SimulatedQuantisOptions {
  serial?: string;
  /** Output rate in bits per second (default 4 Mbit/s, the Quantis USB 4M). */
  rateBps?: number;
  /** Bulk IN wMaxPacketSize: 512 at high speed (default), 64 at full speed. */
  packetSize?: number;
  /** Device FIFO in bytes: how much output may accumulate while nobody reads (default 16 KiB). */
  fifoBytes?: number;
  boardVersion?: number;
  manufacturer?: string;
  product?: string;
}

/** Counters a test can assert on. */
export interface QuantisDeviceStats {
  bytesDelivered: number;
  bulkTransfers: number;
  controlRequests: Record<number, number>;
  ais31Cleared: number;
}

let nextAddress = 1;

/**
 * A Quantis USB 4M at the transfer level: it answers the vendor control requests 0x10–0x18
 * and bulk IN on endpoint 0x86 in whole packets, paced in real time by a token bucket at the
 * configured rate. The driver talks to it through `SimulatedUsbTransport`; tests use the
 * fault controls (`unplug`, `replug`, `setFaults`, `raiseAis31`, …).
 *
 * Output bytes come from `node:crypto` — the simulator stands in for a quantum process it
 * cannot have, and says so (`simulated: true`) everywhere it appears.
 */
export class SimulatedQuantisDevice {
  readonly serial: string;
  readonly manufacturer: string;
  readonly product: string;
  readonly packetSize: number;
  readonly rateBps: number;
  readonly boardVersion: number;
  readonly vendorId = QUANTIS_VENDOR_ID;
  readonly productId = QUANTIS_PRODUCT_ID;
  readonly stats: QuantisDeviceStats = {
    bytesDelivered: 0,
    bulkTransfers: 0,
    controlRequests: {},
    ais31Cleared: 0,
  };

  /** Bus address; a new one on every replug, as on real USB. */
  address = nextAddress++;
  attached = true;
  /** Bumped on unplug: handles opened before become dead. */
  generation = 0;
  private faults: QuantisFaults = {
    stall: false,
    shortPacket: false,
    stuck: false,
    bias: 0,
    statusNotReady: false,
  };
  private moduleEnabled = true;
  private ais31Flag = false;
  private readonly bytesPerMs: number;
  private readonly fifoBytes: number;
  private tokens = 0;
  private lastRefill = performance.now();
  private readonly listeners = new Set<(event: 'attach' | 'detach') => void>();
  private readonly unplugWaiters = new Set<() => void>();

  constructor(options: SimulatedQuantisOptions = {}) {
    this.serial = options.serial ?? `SIM${randomBytes(4).toString('hex').toUpperCase()}`;
    this.manufacturer = options.manufacturer ?? 'ID Quantique';
    this.product = options.product ?? 'Quantis USB';
    this.packetSize = options.packetSize ?? QUANTIS_HIGH_SPEED_PACKET;
    this.rateBps = options.rateBps ?? 4_000_000;
    if (!(this.rateBps > 0)) throw new RangeError('rateBps must be positive');
    this.boardVersion = options.boardVersion ?? 0x00010004;
    this.bytesPerMs = this.rateBps / 8 / 1000;
    this.fifoBytes = options.fifoBytes ?? 16 * 1024;
  }

  get key(): string {
    return `sim:${this.address}`;
  }

  // ---- test controls -------------------------------------------------------------------

  /** Current faults (a copy). */
  getFaults(): QuantisFaults {
    return { ...this.faults };
  }
  /** Switches faults on or off; unspecified ones keep their state. */
  setFaults(faults: Partial<QuantisFaults>): void {
    if (faults.bias !== undefined && !(faults.bias >= 0 && faults.bias <= 1)) {
      throw new RangeError('bias must be in [0, 1]');
    }
    this.faults = { ...this.faults, ...faults };
  }
  clearFaults(): void {
    this.faults = { stall: false, shortPacket: false, stuck: false, bias: 0, statusNotReady: false };
  }
  /** The device asks the host to run AIS-31 start-up tests (flag read by request 0x17). */
  raiseAis31(): void {
    this.ais31Flag = true;
  }
  get ais31Pending(): boolean {
    return this.ais31Flag;
  }
  /** Pulls the plug: in-flight and later transfers fail with `no-device`; a `detach` event fires. */
  unplug(): void {
    if (!this.attached) return;
    this.attached = false;
    this.generation++;
    for (const wake of this.unplugWaiters) wake();
    this.unplugWaiters.clear();
    for (const l of this.listeners) l('detach');
  }
  /** Plugs it back in at a new bus address, with a fresh power-up state; an `attach` event fires. */
  replug(): void {
    if (this.attached) return;
    this.address = nextAddress++;
    this.attached = true;
    this.moduleEnabled = true;
    this.tokens = 0;
    this.lastRefill = performance.now();
    for (const l of this.listeners) l('attach');
  }

  /** @internal for the simulated bus */
  onPlugEvent(listener: (event: 'attach' | 'detach') => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- device side of the transfers ------------------------------------------------------

  /** @internal answers a vendor IN request. */
  controlIn(bRequest: number, length: number): Uint8Array {
    this.count(bRequest);
    const u8 = (v: number) => Uint8Array.of(v & 0xff);
    const u32 = (v: number) => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, v >>> 0, true);
      return b;
    };
    let answer: Uint8Array;
    switch (bRequest) {
      case QuantisRequest.GET_BOARD_VERSION:
        answer = u32(this.boardVersion);
        break;
      case QuantisRequest.GET_MODULES_STATUS:
        answer = u8(this.moduleEnabled && !this.faults.statusNotReady ? 1 : 0);
        break;
      case QuantisRequest.GET_MODULES_POWER:
        answer = u8(this.moduleEnabled ? 1 : 0);
        break;
      case QuantisRequest.GET_MODULES_MASK:
        answer = u8(1);
        break;
      case QuantisRequest.GET_MODULES_RATE:
        answer = u32(Math.round(this.rateBps / 1000));
        break;
      case QuantisRequest.GET_AIS31_STARTUP_TESTS_REQUEST_FLAG:
        answer = u8(this.ais31Flag ? 1 : 0);
        break;
      default:
        // Unknown request: the device STALLs endpoint 0, as USB devices do.
        throw new UsbTransportError('stall', `request 0x${bRequest.toString(16)} not supported`);
    }
    return answer.subarray(0, Math.min(length, answer.length));
  }

  /** @internal answers a vendor OUT request. */
  controlOut(bRequest: number): void {
    this.count(bRequest);
    switch (bRequest) {
      case QuantisRequest.MODULE_DISABLE:
        this.moduleEnabled = false;
        return;
      case QuantisRequest.MODULE_ENABLE:
        if (!this.moduleEnabled) {
          this.moduleEnabled = true;
          this.tokens = 0;
          this.lastRefill = performance.now();
        }
        return;
      case QuantisRequest.CLEAR_AIS31_STARTUP_TESTS_REQUEST_FLAG:
        if (this.ais31Flag) this.stats.ais31Cleared++;
        this.ais31Flag = false;
        return;
      default:
        throw new UsbTransportError('stall', `request 0x${bRequest.toString(16)} not supported`);
    }
  }

  /**
   * @internal one bulk IN transfer: waits for `length` bytes of output (paced by the token
   * bucket) and returns them, or fails with `timeout` / `no-device` / `canceled`.
   */
  async bulkIn(
    endpoint: number,
    length: number,
    timeoutMs: number,
    generation: number,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    if (endpoint !== QUANTIS_BULK_IN_ENDPOINT) throw new UsbTransportError('stall', 'no such endpoint');
    this.stats.bulkTransfers++;
    const started = performance.now();
    for (;;) {
      this.alive(generation);
      if (signal.aborted) throw new UsbTransportError('canceled', 'transfer cancelled');
      const elapsed = performance.now() - started;
      const ready = this.moduleEnabled && !this.faults.stall;
      if (ready) {
        // The bucket holds the device FIFO, or one whole transfer if that is larger.
        this.refill(Math.max(this.fifoBytes, length));
        if (this.tokens >= length) break;
      }
      const remaining = timeoutMs - elapsed;
      if (remaining <= 0) throw new UsbTransportError('timeout', 'bulk IN timed out');
      const need = ready ? Math.ceil((length - this.tokens) / this.bytesPerMs) : remaining;
      await this.sleep(Math.max(1, Math.min(need, remaining)), signal);
    }
    this.tokens -= length;
    let data = this.produce(length);
    if (this.faults.shortPacket) {
      // End the transfer early with a short packet.
      data = data.subarray(0, Math.max(1, length - this.packetSize + Math.floor(this.packetSize / 3)));
    }
    this.stats.bytesDelivered += data.length;
    return data;
  }

  /** @internal */
  alive(generation: number): void {
    if (!this.attached || generation !== this.generation) {
      throw new UsbTransportError('no-device', 'device has been disconnected');
    }
  }

  private produce(length: number): Uint8Array {
    if (this.faults.stuck) return new Uint8Array(length).fill(0x5a);
    const data = new Uint8Array(randomBytes(length));
    const p = this.faults.bias;
    if (p > 0) {
      const coin = randomBytes(length);
      const threshold = Math.round(p * 256);
      for (let i = 0; i < length; i++) if (coin[i]! < threshold) data[i] = 0;
    }
    return data;
  }

  private refill(capacity: number): void {
    const now = performance.now();
    this.tokens = Math.min(capacity, this.tokens + (now - this.lastRefill) * this.bytesPerMs);
    this.lastRefill = now;
  }

  private count(bRequest: number): void {
    this.stats.controlRequests[bRequest] = (this.stats.controlRequests[bRequest] ?? 0) + 1;
  }

  /** Sleeps, waking early on unplug or abort. */
  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.unplugWaiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.unplugWaiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
