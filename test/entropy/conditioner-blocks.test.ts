import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { accountConditionedEntropy, HmacConditioner } from '../../src/entropy/conditioner.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('HmacConditioner.conditionBlocks', () => {
  it('each block is HMAC-SHA-256 of its slice (RFC 4231 test case 2 as a one-block batch)', () => {
    const c = new HmacConditioner({ key: new TextEncoder().encode('Jefe') });
    const msg = new TextEncoder().encode('what do ya want for nothing?');
    const { output, blocks } = c.conditionBlocks(msg, msg.length, 0);
    expect(blocks).toBe(1);
    expect(hex(output)).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  });

  it('equals per-block condition() in output and summed credit', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 600 }),
        fc.integer({ min: 1, max: 5 }),
        fc.double({ min: 0.05, max: 8, noNaN: true }),
        fc.uint8Array({ minLength: 1, maxLength: 1 }),
        (blockBytes, blocks, perByte, [fill]) => {
          const c = new HmacConditioner();
          const input = new Uint8Array(blockBytes * blocks).map((_, i) => (i * 31 + fill!) & 0xff);
          const batch = c.conditionBlocks(input, blockBytes, perByte);
          expect(batch.blocks).toBe(blocks);
          expect(batch.output).toHaveLength(32 * blocks);
          let credited = 0;
          for (let b = 0; b < blocks; b++) {
            const slice = input.subarray(b * blockBytes, (b + 1) * blockBytes);
            const one = c.condition(slice, blockBytes * perByte);
            expect(hex(batch.output.subarray(32 * b, 32 * (b + 1)))).toBe(hex(one.output));
            expect(batch.fullEntropy).toBe(one.fullEntropy);
            credited += one.creditedBits;
          }
          expect(batch.creditedBits).toBeCloseTo(credited, 9);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('whole APT windows per block: 512 bytes at 7.5 bits/byte credit 256 bits, not 3840', () => {
    const c = new HmacConditioner();
    expect(c.blockBytesFor(7.5, 512)).toBe(512); // 43 bytes needed, rounded up to one window
    expect(c.blockBytesFor(0.5, 512)).toBe(1024); // 640 bytes needed → two windows
    expect(c.blockBytesFor(8, 40)).toBe(40);
    const input = new Uint8Array(4 * 512);
    const r = c.conditionBlocks(input, 512, 7.5);
    expect(r).toMatchObject({ blocks: 4, creditedBits: 4 * 256, fullEntropy: true });
    expect(accountConditionedEntropy(4096, 3840)).toEqual({ creditedBits: 256, fullEntropy: true });
    const key = new TextEncoder().encode('qkm/v1 HMAC-SHA-256 conditioning');
    expect(hex(r.output.subarray(0, 32))).toBe(
      createHmac('sha256', key).update(input.subarray(0, 512)).digest('hex'),
    );
  });

  it('never credits a partial block and rejects nonsense', () => {
    const c = new HmacConditioner();
    expect(() => c.conditionBlocks(new Uint8Array(513), 512, 7.5)).toThrow(RangeError);
    expect(() => c.conditionBlocks(new Uint8Array(0), 512, 7.5)).toThrow(RangeError);
    expect(() => c.conditionBlocks(new Uint8Array(512), 0, 7.5)).toThrow(RangeError);
    expect(() => c.conditionBlocks(new Uint8Array(512), 512, -1)).toThrow(RangeError);
    expect(() => c.conditionBlocks(new Uint8Array(512), 512, 9)).toThrow(RangeError);
    expect(() => c.blockBytesFor(7.5, 0)).toThrow(RangeError);
  });
});
