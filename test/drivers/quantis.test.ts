/**
 * The Quantis USB driver, run over the simulated device through the same transport seam it
 * uses with libusb. Protocol facts under test come from ID Quantique's Quantis library for
 * Unix (QuantisUsb_Commands.h, QuantisUsb_Unix.c); see firmware-notes/quantis-usb.md.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { EntropySource } from '../../drivers/entropy/interface.js';
import {
  createLibusbTransport,
  createQuantisFactory,
  mapLibusbError,
  QuantisRequest,
  toSourceError,
  UsbTransportError,
} from '../../drivers/entropy/quantis-usb/index.js';
import { createSimulatedQuantis, SimulatedUsbTransport } from '../../simulators/quantis/index.js';

const opened: EntropySource[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

function setup(options: { serial?: string; rateBps?: number; packetSize?: number } = {}) {
  const transport = new SimulatedUsbTransport();
  const device = transport.addQuantis({ serial: options.serial ?? 'QTEST001', ...options });
  const factory = createQuantisFactory({ transport, timeoutMs: 150, resetSettleMs: 0 });
  const open = async (id?: string) => {
    const src = await factory.open(id === undefined ? {} : { id });
    opened.push(src);
    return src;
  };
  return { transport, device, factory, open };
}

describe('libusb transport on this host', () => {
  it('list() resolves (no device, maybe no permission) instead of throwing', async () => {
    const factory = createQuantisFactory({ transport: createLibusbTransport() });
    await expect(factory.list()).resolves.toEqual(expect.any(Array));
  });

  it('maps libusb error codes and transfer statuses to transport failures', () => {
    const cases: Array<[number, string]> = [
      [-4, 'no-device'], // LIBUSB_ERROR_NO_DEVICE
      [5, 'no-device'], // LIBUSB_TRANSFER_NO_DEVICE
      [3, 'canceled'], // LIBUSB_TRANSFER_CANCELLED
      [-7, 'timeout'], // LIBUSB_ERROR_TIMEOUT
      [2, 'timeout'], // LIBUSB_TRANSFER_TIMED_OUT
      [-9, 'stall'], // LIBUSB_ERROR_PIPE
      [4, 'stall'], // LIBUSB_TRANSFER_STALL
      [-8, 'overflow'], // LIBUSB_ERROR_OVERFLOW
      [6, 'overflow'], // LIBUSB_TRANSFER_OVERFLOW
      [-3, 'access'], // LIBUSB_ERROR_ACCESS
      [-1, 'io'], // LIBUSB_ERROR_IO
      [-99, 'io'], // LIBUSB_ERROR_OTHER
    ];
    for (const [errno, failure] of cases) {
      const e = mapLibusbError(Object.assign(new Error('x'), { errno }), 'op');
      expect(e.failure, `errno ${errno}`).toBe(failure);
      expect(e.errno).toBe(errno);
    }
  });

  it('maps transport failures to exactly one entropy-source flag', () => {
    const flags = (failure: ConstructorParameters<typeof UsbTransportError>[0]) => {
      const e = toSourceError('quantis-usb:X', new UsbTransportError(failure, 'm'), 'op');
      return [e.disconnected, e.canceled, e.timeout, e.io];
    };
    expect(flags('no-device')).toEqual([true, false, false, false]);
    expect(flags('canceled')).toEqual([false, true, false, false]);
    expect(flags('timeout')).toEqual([false, false, true, false]);
    for (const f of ['stall', 'overflow', 'access', 'busy', 'io'] as const) {
      expect(flags(f)).toEqual([false, false, false, true]);
    }
  });
});

describe('enumeration and open', () => {
  it('several devices are separate sources, opened by serial', async () => {
    const { transport, factory } = setup({ serial: 'QA' });
    transport.addQuantis({ serial: 'QB' });
    const list = await factory.list();
    expect(list.map((d) => d.id).sort()).toEqual(['quantis-usb:QA', 'quantis-usb:QB']);
    expect(list.every((d) => d.vendorId === 0x0aba && d.productId === 0x0102 && d.simulated)).toBe(true);
    const b = await factory.open({ serial: 'QB' });
    const a = await factory.open({ id: 'quantis-usb:QA' });
    opened.push(a, b);
    expect(a.info().serial).toBe('QA');
    expect(b.info().id).toBe('quantis-usb:QB');
    expect((await a.read(1000)).length).toBe(1000);
    expect((await b.read(1000)).length).toBe(1000);
  });

  it('an unknown serial rejects with disconnected', async () => {
    const { factory } = setup();
    await expect(factory.open({ serial: 'NOPE' })).rejects.toMatchObject({ disconnected: true });
  });

  it('info() reports serial, board version, rate from 0x16 and kind quantum', async () => {
    const { open, device } = setup();
    const src = await open();
    const info = src.info();
    expect(info).toMatchObject({
      id: 'quantis-usb:QTEST001',
      driver: 'quantis-usb',
      kind: 'quantum',
      simulated: true,
      serial: 'QTEST001',
      sampleBits: 8,
      nominalRate: 500_000, // 4000 kbit/s × 1 module / 8
      firmware: 'board 0x00010004',
    });
    expect(info.details).toMatchObject({
      boardVersion: 0x00010004,
      rateKbps: 4000,
      packetSize: 512,
      modulesMask: 1,
    });
    for (const r of [0x10, 0x13, 0x15, 0x16, 0x17])
      expect(device.stats.controlRequests[r], `request 0x${r.toString(16)}`).toBeGreaterThan(0);
  });

  it('claimed min-entropy is configurable and validated', async () => {
    const { factory } = setup();
    const src = await factory.open({ claimedMinEntropy: 6.5 });
    opened.push(src);
    expect(src.info().claimedMinEntropy).toBe(6.5);
    await expect(factory.open({ claimedMinEntropy: 9 })).rejects.toThrow(RangeError);
  });
});

describe('reading', () => {
  it('reads in whole packets, including at full speed (64-byte packets)', async () => {
    const { open } = setup({ packetSize: 64 });
    const src = await open();
    expect(src.info().details?.packetSize).toBe(64);
    expect((await src.read(3000)).length).toBe(3000);
  });

  it('is paced by the device rate (4 Mbit/s ≈ 500 kB/s)', async () => {
    const { open } = setup();
    const src = await open();
    const t0 = performance.now();
    await src.read(150_000);
    const ms = performance.now() - t0;
    // 150 kB at 500 kB/s = 300 ms, less whatever the read-ahead had buffered (≤ 64 KiB).
    expect(ms).toBeGreaterThan(120);
    expect(ms).toBeLessThan(2000);
  });

  it('keeps the read-ahead bounded while idle', async () => {
    const { transport, device } = setup();
    const factory = createQuantisFactory({ transport, readAheadBytes: 16 * 1024, resetSettleMs: 0 });
    const src = await factory.open();
    opened.push(src);
    await new Promise((r) => setTimeout(r, 300));
    // bound + at most one in-flight transfer (8 KiB)
    expect(device.stats.bytesDelivered).toBeLessThanOrEqual(16 * 1024 + 8 * 1024 + 4096);
  });

  it('fetches only what reads lack, and never serves buffered output older than 100 ms', async () => {
    const { open, device } = setup();
    const src = await open();
    const before = device.stats.bytesDelivered;
    await new Promise((r) => setTimeout(r, 200));
    // No idle read-ahead: nothing was fetched while nobody read.
    expect(device.stats.bytesDelivered).toBe(before);
    expect((await src.read(100)).length).toBe(100);
    // One packet for a 100-byte read, not a whole 8 KiB transfer.
    expect(device.stats.bytesDelivered - before).toBe(512);
    await new Promise((r) => setTimeout(r, 150));
    device.setFaults({ stuck: true });
    // The 412 bytes left over from before the fault are stale: the read sees the device as it is now.
    expect([...(await src.read(64))].every((b) => b === 0x5a)).toBe(true);
  });

  it('checks module status before bulk reads and fails io when not ready', async () => {
    const { open, device } = setup();
    const src = await open();
    await src.read(10);
    device.setFaults({ statusNotReady: true });
    await new Promise((r) => setTimeout(r, 200)); // let the read-ahead notice
    const transfers = device.stats.bulkTransfers;
    const err = await src.read(200_000).catch((e) => e);
    expect(err).toMatchObject({ io: true });
    expect(String(err.message)).toMatch(/not ready/);
    expect(device.stats.bulkTransfers).toBe(transfers); // no bulk transfer while not ready
    device.clearFaults();
    expect((await src.read(1000)).length).toBe(1000);
  });

  it('refuses to open a module that stays not ready after a board reset', async () => {
    const { factory, device } = setup();
    device.setFaults({ statusNotReady: true });
    await expect(factory.open()).rejects.toMatchObject({ io: true });
    expect(device.stats.controlRequests[QuantisRequest.MODULE_DISABLE]).toBe(1);
    expect(device.stats.controlRequests[QuantisRequest.MODULE_ENABLE]).toBe(1);
  });

  it('a short packet is an io error; the next read recovers', async () => {
    const { open, device } = setup();
    const src = await open();
    device.setFaults({ shortPacket: true });
    const err = await src.read(200_000).catch((e) => e);
    expect(err).toMatchObject({ io: true });
    expect(String(err.message)).toMatch(/short/);
    device.clearFaults();
    expect((await src.read(100)).length).toBe(100);
  });

  it('a stalled device fails the read with timeout', async () => {
    const { open, device } = setup();
    const src = await open();
    device.setFaults({ stall: true });
    const err = await src.read(200_000).catch((e) => e);
    expect(err).toMatchObject({ timeout: true, disconnected: false });
    device.clearFaults();
    expect((await src.read(100)).length).toBe(100);
  });

  it('honours the AIS-31 start-up flag: resets the board, clears the flag, fails the read once', async () => {
    const { open, device } = setup();
    const src = await open();
    await src.read(10);
    device.raiseAis31();
    const err = await src.read(200_000).catch((e) => e);
    expect(err).toMatchObject({ io: true });
    expect(String(err.message)).toMatch(/AIS-31/);
    expect(device.ais31Pending).toBe(false);
    expect(device.stats.ais31Cleared).toBe(1);
    expect(device.stats.controlRequests[QuantisRequest.MODULE_DISABLE]).toBe(1);
    expect(src.info().details?.ais31StartupRequests).toBe(1);
    expect((await src.read(1000)).length).toBe(1000);
  });

  it('clears an AIS-31 request pending at open (the pipeline start-up-tests every new source)', async () => {
    const { factory, device } = setup();
    device.raiseAis31();
    const src = await factory.open();
    opened.push(src);
    expect(device.ais31Pending).toBe(false);
    expect(src.info().details?.ais31RequestedAtOpen).toBe(true);
  });
});

describe('hot-plug', () => {
  it('unplug → detach + disconnected; replug → watch() reports it and it re-opens', async () => {
    const { factory, device, open } = setup();
    const src = await open();
    const seen: string[] = [];
    const unwatch = factory.watch!((d) => seen.push(d.id));
    let detached = false;
    src.on('detach', () => {
      detached = true;
    });
    const pending = src.read(1_000_000).catch((e) => e);
    await new Promise((r) => setTimeout(r, 20));
    device.unplug();
    expect(await pending).toMatchObject({ disconnected: true });
    expect(detached).toBe(true);
    expect(await factory.list()).toEqual([]);
    await expect(factory.open({ id: 'quantis-usb:QTEST001' })).rejects.toMatchObject({ disconnected: true });
    device.replug();
    expect(seen).toEqual(['quantis-usb:QTEST001']);
    unwatch();
    const again = await open('quantis-usb:QTEST001');
    expect((await again.read(4096)).length).toBe(4096);
    // the old handle stays dead
    await expect(src.read(1)).rejects.toMatchObject({ disconnected: true });
  });

  it('createSimulatedQuantis gives the lead a factory and the fault controls', async () => {
    const { factory, device } = createSimulatedQuantis({ serial: 'LEAD1', rateBps: 8_000_000 });
    const src = await factory.open();
    opened.push(src);
    expect(src.info().nominalRate).toBe(1_000_000);
    expect(device.serial).toBe('LEAD1');
  });
});
