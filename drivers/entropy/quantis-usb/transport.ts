/**
 * The USB seam of the Quantis driver: every USB operation the driver performs goes through
 * these types, so the same driver code runs over libusb (`libusb-transport.ts`, npm `usb`) and
 * over the simulated device (`simulators/quantis/`). Kept to what the driver needs; generic
 * USB, nothing Quantis-specific.
 */

/** A device seen on the bus, with its descriptors and string descriptors already read. */
export interface UsbDeviceSummary {
  /** Identifies the device while it stays attached (e.g. `bus:address`); reused after replug is possible. */
  key: string;
  vendorId: number;
  productId: number;
  /** String descriptors; undefined when the device has none or they cannot be read (permissions). */
  serialNumber?: string;
  manufacturer?: string;
  product?: string;
  /** bcdDevice from the device descriptor. */
  bcdDevice?: number;
}

/** Why a transfer failed; mirrors libusb's error and transfer-status codes. */
export type UsbFailure =
  | 'no-device' // LIBUSB_ERROR_NO_DEVICE / LIBUSB_TRANSFER_NO_DEVICE: unplugged
  | 'canceled' // LIBUSB_TRANSFER_CANCELLED / LIBUSB_ERROR_INTERRUPTED: we closed it
  | 'timeout' // LIBUSB_ERROR_TIMEOUT / LIBUSB_TRANSFER_TIMED_OUT
  | 'stall' // LIBUSB_ERROR_PIPE / LIBUSB_TRANSFER_STALL: endpoint halted or request refused
  | 'overflow' // LIBUSB_ERROR_OVERFLOW / LIBUSB_TRANSFER_OVERFLOW: device sent more than asked
  | 'access' // LIBUSB_ERROR_ACCESS: no permission (udev rules)
  | 'busy' // LIBUSB_ERROR_BUSY: another process claimed the interface
  | 'io'; // anything else

/** The one error a transport rejects with. `errno` is libusb's, when there is one. */
export class UsbTransportError extends Error {
  readonly failure: UsbFailure;
  readonly errno: number | undefined;
  constructor(failure: UsbFailure, message: string, options?: { errno?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UsbTransportError';
    this.failure = failure;
    this.errno = options?.errno;
  }
}

/** An opened device with its configuration set and interface claimed. */
export interface UsbDeviceHandle {
  readonly key: string;
  /** `wMaxPacketSize` of an endpoint of the claimed interface; throws `UsbTransportError` if absent. */
  maxPacketSize(endpoint: number): number;
  /**
   * Control transfer, device-to-host. Resolves with the bytes the device returned (may be
   * fewer than `length`). Rejects with `UsbTransportError`.
   */
  controlIn(
    bmRequestType: number,
    bRequest: number,
    wValue: number,
    wIndex: number,
    length: number,
    timeoutMs: number,
  ): Promise<Uint8Array>;
  /** Control transfer, host-to-device, with optional data stage. Rejects with `UsbTransportError`. */
  controlOut(
    bmRequestType: number,
    bRequest: number,
    wValue: number,
    wIndex: number,
    data: Uint8Array | undefined,
    timeoutMs: number,
  ): Promise<void>;
  /**
   * Bulk IN transfer of up to `length` bytes on `endpoint`. Resolves with what arrived before
   * the transfer completed — fewer bytes when the device ended it with a short packet, which
   * the caller decides about. Rejects with `UsbTransportError` (`timeout` after `timeoutMs`).
   * At most one bulk transfer per endpoint is in flight at a time.
   */
  bulkIn(endpoint: number, length: number, timeoutMs: number): Promise<Uint8Array>;
  /** Releases the interface and closes the device. In-flight transfers reject with `canceled`. Idempotent. */
  close(): Promise<void>;
}

export interface UsbTransportEvents {
  attach: (device: UsbDeviceSummary) => void;
  /** Only `key` is reliable: a detached device can no longer be asked for its descriptors. */
  detach: (device: Pick<UsbDeviceSummary, 'key' | 'vendorId' | 'productId'>) => void;
}

export interface UsbTransport {
  /** True for the simulator, so sources can say so in `info()`. */
  readonly simulated: boolean;
  /**
   * Devices present now matching vendor and product id. Resolves `[]` when there are none or
   * when USB cannot be used at all on this host (no libusb, no permission); never rejects.
   */
  list(filter: { vendorId: number; productId: number }): Promise<UsbDeviceSummary[]>;
  /** Opens `key`, sets `configuration`, claims `interfaceNumber`. Rejects with `UsbTransportError`. */
  open(key: string, options: { configuration: number; interfaceNumber: number }): Promise<UsbDeviceHandle>;
  /** Hot-plug events; returns an unsubscribe function. */
  subscribe<E extends keyof UsbTransportEvents>(event: E, listener: UsbTransportEvents[E]): () => void;
}
