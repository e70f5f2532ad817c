import { setTimeout as delay } from 'node:timers/promises';
import { BufferedEntropySource } from '../common/buffered-source.js';
import { EntropySourceError } from '../errors.js';
import type {
  EntropySource,
  EntropySourceDescriptor,
  EntropySourceFactory,
  EntropySourceInfo,
  EntropySourceOpenOptions,
} from '../interface.js';
import { createLibusbTransport } from './libusb-transport.js';
import {
  QUANTIS_BULK_IN_ENDPOINT,
  QUANTIS_CONFIGURATION,
  QUANTIS_INTERFACE,
  QUANTIS_PRODUCT_ID,
  QUANTIS_REQUEST_TIMEOUT_MS,
  QUANTIS_RESET_DISCARD_BYTES,
  QUANTIS_VENDOR_ID,
  QuantisRequest,
  REQUEST_TYPE_IN,
  REQUEST_TYPE_OUT,
} from './protocol.js';
import type { UsbDeviceHandle, UsbDeviceSummary, UsbTransport } from './transport.js';
import { UsbTransportError } from './transport.js';

export const QUANTIS_DRIVER = 'quantis-usb';
const ID_PREFIX = `${QUANTIS_DRIVER}:`;

/**
 * Default claimed min-entropy, bits per byte. Below the 8 bits a perfect byte source has, on
 * purpose: (1) the SP 800-90B §6.3.1 most-common-value estimator, which the appliance runs on
 * a rolling sample, certifies only ≈ 7.7–7.9 bits/byte even for an ideal source at 64 Ki–1 Mi
 * samples (its 99 % upper bound on p_max), so a higher claim would sit above anything the
 * operator can ever see confirmed; (2) the USB stream is the device's post-processed output
 * and the raw photon-detector bits cannot be inspected from the host; (3) the cost is small:
 * HMAC-SHA-256 conditioning needs 256/7.5 ≈ 34 raw bytes per full-entropy 32-byte block
 * instead of 32. Operators with their own assessment override it (`claimedMinEntropy`).
 */
export const QUANTIS_DEFAULT_MIN_ENTROPY = 7.5;

export interface QuantisFactoryOptions {
  /** USB access; defaults to libusb (npm `usb`). The simulator passes its own. */
  transport?: UsbTransport;
  /** Claimed min-entropy per byte for every device of this factory (open options override). */
  claimedMinEntropy?: number;
  /**
   * Bytes read ahead of callers while idle (default 0: transfers are made only for pending
   * reads, sized to what they lack). See `maxBufferAgeMs` for why a large idle read-ahead is
   * a liability here.
   */
  readAheadBytes?: number;
  /**
   * Buffered output older than this is wiped unread (default 100 ms): the pipeline's verdict
   * on a byte must be about the device as it is when the byte is read.
   */
  maxBufferAgeMs?: number;
  /** Packets per bulk transfer (default 16, i.e. 8 KiB at high speed). */
  packetsPerTransfer?: number;
  /** Wait after re-enabling the module in the board-reset sequence (vendor library: 1 s). */
  resetSettleMs?: number;
  /** Bulk and control transfer timeout (vendor library: 1000 ms). */
  timeoutMs?: number;
}

interface ResolvedOptions {
  transport: UsbTransport;
  claimedMinEntropy: number;
  readAheadBytes: number;
  maxBufferAgeMs: number;
  packetsPerTransfer: number;
  resetSettleMs: number;
  timeoutMs: number;
}

function sourceIdFor(summary: UsbDeviceSummary): string {
  return ID_PREFIX + (summary.serialNumber ?? `usb-${summary.key}`);
}

function describe(summary: UsbDeviceSummary, simulated: boolean): EntropySourceDescriptor {
  const d: EntropySourceDescriptor = {
    id: sourceIdFor(summary),
    driver: QUANTIS_DRIVER,
    description: `${summary.manufacturer ?? 'ID Quantique'} ${summary.product ?? 'Quantis USB'}${simulated ? ' (simulated)' : ''}`,
    vendorId: summary.vendorId,
    productId: summary.productId,
    simulated,
  };
  if (summary.serialNumber !== undefined) d.serial = summary.serialNumber;
  return d;
}

/** Maps a transport failure onto the entropy-source error flags. */
export function toSourceError(sourceId: string, err: unknown, what: string): EntropySourceError {
  if (err instanceof EntropySourceError) return err;
  if (err instanceof UsbTransportError) {
    const failure =
      err.failure === 'no-device'
        ? 'disconnected'
        : err.failure === 'canceled'
          ? 'canceled'
          : err.failure === 'timeout'
            ? 'timeout'
            : 'io';
    return new EntropySourceError(sourceId, failure, `${what}: ${err.failure}`, { cause: err });
  }
  return new EntropySourceError(sourceId, 'io', `${what} failed`, { cause: err });
}

function popcount(x: number): number {
  let n = 0;
  for (let v = x >>> 0; v; v &= v - 1) n++;
  return n;
}

function le32(bytes: Uint8Array): number {
  if (bytes.length < 4) throw new UsbTransportError('io', `expected 4 bytes, got ${bytes.length}`);
  return (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24)) >>> 0;
}

/** The vendor requests, over any transport. */
class QuantisCommands {
  constructor(
    private readonly handle: UsbDeviceHandle,
    private readonly timeoutMs: number,
  ) {}

  private async byte(request: number): Promise<number> {
    const data = await this.handle.controlIn(REQUEST_TYPE_IN, request, 0, 0, 1, this.timeoutMs);
    if (data.length < 1) throw new UsbTransportError('io', `request 0x${request.toString(16)}: no data`);
    // The vendor library reads this byte as a signed status: ≤ 0 is "not ready".
    return (data[0]! << 24) >> 24;
  }
  private async u32(request: number): Promise<number> {
    return le32(await this.handle.controlIn(REQUEST_TYPE_IN, request, 0, 0, 4, this.timeoutMs));
  }
  private send(request: number): Promise<void> {
    return this.handle.controlOut(REQUEST_TYPE_OUT, request, 0, 0, undefined, this.timeoutMs);
  }

  boardVersion = () => this.u32(QuantisRequest.GET_BOARD_VERSION);
  moduleDisable = () => this.send(QuantisRequest.MODULE_DISABLE);
  moduleEnable = () => this.send(QuantisRequest.MODULE_ENABLE);
  status = () => this.byte(QuantisRequest.GET_MODULES_STATUS);
  power = () => this.byte(QuantisRequest.GET_MODULES_POWER);
  mask = () => this.byte(QuantisRequest.GET_MODULES_MASK);
  rateKbps = () => this.u32(QuantisRequest.GET_MODULES_RATE);
  ais31Requested = async () => (await this.byte(QuantisRequest.GET_AIS31_STARTUP_TESTS_REQUEST_FLAG)) !== 0;
  clearAis31 = () => this.send(QuantisRequest.CLEAR_AIS31_STARTUP_TESTS_REQUEST_FLAG);
}

/** An open Quantis USB device. Created by `createQuantisFactory().open()`. */
export class QuantisUsbSource extends BufferedEntropySource implements EntropySource {
  private readonly cmd: QuantisCommands;
  private readonly transferBytes: number;
  private ais31Requests = 0;
  private unsubscribeDetach: () => void = () => undefined;

  /** @internal use the factory */
  constructor(
    sourceId: string,
    private readonly handle: UsbDeviceHandle,
    private readonly packetSize: number,
    private readonly staticInfo: EntropySourceInfo,
    private readonly options: ResolvedOptions,
  ) {
    super(sourceId, options.readAheadBytes, { maxBufferAgeMs: options.maxBufferAgeMs });
    this.cmd = new QuantisCommands(handle, options.timeoutMs);
    this.transferBytes = packetSize * options.packetsPerTransfer;
    this.unsubscribeDetach = options.transport.subscribe('detach', (d) => {
      if (d.key === handle.key) this.markDetached();
    });
  }

  info(): EntropySourceInfo {
    return {
      ...this.staticInfo,
      details: { ...this.staticInfo.details, ais31StartupRequests: this.ais31Requests },
    };
  }

  /**
   * One bulk transfer of whole packets. Before it, like the vendor library, ask the module
   * whether it is ready; and whether the device has raised the AIS-31 start-up-tests flag.
   *
   * The AIS-31 flag is honoured by resetting the board (disable, enable, discard 4096 bytes),
   * clearing the flag, discarding the read-ahead, and failing the read with an `io` error that
   * names the request: the entropy pipeline treats any read failure as a fault, quarantines the
   * source and re-admits it only after a fresh SP 800-90B start-up test (1024 samples) on new
   * output — which is the start-up test the device asked for.
   *
   * The transfer is sized to `wanted`, rounded up to whole packets and capped at
   * `packetsPerTransfer` packets, so a one-window health read fetches two packets, not 8 KiB
   * of which most would sit in the buffer going stale.
   */
  protected async fetch(wanted: number): Promise<Uint8Array> {
    try {
      const status = await this.cmd.status();
      if (status <= 0) {
        throw new EntropySourceError(this.sourceId, 'io', `Quantis module not ready (status ${status})`);
      }
      if (await this.cmd.ais31Requested()) {
        this.ais31Requests++;
        await boardReset(this.cmd, this.handle, this.packetSize, this.options);
        await this.cmd.clearAis31();
        throw new EntropySourceError(
          this.sourceId,
          'io',
          'device requested AIS-31 start-up tests; board reset, flag cleared, start-up test required',
        );
      }
      const length = Math.min(
        this.transferBytes,
        Math.max(1, Math.ceil(wanted / this.packetSize)) * this.packetSize,
      );
      const data = await this.handle.bulkIn(QUANTIS_BULK_IN_ENDPOINT, length, this.options.timeoutMs);
      if (data.length !== length) {
        data.fill(0);
        // A short packet means the device's FIFO under-ran or the transfer was corrupted;
        // the vendor library treats it as an error and so do we.
        throw new EntropySourceError(
          this.sourceId,
          'io',
          `short bulk transfer (${data.length} of ${length} bytes, packet ${this.packetSize})`,
        );
      }
      return data;
    } catch (err) {
      throw toSourceError(this.sourceId, err, 'Quantis transfer');
    }
  }

  protected async release(): Promise<void> {
    this.unsubscribeDetach();
    await this.handle.close();
  }
}

/** Board reset as in the vendor library: disable, enable, settle, read and discard 4096 bytes. */
async function boardReset(
  cmd: QuantisCommands,
  handle: UsbDeviceHandle,
  packetSize: number,
  options: ResolvedOptions,
): Promise<void> {
  await cmd.moduleDisable();
  await cmd.moduleEnable();
  if (options.resetSettleMs > 0) await delay(options.resetSettleMs, undefined, { ref: false });
  const len = Math.ceil(QUANTIS_RESET_DISCARD_BYTES / packetSize) * packetSize;
  const discard = await handle.bulkIn(QUANTIS_BULK_IN_ENDPOINT, len, options.timeoutMs);
  discard.fill(0);
}

/**
 * The Quantis USB driver family. Each device is its own source, `quantis-usb:<serial>`.
 *
 * ```ts
 * const factory = createQuantisFactory();                 // libusb
 * const [first] = await factory.list();
 * const src = await factory.open({ id: first.id });
 * const bytes = await src.read(64);
 * ```
 */
export function createQuantisFactory(options: QuantisFactoryOptions = {}): EntropySourceFactory {
  const o: ResolvedOptions = {
    transport: options.transport ?? createLibusbTransport(),
    claimedMinEntropy: options.claimedMinEntropy ?? QUANTIS_DEFAULT_MIN_ENTROPY,
    readAheadBytes: options.readAheadBytes ?? 0,
    maxBufferAgeMs: options.maxBufferAgeMs ?? 100,
    packetsPerTransfer: options.packetsPerTransfer ?? 16,
    resetSettleMs: options.resetSettleMs ?? 1000,
    timeoutMs: options.timeoutMs ?? QUANTIS_REQUEST_TIMEOUT_MS,
  };
  checkMinEntropy(o.claimedMinEntropy);
  const { transport } = o;
  const filter = { vendorId: QUANTIS_VENDOR_ID, productId: QUANTIS_PRODUCT_ID };

  async function list(): Promise<UsbDeviceSummary[]> {
    try {
      return await transport.list(filter);
    } catch {
      return [];
    }
  }

  return {
    driver: QUANTIS_DRIVER,

    async list() {
      return (await list()).map((s) => describe(s, transport.simulated));
    },

    async open(openOptions: EntropySourceOpenOptions = {}) {
      const wanted =
        openOptions.serial ??
        (openOptions.id?.startsWith(ID_PREFIX) ? openOptions.id.slice(ID_PREFIX.length) : openOptions.id);
      const devices = await list();
      const summary =
        wanted === undefined
          ? devices[0]
          : devices.find((d) => d.serialNumber === wanted || `usb-${d.key}` === wanted);
      const requestedId = wanted === undefined ? QUANTIS_DRIVER : ID_PREFIX + wanted;
      if (!summary) {
        throw new EntropySourceError(requestedId, 'disconnected', 'no such Quantis USB device attached');
      }
      const sourceId = sourceIdFor(summary);
      const claimed = openOptions.claimedMinEntropy ?? o.claimedMinEntropy;
      checkMinEntropy(claimed);
      let handle: UsbDeviceHandle;
      try {
        handle = await transport.open(summary.key, {
          configuration: QUANTIS_CONFIGURATION,
          interfaceNumber: QUANTIS_INTERFACE,
        });
      } catch (err) {
        throw toSourceError(sourceId, err, 'open');
      }
      try {
        return await initialise(sourceId, summary, handle, claimed, o);
      } catch (err) {
        await handle.close().catch(() => undefined);
        throw toSourceError(sourceId, err, 'initialise');
      }
    },

    watch(listener) {
      return transport.subscribe('attach', (s) => {
        if (s.vendorId === filter.vendorId && s.productId === filter.productId) {
          listener(describe(s, transport.simulated));
        }
      });
    },
  };
}

async function initialise(
  sourceId: string,
  summary: UsbDeviceSummary,
  handle: UsbDeviceHandle,
  claimedMinEntropy: number,
  o: ResolvedOptions,
): Promise<QuantisUsbSource> {
  const cmd = new QuantisCommands(handle, o.timeoutMs);
  const packetSize = handle.maxPacketSize(QUANTIS_BULK_IN_ENDPOINT);
  if (!(packetSize > 0)) throw new EntropySourceError(sourceId, 'io', `bad wMaxPacketSize ${packetSize}`);
  const boardVersion = await cmd.boardVersion();
  let status = await cmd.status();
  let resets = 0;
  if (status <= 0) {
    // Not ready at open: try the vendor's board reset once before giving up.
    await boardReset(cmd, handle, packetSize, o);
    resets++;
    status = await cmd.status();
    if (status <= 0)
      throw new EntropySourceError(sourceId, 'io', `Quantis module not ready (status ${status})`);
  }
  // A start-up-test request pending at open is satisfied by the start-up test the pipeline
  // runs on every newly opened source; reset the board so that test sees fresh output.
  const ais31AtOpen = await cmd.ais31Requested();
  if (ais31AtOpen) {
    if (resets === 0) await boardReset(cmd, handle, packetSize, o);
    await cmd.clearAis31();
  }
  const mask = await cmd.mask();
  const power = await cmd.power();
  const rateKbps = await cmd.rateKbps();
  // Rate per module times the number of modules in the mask (the USB model has one).
  const modules = Math.max(1, popcount(mask & 0xff));
  const nominalRate = Math.round((rateKbps * 1000 * modules) / 8);
  const simulated = o.transport.simulated;
  const info: EntropySourceInfo = {
    id: sourceId,
    driver: QUANTIS_DRIVER,
    kind: 'quantum',
    simulated,
    description: describe(summary, simulated).description,
    sampleBits: 8,
    claimedMinEntropy,
    nominalRate,
    firmware: `board 0x${boardVersion.toString(16).padStart(8, '0')}`,
    details: {
      boardVersion,
      modulesMask: mask,
      modulesPower: power,
      rateKbps,
      packetSize,
      manufacturer: summary.manufacturer ?? 'unknown',
      ais31RequestedAtOpen: ais31AtOpen,
    },
  };
  if (summary.serialNumber !== undefined) info.serial = summary.serialNumber;
  return new QuantisUsbSource(sourceId, handle, packetSize, info, o);
}

function checkMinEntropy(h: number): void {
  if (!(typeof h === 'number' && h > 0 && h <= 8)) {
    throw new RangeError(`claimedMinEntropy must be in (0, 8] bits per byte, got ${String(h)}`);
  }
}
