import { describe, expect, it } from 'vitest';
import type { EntropySourceError } from '../../drivers/entropy/errors.js';
import { createOsEntropyFactory, OS_SOURCE_ID, osEntropyFactory } from '../../drivers/entropy/os/index.js';
import { HealthTester } from '../../src/entropy/health.js';

describe('OS CSPRNG source', () => {
  it('lists one non-simulated source and says honestly what it is', async () => {
    expect(await osEntropyFactory.list()).toEqual([
      expect.objectContaining({ id: OS_SOURCE_ID, driver: 'os', simulated: false }),
    ]);
    const s = await osEntropyFactory.open();
    const info = s.info();
    expect(info).toMatchObject({
      id: 'os',
      kind: 'os',
      simulated: false,
      sampleBits: 8,
      claimedMinEntropy: 8,
    });
    expect(info.description).toMatch(/not a physical noise source/);
    await s.close();
  });

  it('returns exactly n bytes that pass the health tests', async () => {
    const s = await osEntropyFactory.open();
    const b = await s.read(4096);
    expect(b).toHaveLength(4096);
    // At the claimed H = 8 the RCT cutoff is 4, which an ideal source trips with probability
    // ~2^-24 per byte (α by design); test at H = 4 so this test cannot flake.
    expect(new HealthTester({ sampleBits: 8, claimedMinEntropy: 4 }).feed(b)).toBeNull();
    expect(await s.read(1)).toHaveLength(1);
    await s.close();
  });

  it('serves concurrent reads in call order (randomFill may finish out of order)', async () => {
    const s = await osEntropyFactory.open();
    for (let round = 0; round < 20; round++) {
      const order: number[] = [];
      const sizes = [1 << 18, 1, 4096, 3, 1 << 16, 7];
      await Promise.all(
        sizes.map((n, i) =>
          s.read(n).then((b) => {
            expect(b).toHaveLength(n);
            order.push(i);
          }),
        ),
      );
      expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    }
    await s.close();
  });

  it('cancels reads after close and on abort; rejects junk', async () => {
    const s = await createOsEntropyFactory({ claimedMinEntropy: 7 }).open();
    expect(s.info().claimedMinEntropy).toBe(7);
    const ac = new AbortController();
    ac.abort();
    await expect(s.read(8, ac.signal)).rejects.toMatchObject({ canceled: true });
    await expect(s.read(0)).rejects.toThrow(RangeError);
    await s.close();
    await s.close();
    const err = (await s.read(8).catch((e: unknown) => e)) as EntropySourceError;
    expect(err.canceled).toBe(true);
    await expect(osEntropyFactory.open({ id: 'other' })).rejects.toMatchObject({ disconnected: true });
    await expect(osEntropyFactory.open({ claimedMinEntropy: 9 })).rejects.toThrow(RangeError);
  });
});
