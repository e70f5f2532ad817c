/**
 * The serial TRNG driver over @serialport/binding-mock, with the device behaviour of
 * simulators/serial (TrueRNG streams only while DTR is asserted; TrueRNGpro selects its mode
 * from the baud-rate knock; OneRNG obeys `cmd` letters). Device facts: firmware-notes/truerng.md,
 * firmware-notes/onerng.md.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { EntropySource } from '../../drivers/entropy/interface.js';
import {
  createSerialTrngFactory,
  parseSerialRngEnv,
  type SerialTrngFactoryOptions,
} from '../../drivers/entropy/serial-trng/index.js';
import { createSimulatedSerialBus, uniqueSimPath } from '../../simulators/serial/index.js';

const opened: EntropySource[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

function setup(model: 'truerng' | 'truerngpro' | 'onerng', extra: SerialTrngFactoryOptions = {}) {
  const bus = createSimulatedSerialBus();
  const path = uniqueSimPath();
  const device = bus.addDevice(path, model);
  const factory = createSerialTrngFactory({
    binding: bus.binding,
    configured: [],
    knockHoldMs: 0,
    readTimeoutMs: 300,
    ...extra,
  });
  const open = async () => {
    const src = await factory.open({ id: `serial-trng:${path}` });
    opened.push(src);
    return src;
  };
  return { bus, path, device, factory, open };
}

describe('TrueRNG (04d8:f5fe)', () => {
  it('is discovered by VID:PID and reports kind physical, never quantum', async () => {
    const { factory, path, open } = setup('truerng');
    const list = await factory.list();
    expect(list).toEqual([
      expect.objectContaining({
        id: `serial-trng:${path}`,
        vendorId: 0x04d8,
        productId: 0xf5fe,
        simulated: true,
      }),
    ]);
    const src = await open();
    expect(src.info().kind).toBe('physical');
    expect(src.info().claimedMinEntropy).toBeLessThan(8);
  });

  it('asserts DTR on open, before any data is expected', async () => {
    const { device, open } = setup('truerng');
    const src = await open();
    expect(device.log.dtr).toEqual([true]);
    expect(device.streaming).toBe(true);
    expect((await src.read(5000)).length).toBe(5000);
  });

  it('the simulated TrueRNG sends nothing without DTR (so the check above means something)', async () => {
    const { bus, path, device } = setup('truerng');
    const port = await bus.binding.open({ path, baudRate: 9600 });
    await new Promise((r) => setTimeout(r, 60));
    expect(device.bytesEmitted).toBe(0);
    await port.close();
  });

  it('drops DTR on close', async () => {
    const { device, open } = setup('truerng');
    const src = await open();
    await src.close();
    expect(device.log.dtr.at(-1)).toBe(false);
  });

  it('a silent device fails reads with timeout', async () => {
    const { device, open } = setup('truerng');
    const src = await open();
    device.muted = true;
    await new Promise((r) => setTimeout(r, 30));
    const err = await src.read(1_000_000).catch((e) => e);
    expect(err).toMatchObject({ timeout: true });
  });

  it('unplug → detach event and disconnected', async () => {
    const { device, open } = setup('truerng');
    const src = await open();
    let detached = 0;
    src.on('detach', () => detached++);
    const pending = src.read(10_000_000).catch((e) => e);
    await new Promise((r) => setTimeout(r, 30));
    device.unplug();
    expect(await pending).toMatchObject({ disconnected: true });
    expect(detached).toBe(1);
  });
});

describe('TrueRNGpro (16d0:0aa0, 04d8:ebb5)', () => {
  it('selects normal mode with the knock sequence 110, 300, 110, then 300', async () => {
    const { device, open } = setup('truerngpro');
    const src = await open();
    expect(device.log.opens).toEqual([110, 300, 110, 300]);
    expect(device.mode).toBe('normal');
    expect(src.info().details).toMatchObject({ model: 'truerngpro', mode: 'normal' });
    expect((await src.read(2000)).length).toBe(2000);
  });

  it('selects another mode by its baud rate', async () => {
    const { device, open } = setup('truerngpro', { trueRngProMode: 'rawbin' });
    await open();
    expect(device.log.opens).toEqual([110, 300, 110, 19200]);
    expect(device.mode).toBe('rawbin');
  });
});

describe('OneRNG (1d50:6086)', () => {
  it('pauses, flushes, asks the version, selects mode 0 and runs, in that order', async () => {
    const { device, open } = setup('onerng');
    const src = await open();
    expect(device.log.written).toBe('cmdo\ncmdw\ncmdv\ncmd0\ncmdO\n');
    expect(src.info().firmware).toBe('OneRNG 3');
    expect(device.running).toBe(true);
    expect((await src.read(3000)).length).toBe(3000);
  });

  it('on close: pause, no-noise mode, flush the pool', async () => {
    const { device, open } = setup('onerng');
    const src = await open();
    await src.close();
    expect(device.log.written.endsWith('cmdO\ncmdo\ncmd4\ncmdw\n')).toBe(true);
    expect(device.running).toBe(false);
  });

  it('uses the configured mode digit', async () => {
    const { device, open } = setup('onerng', { oneRngMode: 1 });
    await open();
    expect(device.oneRngMode).toBe(1);
  });
});

describe('discovery without udev', () => {
  it('SerialPort.list() rejecting ENOENT (no udevadm) falls back to configured paths', async () => {
    const bus = createSimulatedSerialBus();
    const path = uniqueSimPath();
    bus.addDevice(path, 'onerng');
    bus.failList(true);
    const factory = createSerialTrngFactory({
      binding: bus.binding,
      configured: [{ path, model: 'onerng' }],
    });
    const list = await factory.list();
    expect(list.map((d) => d.id)).toEqual([`serial-trng:${path}`]);
    const src = await factory.open({ id: `serial-trng:${path}` });
    opened.push(src);
    expect(src.info().details?.model).toBe('onerng');
    expect((await src.read(100)).length).toBe(100);
  });

  it('with the platform binding on this host, list() resolves (udevadm may be missing) and open of nothing rejects typed', async () => {
    const factory = createSerialTrngFactory({ configured: [] });
    await expect(factory.list()).resolves.toEqual(expect.any(Array));
    if ((await factory.list()).length === 0) {
      await expect(factory.open()).rejects.toMatchObject({ disconnected: true });
    }
  });

  it('parses QKM_SERIAL_RNG', () => {
    expect(
      parseSerialRngEnv('/dev/ttyACM0:truerng, /dev/ttyACM1:onerng,/dev/ttyUSB0,/dev/x:TRUERNGPRO'),
    ).toEqual([
      { path: '/dev/ttyACM0', model: 'truerng' },
      { path: '/dev/ttyACM1', model: 'onerng' },
      { path: '/dev/ttyUSB0', model: 'truerng' },
      { path: '/dev/x', model: 'truerngpro' },
    ]);
    expect(parseSerialRngEnv(undefined)).toEqual([]);
    expect(parseSerialRngEnv('')).toEqual([]);
    expect(parseSerialRngEnv('/dev/a:bogus')).toEqual([]);
  });

  it('watch() reports a device that appears', async () => {
    const bus = createSimulatedSerialBus();
    const factory = createSerialTrngFactory({ binding: bus.binding, configured: [], watchIntervalMs: 20 });
    const seen: string[] = [];
    const stop = factory.watch!((d) => seen.push(d.id));
    await new Promise((r) => setTimeout(r, 40));
    const path = uniqueSimPath();
    bus.addDevice(path, 'truerng');
    await new Promise((r) => setTimeout(r, 100));
    stop();
    expect(seen).toEqual([`serial-trng:${path}`]);
  });
});
