import { EventEmitter } from 'node:events';
import type {
  UsbDeviceHandle,
  UsbDeviceSummary,
  UsbTransport,
  UsbTransportEvents,
} from '../../drivers/entropy/quantis-usb/transport.js';
import { UsbTransportError } from '../../drivers/entropy/quantis-usb/transport.js';
import { SimulatedQuantisDevice, type SimulatedQuantisOptions } from './device.js';

/** Answers on a later turn of the event loop, as a real control transfer would. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A simulated USB bus holding any number of `SimulatedQuantisDevice`s, implementing the
 * driver's `UsbTransport` seam. It checks what a real device would: configuration and
 * interface numbers, request type and direction, one bulk transfer in flight per handle.
 */
export class SimulatedUsbTransport implements UsbTransport {
  readonly simulated = true;
  private readonly devices: SimulatedQuantisDevice[] = [];
  private readonly events = new EventEmitter();

  /** Plugs a new simulated Quantis into the bus (emits `attach`). */
  addQuantis(options: SimulatedQuantisOptions = {}): SimulatedQuantisDevice {
    const device = new SimulatedQuantisDevice(options);
    if (this.devices.some((d) => d.serial === device.serial))
      throw new Error(`duplicate serial ${device.serial}`);
    this.devices.push(device);
    device.onPlugEvent((event) => {
      if (event === 'attach') this.events.emit('attach', summaryOf(device));
      else
        this.events.emit('detach', {
          key: `sim:${device.address}`,
          vendorId: device.vendorId,
          productId: device.productId,
        });
    });
    this.events.emit('attach', summaryOf(device));
    return device;
  }

  get allDevices(): readonly SimulatedQuantisDevice[] {
    return this.devices;
  }

  async list(filter: { vendorId: number; productId: number }): Promise<UsbDeviceSummary[]> {
    await nextTurn();
    return this.devices
      .filter((d) => d.attached && d.vendorId === filter.vendorId && d.productId === filter.productId)
      .map(summaryOf);
  }

  async open(
    key: string,
    options: { configuration: number; interfaceNumber: number },
  ): Promise<UsbDeviceHandle> {
    await nextTurn();
    const device = this.devices.find((d) => d.attached && d.key === key);
    if (!device) throw new UsbTransportError('no-device', `no USB device at ${key}`);
    if (options.configuration !== 1) throw new UsbTransportError('io', 'device has only configuration 1');
    if (options.interfaceNumber !== 0) throw new UsbTransportError('io', 'device has only interface 0');
    return new SimulatedHandle(device);
  }

  subscribe<E extends keyof UsbTransportEvents>(event: E, listener: UsbTransportEvents[E]): () => void {
    this.events.on(event, listener);
    return () => {
      this.events.off(event, listener);
    };
  }
}

function summaryOf(d: SimulatedQuantisDevice): UsbDeviceSummary {
  return {
    key: d.key,
    vendorId: d.vendorId,
    productId: d.productId,
    serialNumber: d.serial,
    manufacturer: d.manufacturer,
    product: d.product,
    bcdDevice: 0x0100,
  };
}

class SimulatedHandle implements UsbDeviceHandle {
  readonly key: string;
  private readonly generation: number;
  private closed = false;
  private readonly abort = new AbortController();
  private bulkBusy = false;

  constructor(private readonly device: SimulatedQuantisDevice) {
    this.key = device.key;
    this.generation = device.generation;
  }

  maxPacketSize(endpoint: number): number {
    if (endpoint !== 0x86) throw new UsbTransportError('io', `no endpoint 0x${endpoint.toString(16)}`);
    return this.device.packetSize;
  }

  private check(): void {
    if (this.closed) throw new UsbTransportError('canceled', 'device closed');
    this.device.alive(this.generation);
  }

  async controlIn(bmRequestType: number, bRequest: number, wValue: number, wIndex: number, length: number) {
    await nextTurn();
    this.check();
    if (bmRequestType !== 0xc1 || wValue !== 0 || wIndex !== 0) {
      throw new UsbTransportError('stall', 'unexpected IN request setup');
    }
    return this.device.controlIn(bRequest, length);
  }

  async controlOut(
    bmRequestType: number,
    bRequest: number,
    wValue: number,
    wIndex: number,
    data: Uint8Array | undefined,
  ) {
    await nextTurn();
    this.check();
    if (bmRequestType !== 0x41 || wValue !== 0 || wIndex !== 0 || (data !== undefined && data.length > 0)) {
      throw new UsbTransportError('stall', 'unexpected OUT request setup');
    }
    this.device.controlOut(bRequest);
  }

  async bulkIn(endpoint: number, length: number, timeoutMs: number): Promise<Uint8Array> {
    this.check();
    if (this.bulkBusy) throw new UsbTransportError('busy', 'a bulk transfer is already in flight');
    if (length % this.device.packetSize !== 0) {
      // The device always sends whole packets; a request that is not a multiple overflows.
      throw new UsbTransportError('overflow', `length ${length} is not a whole number of packets`);
    }
    this.bulkBusy = true;
    try {
      return await this.device.bulkIn(endpoint, length, timeoutMs, this.generation, this.abort.signal);
    } finally {
      this.bulkBusy = false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
  }
}
