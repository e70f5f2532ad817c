import { setTimeout as delay } from 'node:timers/promises';
// Types only (erased): bindings-cpp re-exports @serialport/bindings-interface with a plain
// `types` entry, which NodeNext resolves; bindings-interface's own `exports` has no ESM types.
import type { BindingInterface, BindingPortInterface, PortInfo } from '@serialport/bindings-cpp';
import { BufferedEntropySource } from '../common/buffered-source.js';
import { EntropySourceError } from '../errors.js';
import type {
  EntropySourceDescriptor,
  EntropySourceFactory,
  EntropySourceInfo,
  EntropySourceOpenOptions,
} from '../interface.js';
import {
  MODELS,
  modelFor,
  ONERNG,
  ONERNG_DEFAULT_MODE,
  type SerialRngModel,
  TRUERNGPRO_KNOCK,
  TRUERNGPRO_MODES,
  type TrueRngProMode,
} from './devices.js';

export const SERIAL_TRNG_DRIVER = 'serial-trng';
const ID_PREFIX = `${SERIAL_TRNG_DRIVER}:`;

/** A device named by configuration rather than found by VID:PID. */
export interface ConfiguredSerialRng {
  path: string;
  model: SerialRngModel;
}

export interface SerialTrngFactoryOptions {
  /** Serial binding; defaults to the platform binding of npm `serialport`. Tests pass `@serialport/binding-mock`. */
  binding?: BindingInterface;
  /**
   * Devices to use when listing by VID:PID is impossible (no udev) or does not show them.
   * Defaults to `parseSerialRngEnv(process.env.QKM_SERIAL_RNG)`.
   */
  configured?: ConfiguredSerialRng[];
  /** Override the claimed min-entropy per byte for every device (open options override this). */
  claimedMinEntropy?: number;
  /** TrueRNGpro mode to select with the baud-rate knock (default `normal`). */
  trueRngProMode?: TrueRngProMode;
  /** Hold time at 110 baud in the knock sequence (ubld.it's script: 500 ms). */
  knockHoldMs?: number;
  /** OneRNG mode digit 0–7 (default 0: avalanche noise with whitener). */
  oneRngMode?: number;
  /** A read that sees no byte for this long fails with `timeout` (default 2000 ms). */
  readTimeoutMs?: number;
  /** Read-ahead bound in bytes (default 16 KiB). */
  readAheadBytes?: number;
  /** Polling interval for `watch()` (default 2000 ms). */
  watchIntervalMs?: number;
}

/**
 * Parses `QKM_SERIAL_RNG`: comma-separated `path[:model]` entries, model one of `truerng`,
 * `truerngpro`, `onerng` (default `truerng`). E.g. `/dev/ttyACM0:truerng,/dev/ttyACM1:onerng`.
 * Malformed entries are skipped.
 */
export function parseSerialRngEnv(value: string | undefined): ConfiguredSerialRng[] {
  if (!value) return [];
  const out: ConfiguredSerialRng[] = [];
  for (const raw of value.split(',')) {
    const entry = raw.trim();
    if (!entry) continue;
    const i = entry.lastIndexOf(':');
    const maybeModel = i > 0 ? entry.slice(i + 1).toLowerCase() : '';
    if (maybeModel in MODELS) out.push({ path: entry.slice(0, i), model: maybeModel as SerialRngModel });
    else if (!entry.includes(':') || /^[A-Za-z]:/.test(entry)) out.push({ path: entry, model: 'truerng' });
  }
  return out;
}

interface Resolved {
  bindingP: () => Promise<BindingInterface>;
  configured: ConfiguredSerialRng[];
  claimedMinEntropy: number | undefined;
  trueRngProMode: TrueRngProMode;
  knockHoldMs: number;
  oneRngMode: number;
  readTimeoutMs: number;
  readAheadBytes: number;
  watchIntervalMs: number;
}

let platformBinding: Promise<BindingInterface> | undefined;
function defaultBinding(): Promise<BindingInterface> {
  platformBinding ??= import('serialport').then((m) => m.SerialPort.binding as BindingInterface);
  return platformBinding;
}

function hexId(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const n = Number.parseInt(v, 16);
  return Number.isFinite(n) ? n : undefined;
}

interface Found {
  path: string;
  model: SerialRngModel;
  info?: PortInfo;
}

function describe(found: Found, simulated: boolean): EntropySourceDescriptor {
  const d: EntropySourceDescriptor = {
    id: ID_PREFIX + found.path,
    driver: SERIAL_TRNG_DRIVER,
    description: MODELS[found.model].description + (simulated ? ' (simulated)' : ''),
    path: found.path,
    simulated,
  };
  const vid = hexId(found.info?.vendorId);
  const pid = hexId(found.info?.productId);
  if (vid !== undefined) d.vendorId = vid;
  if (pid !== undefined) d.productId = pid;
  if (found.info?.serialNumber) d.serial = found.info.serialNumber;
  return d;
}

/** An open serial TRNG. Created by `createSerialTrngFactory().open()`. */
export class SerialTrngSource extends BufferedEntropySource {
  /** The one outstanding binding read; a timed-out fetch leaves it running for the next. */
  private inflight: PendingBindingRead | undefined;
  private readBuffer = Buffer.alloc(4096);

  /** @internal use the factory */
  constructor(
    sourceId: string,
    private readonly port: BindingPortInterface,
    private readonly model: SerialRngModel,
    private readonly staticInfo: EntropySourceInfo,
    private readonly o: Resolved,
    pendingRead?: PendingBindingRead,
  ) {
    super(sourceId, o.readAheadBytes);
    this.inflight = pendingRead;
  }

  info(): EntropySourceInfo {
    return { ...this.staticInfo };
  }

  protected async fetch(): Promise<Uint8Array> {
    const buf = this.readBuffer;
    this.inflight ??= this.port.read(buf, 0, buf.length);
    const pending = this.inflight;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.o.readTimeoutMs);
    });
    try {
      const r = await Promise.race([pending, timeout]);
      if (r === 'timeout') {
        throw new EntropySourceError(this.sourceId, 'timeout', `no data for ${this.o.readTimeoutMs} ms`);
      }
      this.inflight = undefined;
      const out = Uint8Array.from(r.buffer.subarray(0, r.bytesRead));
      r.buffer.fill(0, 0, r.bytesRead);
      return out;
    } catch (err) {
      if (err instanceof EntropySourceError) throw err;
      this.inflight = undefined;
      // Bindings contract: a read error with `canceled` comes from close(); any other read
      // error means the port is gone (USB-serial device unplugged).
      const failure = (err as { canceled?: boolean }).canceled ? 'canceled' : 'disconnected';
      throw new EntropySourceError(this.sourceId, failure, `serial read: ${failure}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  protected async release(): Promise<void> {
    this.inflight?.catch(() => undefined);
    if (!this.port.isOpen) return;
    try {
      if (this.model === 'onerng') {
        // As the vendor's script does on exit: stop, no noise, flush the device's pool.
        await this.port.write(Buffer.from(ONERNG.pause));
        await this.port.write(Buffer.from(ONERNG.mode(4)));
        await this.port.write(Buffer.from(ONERNG.flush));
      } else {
        await this.port.set({ dtr: false, rts: false });
      }
    } catch {
      // best effort: the device may be gone
    }
    await this.port.close().catch(() => undefined);
  }
}

/**
 * The serial TRNG driver family (TrueRNG, TrueRNGpro, OneRNG) over any serialport binding.
 *
 * ```ts
 * const factory = createSerialTrngFactory();          // platform binding, QKM_SERIAL_RNG fallback
 * const src = await factory.open({ path: '/dev/ttyACM0' });
 * ```
 */
export function createSerialTrngFactory(options: SerialTrngFactoryOptions = {}): EntropySourceFactory {
  const o: Resolved = {
    bindingP: options.binding ? () => Promise.resolve(options.binding!) : defaultBinding,
    configured: options.configured ?? parseSerialRngEnv(process.env.QKM_SERIAL_RNG),
    claimedMinEntropy: options.claimedMinEntropy,
    trueRngProMode: options.trueRngProMode ?? 'normal',
    knockHoldMs: options.knockHoldMs ?? 500,
    oneRngMode: options.oneRngMode ?? ONERNG_DEFAULT_MODE,
    readTimeoutMs: options.readTimeoutMs ?? 2000,
    readAheadBytes: options.readAheadBytes ?? 16 * 1024,
    watchIntervalMs: options.watchIntervalMs ?? 2000,
  };
  const simulated =
    options.binding !== undefined && (options.binding as { simulated?: boolean }).simulated === true;

  async function find(): Promise<Found[]> {
    const found: Found[] = [];
    let binding: BindingInterface | undefined;
    try {
      binding = await o.bindingP();
    } catch {
      binding = undefined; // no native serial binding on this host: configured paths only
    }
    if (binding) {
      let ports: PortInfo[] = [];
      try {
        ports = await binding.list();
      } catch {
        // Linux bindings shell out to `udevadm`, which rejects with ENOENT where udev is
        // missing (containers, minimal hosts). Not fatal: fall back to configured paths.
        ports = [];
      }
      for (const p of ports) {
        const vid = hexId(p.vendorId);
        const pid = hexId(p.productId);
        const model = vid !== undefined && pid !== undefined ? modelFor(vid, pid) : undefined;
        if (model) found.push({ path: p.path, model, info: p });
      }
    }
    for (const c of o.configured) {
      if (!found.some((f) => f.path === c.path)) found.push({ path: c.path, model: c.model });
    }
    return found;
  }

  const factory: EntropySourceFactory = {
    driver: SERIAL_TRNG_DRIVER,

    async list() {
      try {
        return (await find()).map((f) => describe(f, simulated));
      } catch {
        return [];
      }
    },

    async open(openOptions: EntropySourceOpenOptions = {}) {
      const wantedPath =
        openOptions.path ??
        (openOptions.id?.startsWith(ID_PREFIX) ? openOptions.id.slice(ID_PREFIX.length) : undefined);
      const all = await find();
      const found =
        wantedPath !== undefined
          ? (all.find((f) => f.path === wantedPath) ?? { path: wantedPath, model: 'truerng' as const })
          : openOptions.serial !== undefined
            ? all.find((f) => f.info?.serialNumber === openOptions.serial)
            : all[0];
      if (!found) {
        throw new EntropySourceError(
          openOptions.id ?? SERIAL_TRNG_DRIVER,
          'disconnected',
          'no serial TRNG found',
        );
      }
      const sourceId = ID_PREFIX + found.path;
      const claimed =
        openOptions.claimedMinEntropy ?? o.claimedMinEntropy ?? MODELS[found.model].claimedMinEntropy;
      if (!(claimed > 0 && claimed <= 8)) throw new RangeError('claimedMinEntropy must be in (0, 8]');
      let binding: BindingInterface;
      try {
        binding = await o.bindingP();
      } catch (err) {
        throw new EntropySourceError(sourceId, 'io', 'no serial binding on this host', { cause: err });
      }
      const details: Record<string, string | number | boolean> = { model: found.model };
      let opened: Opened;
      try {
        opened = await openModel(binding, found, o, details);
      } catch (err) {
        if (err instanceof EntropySourceError) throw err;
        throw new EntropySourceError(sourceId, 'io', `cannot open ${found.path}`, { cause: err });
      }
      const model = MODELS[found.model];
      const info: EntropySourceInfo = {
        id: sourceId,
        driver: SERIAL_TRNG_DRIVER,
        kind: 'physical',
        simulated,
        description: describe(found, simulated).description,
        sampleBits: 8,
        claimedMinEntropy: claimed,
        nominalRate: model.nominalRate,
        details: { ...details, path: found.path },
      };
      if (found.info?.serialNumber) info.serial = found.info.serialNumber;
      if (typeof details.firmware === 'string') info.firmware = details.firmware;
      return new SerialTrngSource(sourceId, opened.port, found.model, info, o, opened.pendingRead);
    },

    watch(listener) {
      let known = new Set<string>();
      let first = true;
      let stopped = false;
      const tick = async () => {
        const now = await factory.list().catch(() => []);
        if (stopped) return;
        const ids = new Set(now.map((d) => d.id));
        if (!first) for (const d of now) if (!known.has(d.id)) listener(d);
        first = false;
        known = ids;
      };
      void tick();
      const timer = setInterval(() => void tick(), o.watchIntervalMs);
      timer.unref();
      return () => {
        stopped = true;
        clearInterval(timer);
      };
    },
  };
  return factory;
}

type PendingBindingRead = Promise<{ buffer: Buffer; bytesRead: number }>;

interface Opened {
  port: BindingPortInterface;
  /** A binding read still outstanding from set-up; the source continues with it. */
  pendingRead?: PendingBindingRead;
}

/** Opens the port and brings the device into streaming state, per model. Closes it on failure. */
async function openModel(
  binding: BindingInterface,
  found: Found,
  o: Resolved,
  details: Record<string, string | number | boolean>,
): Promise<Opened> {
  const { path } = found;
  if (found.model === 'truerngpro') {
    // Mode select by baud-rate knock: 110 (hold), 300, 110, then the mode's rate.
    for (const [i, baudRate] of TRUERNGPRO_KNOCK.entries()) {
      const p = await binding.open({ path, baudRate });
      if (i === 0 && o.knockHoldMs > 0) await delay(o.knockHoldMs);
      await p.close();
    }
    details.mode = o.trueRngProMode;
  }
  const baudRate = found.model === 'truerngpro' ? TRUERNGPRO_MODES[o.trueRngProMode] : 9600;
  const port = await binding.open({ path, baudRate });
  try {
    // TrueRNG firmware streams only while DTR is asserted; OneRNG ignores it; assert it for all.
    await port.set({ dtr: true, rts: true });
    if (found.model !== 'onerng') {
      await port.flush();
      return { port };
    }
    // OneRNG: pause, flush the device pool, ask its version, then select the mode and run.
    await port.write(Buffer.from(ONERNG.pause));
    await port.write(Buffer.from(ONERNG.flush));
    await port.flush();
    await port.write(Buffer.from(ONERNG.version));
    const { version, pendingRead } = await readVersion(port, 500);
    if (version !== undefined) details.firmware = `OneRNG ${version}`;
    await port.write(Buffer.from(ONERNG.mode(o.oneRngMode)));
    await port.write(Buffer.from(ONERNG.run));
    details.mode = o.oneRngMode;
    return pendingRead ? { port, pendingRead } : { port };
  } catch (err) {
    await port.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Reads the OneRNG's `Version n` reply (undefined if none arrives in time). A read still
 * outstanding at the deadline is handed back rather than abandoned: bindings allow one read
 * at a time.
 */
async function readVersion(
  port: BindingPortInterface,
  timeoutMs: number,
): Promise<{ version?: string; pendingRead?: PendingBindingRead }> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  const buf = Buffer.alloc(256);
  let pending: PendingBindingRead | undefined;
  while (Date.now() < deadline) {
    pending ??= port.read(buf, 0, buf.length);
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      pending,
      new Promise<undefined>((res) => {
        timer = setTimeout(() => res(undefined), Math.max(1, deadline - Date.now()));
      }),
    ]).finally(() => clearTimeout(timer));
    if (r === undefined) break;
    pending = undefined;
    text += buf.subarray(0, r.bytesRead).toString('latin1');
    const m = /Version\s+(\S+)/.exec(text);
    if (m && /[\r\n]/.test(text.slice(m.index))) return m[1] === undefined ? {} : { version: m[1] };
  }
  return pending ? { pendingRead: pending } : {};
}
