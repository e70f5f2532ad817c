/**
 * One conformance suite for drivers/entropy/interface.ts, run against every implementation:
 * the OS source, the Quantis driver over the simulated USB device, the serial TRNG driver over
 * @serialport/binding-mock (TrueRNG, TrueRNGpro, OneRNG), the simulated QRNG — and real
 * hardware when an environment variable names it (otherwise those rows are skipped, and the
 * test name says why).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { EntropySource, EntropySourceFactory } from '../../drivers/entropy/interface.js';
import { createOsEntropyFactory } from '../../drivers/entropy/os/index.js';
import { createQuantisFactory } from '../../drivers/entropy/quantis-usb/index.js';
import { createSerialTrngFactory, parseSerialRngEnv } from '../../drivers/entropy/serial-trng/index.js';
import { createSimulatedQrngFactory } from '../../simulators/qrng/index.js';
import { createSimulatedQuantis } from '../../simulators/quantis/index.js';
import { createSimulatedSerialBus, uniqueSimPath } from '../../simulators/serial/index.js';

interface Row {
  name: string;
  /** Why the row is skipped, if it is. */
  skip?: string;
  setup(): Promise<{ factory: EntropySourceFactory; openId?: string; unplug?: () => void }>;
  kind: 'quantum' | 'physical' | 'os';
}

const serialRow = (model: 'truerng' | 'truerngpro' | 'onerng'): Row => ({
  name: `serial-trng (${model}) over binding-mock`,
  kind: 'physical',
  async setup() {
    const bus = createSimulatedSerialBus();
    const path = uniqueSimPath();
    const device = bus.addDevice(path, model);
    const factory = createSerialTrngFactory({
      binding: bus.binding,
      configured: [],
      knockHoldMs: 0,
      readTimeoutMs: 500,
    });
    return { factory, openId: `serial-trng:${path}`, unplug: () => device.unplug() };
  },
});

const hwQuantis = process.env.QKM_TEST_QUANTIS_SERIAL;
const hwSerial = parseSerialRngEnv(process.env.QKM_TEST_SERIAL_RNG)[0];

const rows: Row[] = [
  {
    name: 'os (kernel CSPRNG)',
    kind: 'os',
    async setup() {
      return { factory: createOsEntropyFactory() };
    },
  },
  {
    name: 'quantis-usb over the simulated device',
    kind: 'quantum',
    async setup() {
      const { factory, device } = createSimulatedQuantis({ serial: 'CONF0001' });
      return { factory, openId: 'quantis-usb:CONF0001', unplug: () => device.unplug() };
    },
  },
  serialRow('truerng'),
  serialRow('truerngpro'),
  serialRow('onerng'),
  {
    name: 'sim-qrng (simulated QRNG)',
    kind: 'quantum',
    async setup() {
      const factory = createSimulatedQrngFactory();
      return { factory, unplug: () => factory.device().detach() };
    },
  },
  {
    name: 'quantis-usb on hardware',
    ...(hwQuantis ? {} : { skip: 'set QKM_TEST_QUANTIS_SERIAL to run on hardware' }),
    kind: 'quantum',
    async setup() {
      return { factory: createQuantisFactory(), openId: `quantis-usb:${hwQuantis}` };
    },
  },
  {
    name: 'serial-trng on hardware',
    ...(hwSerial ? {} : { skip: 'set QKM_TEST_SERIAL_RNG=/dev/ttyACM0:truerng to run on hardware' }),
    kind: 'physical',
    async setup() {
      return {
        factory: createSerialTrngFactory({ configured: hwSerial ? [hwSerial] : [] }),
        openId: `serial-trng:${hwSerial?.path}`,
      };
    },
  },
];

for (const row of rows) {
  const title = row.skip ? `${row.name} (skipped: ${row.skip})` : row.name;
  describe.skipIf(row.skip !== undefined)(title, () => {
    let open: EntropySource[] = [];
    afterEach(async () => {
      await Promise.all(open.map((s) => s.close()));
      open = [];
    });
    const openSource = async () => {
      const env = await row.setup();
      const src = await env.factory.open(env.openId === undefined ? {} : { id: env.openId });
      open.push(src);
      return { ...env, src };
    };

    it('list() finds the device and never throws', async () => {
      const { factory } = await row.setup();
      const list = await factory.list();
      expect(list.length).toBeGreaterThan(0);
      for (const d of list) {
        expect(d.driver).toBe(factory.driver);
        expect(typeof d.id).toBe('string');
        expect(typeof d.simulated).toBe('boolean');
      }
    });

    it('read(n) resolves exactly n bytes, for small and odd and large n', async () => {
      const { src } = await openSource();
      for (const n of [1, 3, 31, 512, 513, 10_000]) {
        const bytes = await src.read(n);
        expect(bytes).toBeInstanceOf(Uint8Array);
        expect(bytes.length).toBe(n);
      }
    });

    it('rejects n < 1 or non-integer n', async () => {
      const { src } = await openSource();
      for (const bad of [0, -1, 1.5, Number.NaN]) await expect(src.read(bad)).rejects.toThrow();
    });

    it('serves concurrent reads in call order, each complete', async () => {
      const { src } = await openSource();
      const order: number[] = [];
      const sizes = [700, 1, 2048, 5];
      const results = await Promise.all(
        sizes.map((n, i) =>
          src.read(n).then((b) => {
            order.push(i);
            return b;
          }),
        ),
      );
      expect(order).toEqual([0, 1, 2, 3]);
      expect(results.map((b) => b.length)).toEqual(sizes);
    });

    it('info() is sane', async () => {
      const { src } = await openSource();
      const info = src.info();
      expect(info.kind).toBe(row.kind);
      expect(info.id.length).toBeGreaterThan(0);
      expect([1, 8]).toContain(info.sampleBits);
      expect(info.claimedMinEntropy).toBeGreaterThan(0);
      expect(info.claimedMinEntropy).toBeLessThanOrEqual(info.sampleBits);
      if (info.nominalRate !== undefined) expect(info.nominalRate).toBeGreaterThan(0);
      expect(typeof info.simulated).toBe('boolean');
    });

    it('close() cancels pending reads with canceled; later reads reject canceled; close is idempotent', async () => {
      const { src } = await openSource();
      const pending = src.read(50_000_000).catch((e) => e);
      await new Promise((r) => setTimeout(r, 20));
      await src.close();
      const err = await pending;
      expect(err).toMatchObject({ canceled: true, disconnected: false });
      await expect(src.read(1)).rejects.toMatchObject({ canceled: true });
      await src.close();
    });

    it('an aborted signal cancels a pending read without disturbing the next', async () => {
      const { src } = await openSource();
      const ac = new AbortController();
      const big = src.read(50_000_000, ac.signal).catch((e) => e);
      ac.abort();
      expect(await big).toMatchObject({ canceled: true });
      expect((await src.read(16)).length).toBe(16);
    });

    it('detach → pending and later reads reject disconnected, and a detach event is emitted', async (ctx) => {
      const env = await openSource();
      if (!env.unplug) return ctx.skip('this driver family has no unplug to simulate');
      let detached = 0;
      env.src.on('detach', () => detached++);
      const pending = env.src.read(50_000_000).catch((e) => e);
      await new Promise((r) => setTimeout(r, 20));
      env.unplug();
      const err = await pending;
      expect(err).toMatchObject({ disconnected: true, canceled: false });
      await expect(env.src.read(1)).rejects.toMatchObject({ disconnected: true });
      expect(detached).toBe(1);
    });
  });
}
