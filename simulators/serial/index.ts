import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type {
  BindingInterface,
  BindingPortInterface,
  OpenOptions,
  PortInfo,
  SetOptions,
  UpdateOptions,
} from '@serialport/bindings-cpp';
import {
  KNOWN_DEVICES,
  MODELS,
  type SerialRngModel,
  TRUERNGPRO_KNOCK,
  TRUERNGPRO_MODES,
} from '../../drivers/entropy/serial-trng/devices.js';

// binding-mock's `exports` has no ESM types: load its CommonJS build through require and
// type the little of it this module uses. Interface types come via bindings-cpp (types only).
interface MockPortBinding extends BindingPortInterface {
  emitData(data: Buffer | string): void;
  readonly port: { data: Buffer };
}
interface BindingMockModule {
  MockBinding: {
    createPort(path: string, options: { vendorId?: string; productId?: string; manufacturer?: string }): void;
    list(): Promise<PortInfo[]>;
    open(options: OpenOptions): Promise<MockPortBinding>;
  };
}
const { MockBinding } = createRequire(import.meta.url)('@serialport/binding-mock') as BindingMockModule;

/**
 * Simulated USB-serial TRNGs on top of `@serialport/binding-mock`: the mock supplies the port
 * mechanics (open/lock, read with cancel-on-close, write, flush), this layer supplies device
 * behaviour — TrueRNG streams only while DTR is asserted, TrueRNGpro picks its mode from the
 * baud-rate knock, OneRNG obeys its `cmd` letters — so the real serial driver runs unchanged.
 *
 * Output bytes come from `node:crypto`; nothing here is a physical noise source.
 */

export interface SimulatedSerialRngOptions {
  /** Output rate in bytes/s (default: the model's nominal rate). */
  rate?: number;
  /** Reply to OneRNG `cmdv` (default `3`). */
  version?: string;
}

/** What the driver did to the device, for assertions. */
export interface SerialDeviceLog {
  /** Baud rates of every open, in order. */
  opens: number[];
  /** Every `set()` call's DTR value, in order. */
  dtr: boolean[];
  /** Everything written to the device, as text. */
  written: string;
}

export class SimulatedSerialRng {
  readonly log: SerialDeviceLog = { opens: [], dtr: [], written: '' };
  attached = true;
  /** TrueRNGpro mode selected by the last knock (`normal` at power-up). */
  mode: string = 'normal';
  /** OneRNG: running after `cmdO`, paused after `cmdo`. */
  running = false;
  oneRngMode = 0;
  dtr = false;
  /** Output stuck at one byte value. */
  stuck = false;
  /** Produces nothing even when it should stream (a hung firmware): reads time out. */
  muted = false;
  bytesEmitted = 0;
  /** @internal */ port: MockPortBinding | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly unplugListeners = new Set<() => void>();
  private readonly bytesPerTick: number;

  constructor(
    readonly path: string,
    readonly model: SerialRngModel,
    private readonly options: SimulatedSerialRngOptions = {},
  ) {
    this.bytesPerTick = Math.max(
      1,
      Math.round(((options.rate ?? MODELS[model].nominalRate) * TICK_MS) / 1000),
    );
  }

  /** Removes the device: pending reads fail (non-canceled error = disconnected) and it leaves the list. */
  unplug(): void {
    if (!this.attached) return;
    this.attached = false;
    this.stopStream();
    for (const l of this.unplugListeners) l();
  }
  replug(): void {
    this.attached = true;
    this.mode = 'normal';
    this.running = false;
  }

  /** @internal */
  onUnplug(l: () => void): () => void {
    this.unplugListeners.add(l);
    return () => this.unplugListeners.delete(l);
  }

  /** @internal the device sees an open at `baudRate`. */
  opened(port: MockPortBinding, baudRate: number): void {
    this.port = port;
    this.log.opens.push(baudRate);
    const o = this.log.opens;
    if (this.model === 'truerngpro' && o.length >= 4) {
      const knock = o.slice(-4, -1);
      if (knock.every((b, i) => b === TRUERNGPRO_KNOCK[i])) {
        const entry = Object.entries(TRUERNGPRO_MODES).find(([, rate]) => rate === baudRate);
        if (entry) this.mode = entry[0];
      }
    }
  }
  /** @internal */
  closed(): void {
    this.stopStream();
    this.dtr = false;
    this.port = undefined;
  }
  /** @internal */
  setLines(options: SetOptions): void {
    this.dtr = options.dtr ?? true; // bindings: unspecified flags take their defaults (DTR on)
    this.log.dtr.push(this.dtr);
    this.update();
  }
  /** @internal */
  received(data: Buffer): void {
    const text = data.toString('latin1');
    this.log.written += text;
    if (this.model !== 'onerng') return;
    for (const m of text.matchAll(/cmd([0-9a-fA-FOowvIX])/g)) {
      const c = m[1]!;
      if (c === 'O') this.running = true;
      else if (c === 'o') this.running = false;
      else if (c === 'v' && !this.running) this.port?.emitData(`Version ${this.options.version ?? '3'}\n`);
      else if (/[0-9a-f]/i.test(c)) this.oneRngMode = Number.parseInt(c, 16);
    }
    this.update();
  }

  /** Whether the device is producing output now. */
  get streaming(): boolean {
    if (!this.attached || !this.port?.isOpen) return false;
    if (this.model === 'onerng') return this.running && this.oneRngMode !== 4 && this.oneRngMode !== 5;
    return this.dtr;
  }

  private update(): void {
    if (this.streaming) this.startStream();
    else this.stopStream();
  }

  private startStream(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }
  private stopStream(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
  private tick(): void {
    const port = this.port;
    if (!port?.isOpen || !this.streaming) {
      this.stopStream();
      return;
    }
    // Like a tty, hold a bounded backlog; beyond it the device's output is lost.
    if (this.muted || port.port.data.length >= MAX_BACKLOG) return;
    const chunk = this.stuck ? Buffer.alloc(this.bytesPerTick, 0xa5) : randomBytes(this.bytesPerTick);
    this.bytesEmitted += chunk.length;
    port.emitData(chunk);
  }
}

const TICK_MS = 10;
const MAX_BACKLOG = 64 * 1024;

export interface SimulatedSerialBus {
  /** A serialport binding the real driver can use (`createSerialTrngFactory({ binding })`). */
  binding: BindingInterface & { simulated: true };
  /** Adds a device at `path` (a mock port with the model's USB ids). */
  addDevice(path: string, model: SerialRngModel, options?: SimulatedSerialRngOptions): SimulatedSerialRng;
  devices: Map<string, SimulatedSerialRng>;
  /** Make `list()` reject like `udevadm` missing (ENOENT), as on hosts without udev. */
  failList(on: boolean): void;
}

let pathCounter = 0;
/** A fresh unique path, since binding-mock's port table is process-global. */
export function uniqueSimPath(prefix = '/dev/ttySIM'): string {
  return `${prefix}${process.pid}-${++pathCounter}`;
}

export function createSimulatedSerialBus(): SimulatedSerialBus {
  const devices = new Map<string, SimulatedSerialRng>();
  let listFails = false;

  const binding: BindingInterface & { simulated: true } = {
    simulated: true,
    async list(): Promise<PortInfo[]> {
      if (listFails) {
        throw Object.assign(new Error('spawn udevadm ENOENT'), {
          code: 'ENOENT',
          errno: -2,
          syscall: 'spawn udevadm',
        });
      }
      const all = await MockBinding.list();
      return all.filter((p) => devices.get(p.path)?.attached);
    },
    async open(options: OpenOptions): Promise<BindingPortInterface> {
      const device = devices.get(options.path);
      if (!device?.attached) throw new Error(`Error: No such file or directory, cannot open ${options.path}`);
      const port = await MockBinding.open(options);
      device.opened(port, options.baudRate);
      return new SimulatedPort(port, device);
    },
  };

  return {
    binding,
    devices,
    failList(on) {
      listFails = on;
    },
    addDevice(path, model, options) {
      const ids = KNOWN_DEVICES.find((d) => d.model === model)!;
      MockBinding.createPort(path, {
        vendorId: ids.vendorId.toString(16).padStart(4, '0'),
        productId: ids.productId.toString(16).padStart(4, '0'),
        manufacturer: model === 'onerng' ? 'Moonbase Otago' : 'ubld.it',
      });
      const device = new SimulatedSerialRng(path, model, options);
      devices.set(path, device);
      return device;
    },
  };
}

/** Delegates to the mock port, letting the device see control lines, writes and unplug. */
class SimulatedPort implements BindingPortInterface {
  private readonly offUnplug: () => void;
  private unplugged: ((err: Error) => void) | undefined;

  constructor(
    private readonly inner: MockPortBinding,
    private readonly device: SimulatedSerialRng,
  ) {
    this.offUnplug = device.onUnplug(() => {
      this.unplugged?.(new Error('device disconnected (EIO)'));
      this.inner.close().catch(() => undefined);
    });
  }

  get openOptions() {
    return this.inner.openOptions;
  }
  get isOpen() {
    return this.inner.isOpen && this.device.attached;
  }

  async close(): Promise<void> {
    this.offUnplug();
    this.device.closed();
    if (this.inner.isOpen) await this.inner.close();
  }

  read(buffer: Buffer, offset: number, length: number) {
    if (!this.device.attached) return Promise.reject(new Error('device disconnected (EIO)'));
    return new Promise<{ buffer: Buffer; bytesRead: number }>((resolve, reject) => {
      this.unplugged = reject;
      this.inner.read(buffer, offset, length).then(resolve, (err: { canceled?: boolean }) => {
        // The mock cancels reads when we close it on unplug; the device saw an error, not a close.
        if (!this.device.attached) reject(new Error('device disconnected (EIO)'));
        else reject(err);
      });
    });
  }

  async write(buffer: Buffer): Promise<void> {
    if (!this.device.attached) throw new Error('device disconnected (EIO)');
    await this.inner.write(buffer);
    this.device.received(buffer);
  }

  async update(options: UpdateOptions): Promise<void> {
    await this.inner.update(options);
  }

  async set(options: SetOptions): Promise<void> {
    if (!this.device.attached) throw new Error('device disconnected (EIO)');
    await this.inner.set(options);
    this.device.setLines(options);
  }

  get() {
    return this.inner.get();
  }
  getBaudRate() {
    return this.inner.getBaudRate();
  }
  flush() {
    return this.inner.flush();
  }
  drain() {
    return this.inner.drain();
  }
}
