import type { Device, InEndpoint, Interface, LibUSBException, Transfer } from 'usb';
import type {
  UsbDeviceHandle,
  UsbDeviceSummary,
  UsbFailure,
  UsbTransport,
  UsbTransportEvents,
} from './transport.js';
import { UsbTransportError } from './transport.js';

type UsbModule = typeof import('usb');

// libusb error codes (negative, from synchronous calls) and transfer statuses (positive, from
// completed transfers), as exported by npm `usb`. Spelled out so a host whose native addon does
// not load can still map errors and list no devices.
const LIBUSB_ERROR: Record<number, UsbFailure> = {
  [-1]: 'io',
  [-3]: 'access',
  [-4]: 'no-device',
  [-5]: 'io', // NOT_FOUND
  [-6]: 'busy',
  [-7]: 'timeout',
  [-8]: 'overflow',
  [-9]: 'stall', // PIPE
  [-10]: 'canceled', // INTERRUPTED
};
const LIBUSB_TRANSFER: Record<number, UsbFailure> = {
  1: 'io', // TRANSFER_ERROR
  2: 'timeout', // TRANSFER_TIMED_OUT
  3: 'canceled', // TRANSFER_CANCELLED
  4: 'stall', // TRANSFER_STALL
  5: 'no-device', // TRANSFER_NO_DEVICE
  6: 'overflow', // TRANSFER_OVERFLOW
};

/** Maps a `LibUSBException` (or anything else thrown by npm `usb`) to a `UsbTransportError`. */
export function mapLibusbError(err: unknown, what: string): UsbTransportError {
  if (err instanceof UsbTransportError) return err;
  const errno =
    typeof (err as LibUSBException | undefined)?.errno === 'number'
      ? (err as LibUSBException).errno
      : undefined;
  let failure: UsbFailure = 'io';
  if (errno !== undefined) failure = (errno < 0 ? LIBUSB_ERROR[errno] : LIBUSB_TRANSFER[errno]) ?? 'io';
  const detail = err instanceof Error ? err.message : String(err);
  return new UsbTransportError(failure, `${what}: ${detail}`, { errno, cause: err });
}

let usbModule: Promise<UsbModule | undefined> | undefined;

/** Loads npm `usb` once; resolves undefined when its native addon cannot load on this host. */
function loadUsb(): Promise<UsbModule | undefined> {
  usbModule ??= import('usb').then(
    (m) => m,
    () => undefined,
  );
  return usbModule;
}

function keyOf(device: Device): string {
  return `${device.busNumber}:${device.deviceAddress}`;
}

function callback<T>(
  fn: (cb: (err: LibUSBException | undefined, value?: T) => void) => void,
  what: string,
): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    fn((err, value) => (err ? reject(mapLibusbError(err, what)) : resolve(value)));
  });
}

async function stringDescriptor(device: Device, index: number): Promise<string | undefined> {
  if (!index) return undefined;
  return callback<string>((cb) => device.getStringDescriptor(index, cb), 'get string descriptor').catch(
    () => undefined,
  );
}

/**
 * `UsbTransport` over libusb (npm `usb` v2, legacy API). Each opened device keeps one bulk IN
 * transfer object so `close()` can cancel it before releasing the interface — libusb must not
 * close a handle with transfers in flight.
 */
export function createLibusbTransport(): UsbTransport {
  /** Summaries of devices we hold open: reading their strings again would need a second open. */
  const openSummaries = new Map<string, UsbDeviceSummary>();

  async function summarize(device: Device): Promise<UsbDeviceSummary> {
    const key = keyOf(device);
    const held = openSummaries.get(key);
    if (held) return held;
    const d = device.deviceDescriptor;
    const summary: UsbDeviceSummary = {
      key,
      vendorId: d.idVendor,
      productId: d.idProduct,
      bcdDevice: d.bcdDevice,
    };
    try {
      device.open(false);
    } catch {
      return summary; // no permission (udev rules) or busy elsewhere: list it without strings
    }
    try {
      summary.serialNumber = await stringDescriptor(device, d.iSerialNumber);
      summary.manufacturer = await stringDescriptor(device, d.iManufacturer);
      summary.product = await stringDescriptor(device, d.iProduct);
    } finally {
      try {
        device.close();
      } catch {
        // already gone
      }
    }
    return summary;
  }

  return {
    simulated: false,

    async list(filter) {
      const usb = await loadUsb();
      if (!usb) return [];
      let devices: Device[];
      try {
        devices = usb.getDeviceList();
      } catch {
        return [];
      }
      const matching = devices.filter(
        (d) =>
          d.deviceDescriptor.idVendor === filter.vendorId &&
          d.deviceDescriptor.idProduct === filter.productId,
      );
      const out: UsbDeviceSummary[] = [];
      for (const d of matching) {
        try {
          out.push(await summarize(d));
        } catch {
          // the device vanished while we looked at it
        }
      }
      return out;
    },

    async open(key, options) {
      const usb = await loadUsb();
      if (!usb) throw new UsbTransportError('io', 'libusb is not available on this host');
      const device = usb.getDeviceList().find((d) => keyOf(d) === key);
      if (!device) throw new UsbTransportError('no-device', `no USB device at ${key}`);
      const summary = await summarize(device);
      try {
        device.open(false);
      } catch (err) {
        throw mapLibusbError(err, 'open');
      }
      let iface: Interface;
      let endpointCache = new Map<number, InEndpoint>();
      try {
        await callback((cb) => device.setConfiguration(options.configuration, cb), 'set configuration');
        iface = device.interface(options.interfaceNumber);
        if (!iface) throw new UsbTransportError('io', `interface ${options.interfaceNumber} not found`);
        iface.claim();
      } catch (err) {
        try {
          device.close();
        } catch {
          // ignore
        }
        throw mapLibusbError(err, 'claim interface');
      }
      openSummaries.set(key, summary);
      const inflight = new Set<Transfer>();
      let closed = false;

      const inEndpoint = (address: number): InEndpoint => {
        let ep = endpointCache.get(address);
        if (!ep) {
          const found = iface.endpoint(address);
          if (found?.direction !== 'in') {
            throw new UsbTransportError('io', `no IN endpoint 0x${address.toString(16)}`);
          }
          ep = found as InEndpoint;
          endpointCache.set(address, ep);
        }
        return ep;
      };

      const handle: UsbDeviceHandle = {
        key,
        maxPacketSize(endpoint) {
          return inEndpoint(endpoint).descriptor.wMaxPacketSize;
        },
        async controlIn(bmRequestType, bRequest, wValue, wIndex, length, timeoutMs) {
          if (closed) throw new UsbTransportError('canceled', 'device closed');
          device.timeout = timeoutMs;
          const data = await callback<Buffer | number>(
            (cb) => device.controlTransfer(bmRequestType, bRequest, wValue, wIndex, length, cb),
            `control IN 0x${bRequest.toString(16)}`,
          );
          return Buffer.isBuffer(data) ? new Uint8Array(data) : new Uint8Array(0);
        },
        async controlOut(bmRequestType, bRequest, wValue, wIndex, data, timeoutMs) {
          if (closed) throw new UsbTransportError('canceled', 'device closed');
          device.timeout = timeoutMs;
          await callback(
            (cb) =>
              device.controlTransfer(
                bmRequestType,
                bRequest,
                wValue,
                wIndex,
                Buffer.from(data ?? new Uint8Array(0)),
                cb,
              ),
            `control OUT 0x${bRequest.toString(16)}`,
          );
        },
        bulkIn(endpoint, length, timeoutMs) {
          if (closed) return Promise.reject(new UsbTransportError('canceled', 'device closed'));
          let ep: InEndpoint;
          try {
            ep = inEndpoint(endpoint);
          } catch (err) {
            return Promise.reject(err);
          }
          return new Promise<Uint8Array>((resolve, reject) => {
            try {
              const transfer = ep.makeTransfer(timeoutMs, (err, buffer, actual) => {
                inflight.delete(transfer);
                if (err) reject(mapLibusbError(err, 'bulk IN'));
                else resolve(new Uint8Array(buffer.buffer, buffer.byteOffset, actual));
              });
              inflight.add(transfer);
              transfer.submit(Buffer.alloc(length));
            } catch (err) {
              reject(mapLibusbError(err, 'bulk IN submit'));
            }
          });
        },
        async close() {
          if (closed) return;
          closed = true;
          openSummaries.delete(key);
          for (const t of inflight) {
            try {
              t.cancel();
            } catch {
              // already completed
            }
          }
          // Give cancelled transfers their callbacks before the handle goes away.
          const deadline = Date.now() + 2000;
          while (inflight.size > 0 && Date.now() < deadline)
            await new Promise((r) => setTimeout(r, 5).unref());
          await callback((cb) => iface.release(true, cb), 'release interface').catch(() => undefined);
          try {
            device.close();
          } catch {
            // unplugged already
          }
          endpointCache = new Map();
        },
      };
      return handle;
    },

    subscribe(event, listener) {
      let active = true;
      let unsubscribe = () => {
        active = false;
      };
      void loadUsb().then((usb) => {
        if (!usb || !active) return;
        const onAttach = (device: Device) => {
          void summarize(device).then(
            (s) => active && (listener as UsbTransportEvents['attach'])(s),
            () => undefined,
          );
        };
        const onDetach = (device: Device) => {
          const d = device.deviceDescriptor;
          (listener as UsbTransportEvents['detach'])({
            key: keyOf(device),
            vendorId: d.idVendor,
            productId: d.idProduct,
          });
        };
        const handler = event === 'attach' ? onAttach : onDetach;
        try {
          usb.usb.on(event, handler);
          // Hot-plug listening must not keep the process alive on its own.
          usb.usb.unrefHotplugEvents();
        } catch {
          return; // no hot-plug support on this host
        }
        unsubscribe = () => {
          active = false;
          usb.usb.off(event, handler);
        };
      });
      return () => unsubscribe();
    },
  };
}
