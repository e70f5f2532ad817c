/**
 * SP 800-90A DRBGs: limits and state handling (this file), known answers (drbg-cavp.test.ts).
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { aesCounterKeystream, CtrDrbg } from '../../src/entropy/drbg/ctr-drbg.js';
import { HashDrbg } from '../../src/entropy/drbg/hash-drbg.js';
import { HmacDrbg } from '../../src/entropy/drbg/hmac-drbg.js';
import {
  createDrbg,
  type Drbg,
  DrbgNotInstantiatedError,
  parseDrbgName,
  ReseedRequiredError,
} from '../../src/entropy/drbg/index.js';

const bytes = (n: number, fill = 0x5a): Uint8Array => new Uint8Array(n).fill(fill);

/** One representative of each mechanism, with its entropy/nonce sizes and request limit. */
const KINDS: Array<{ make: (reseedInterval?: number) => Drbg; entropy: number; maxRequest: number }> = [
  {
    make: (r) => new CtrDrbg({ cipher: 'aes-256', df: true, reseedInterval: r }),
    entropy: 32,
    maxRequest: 65536,
  },
  {
    make: (r) => new CtrDrbg({ cipher: 'aes-128', df: false, reseedInterval: r }),
    entropy: 32,
    maxRequest: 65536,
  },
  {
    make: (r) => new CtrDrbg({ cipher: 'tdea', df: true, reseedInterval: r }),
    entropy: 14,
    maxRequest: 1024,
  },
  {
    make: (r) => new CtrDrbg({ cipher: 'tdea', df: false, reseedInterval: r }),
    entropy: 29,
    maxRequest: 1024,
  },
  { make: (r) => new HmacDrbg({ hash: 'SHA-256', reseedInterval: r }), entropy: 32, maxRequest: 65536 },
  { make: (r) => new HmacDrbg({ hash: 'SHA-512', reseedInterval: r }), entropy: 32, maxRequest: 65536 },
  { make: (r) => new HashDrbg({ hash: 'SHA-1', reseedInterval: r }), entropy: 16, maxRequest: 65536 },
  { make: (r) => new HashDrbg({ hash: 'SHA-384', reseedInterval: r }), entropy: 32, maxRequest: 65536 },
];

function instantiated(k: (typeof KINDS)[number], reseedInterval?: number): Drbg {
  const d = k.make(reseedInterval);
  const noDf = d.name.includes('no df');
  d.instantiate(bytes(k.entropy, 1), noDf ? new Uint8Array(0) : bytes(8, 2));
  return d;
}

describe.each(KINDS.map((k) => [k.make().name, k] as const))('%s', (_name, kind) => {
  it('declares its limits', () => {
    const d = kind.make();
    expect(d.minEntropyBytes).toBe(kind.entropy);
    expect(d.maxRequestBytes).toBe(kind.maxRequest);
    expect(d.instantiated).toBe(false);
    expect(d.reseedCounter).toBe(0);
  });

  it('throws DrbgNotInstantiatedError for generate/reseed before instantiate and after uninstantiate', () => {
    const d = kind.make();
    expect(() => d.generate(16)).toThrow(DrbgNotInstantiatedError);
    expect(() => d.reseed(bytes(kind.entropy))).toThrow(DrbgNotInstantiatedError);
    expect(() => d.generateWithReseed(16, bytes(kind.entropy))).toThrow(DrbgNotInstantiatedError);
    const live = instantiated(kind);
    live.generate(16);
    live.uninstantiate();
    expect(live.instantiated).toBe(false);
    expect(live.reseedCounter).toBe(0);
    expect(() => live.generate(16)).toThrow(DrbgNotInstantiatedError);
  });

  it('serves exactly maxRequestBytes and throws RangeError above it', () => {
    const d = instantiated(kind);
    expect(d.generate(kind.maxRequest)).toHaveLength(kind.maxRequest);
    expect(() => d.generate(kind.maxRequest + 1)).toThrow(RangeError);
    expect(() => d.generate(-1)).toThrow(RangeError);
    expect(() => d.generate(1.5)).toThrow(RangeError);
    expect(d.generate(0)).toHaveLength(0);
  });

  it('throws ReseedRequiredError once reseed_counter passes the interval, and recovers after reseed', () => {
    const d = instantiated(kind, 3);
    expect(d.reseedCounter).toBe(1);
    for (let i = 0; i < 3; i++) d.generate(8);
    expect(d.reseedCounter).toBe(4);
    expect(() => d.generate(8)).toThrow(ReseedRequiredError);
    expect(d.reseedCounter).toBe(4);
    d.reseed(bytes(kind.entropy, 3));
    expect(d.reseedCounter).toBe(1);
    expect(d.generate(8)).toHaveLength(8);
    // Prediction resistance reseeds first, so it never hits the limit.
    d.generate(8);
    d.generate(8);
    expect(() => d.generate(8)).toThrow(ReseedRequiredError);
    expect(d.generateWithReseed(8, bytes(kind.entropy, 4))).toHaveLength(8);
    expect(d.reseedCounter).toBe(2);
  });

  it('rejects entropy input outside its bounds and non-byte arguments', () => {
    const d = kind.make();
    const nonce = d.name.includes('no df') ? new Uint8Array(0) : bytes(8);
    expect(() => d.instantiate(bytes(kind.entropy - 1), nonce)).toThrow(RangeError);
    expect(() => d.instantiate('entropy' as unknown as Uint8Array, nonce)).toThrow(TypeError);
    expect(d.instantiated).toBe(false);
    d.instantiate(bytes(kind.entropy), nonce);
    expect(() => d.reseed(bytes(kind.entropy - 1))).toThrow(RangeError);
    expect(() => d.generateWithReseed(8, bytes(kind.entropy - 1))).toThrow(RangeError);
  });

  it('rejects a request that is too large before reseeding for prediction resistance', () => {
    const d = instantiated(kind, 5);
    d.generate(8);
    expect(() => d.generateWithReseed(kind.maxRequest + 1, bytes(kind.entropy))).toThrow(RangeError);
    expect(d.reseedCounter).toBe(2);
  });

  it('is deterministic in its inputs, and additional input changes the output', () => {
    const a = instantiated(kind);
    const b = instantiated(kind);
    expect(Buffer.from(a.generate(40))).toEqual(Buffer.from(b.generate(40)));
    const addin = bytes(16, 9);
    expect(Buffer.from(a.generate(40, addin))).not.toEqual(Buffer.from(b.generate(40)));
  });

  it('rejects a reseed interval outside 1..maximum', () => {
    expect(() => kind.make(0)).toThrow(RangeError);
    expect(() => kind.make(1.5)).toThrow(RangeError);
    const max = kind.make().reseedInterval;
    expect(() => kind.make(max + 1)).toThrow(RangeError);
    expect(kind.make(max).reseedInterval).toBe(max);
  });
});

describe('mechanism limits from SP 800-90A Tables 2 and 3', () => {
  it('CTR_DRBG sizes and reseed intervals', () => {
    const aes = new CtrDrbg({ cipher: 'aes-256', df: true });
    expect([aes.securityStrength, aes.minEntropyBytes, aes.maxEntropyBytes, aes.reseedInterval]).toEqual([
      256,
      32,
      2 ** 32,
      2 ** 48,
    ]);
    const aesNoDf = new CtrDrbg({ cipher: 'aes-192', df: false });
    expect([aesNoDf.minEntropyBytes, aesNoDf.maxEntropyBytes]).toEqual([40, 40]);
    const tdea = new CtrDrbg({ cipher: 'tdea', df: true });
    expect([tdea.securityStrength, tdea.maxRequestBytes, tdea.reseedInterval]).toEqual([112, 1024, 2 ** 32]);
  });

  it('HMAC_DRBG and Hash_DRBG strengths follow the hash', () => {
    expect(new HmacDrbg({ hash: 'SHA-1' }).securityStrength).toBe(128);
    expect(new HmacDrbg({ hash: 'SHA-512/224' }).securityStrength).toBe(192);
    expect(new HashDrbg({ hash: 'SHA-512/256' }).securityStrength).toBe(256);
    expect(new HashDrbg({ hash: 'SHA-512' }).reseedInterval).toBe(2 ** 48);
  });

  it('CTR_DRBG without df: entropy exactly seedlen, no nonce, inputs at most seedlen', () => {
    const d = new CtrDrbg({ cipher: 'aes-256', df: false });
    expect(() => d.instantiate(bytes(47), new Uint8Array(0))).toThrow(RangeError);
    expect(() => d.instantiate(bytes(49), new Uint8Array(0))).toThrow(RangeError);
    expect(() => d.instantiate(bytes(48), bytes(16))).toThrow(/nonce/);
    expect(() => d.instantiate(bytes(48), new Uint8Array(0), bytes(49))).toThrow(RangeError);
    d.instantiate(bytes(48), new Uint8Array(0), bytes(48));
    expect(() => d.generate(16, bytes(49))).toThrow(RangeError);
    expect(() => d.reseed(bytes(48), bytes(49))).toThrow(RangeError);
    expect(d.generate(16, bytes(48))).toHaveLength(16);
  });

  it('CTR_DRBG with df accepts long inputs', () => {
    const d = new CtrDrbg({ cipher: 'aes-128', df: true });
    d.instantiate(bytes(1000), bytes(100), bytes(3000));
    expect(d.generate(33, bytes(5000))).toHaveLength(33);
  });

  it('rejects unknown ciphers and hashes', () => {
    expect(() => new CtrDrbg({ cipher: 'aes-512' as 'aes-256', df: true })).toThrow(RangeError);
    expect(() => new HmacDrbg({ hash: 'MD5' as 'SHA-1' })).toThrow(RangeError);
    expect(() => new HashDrbg({ hash: 'SHA3-256' as 'SHA-1' })).toThrow(RangeError);
  });
});

describe('CTR_DRBG AES fast path', () => {
  /** E(K, V+1) ‖ … ‖ E(K, V+n) by the SP 800-90A definition, one ECB block at a time. */
  function ecbCounters(key: Uint8Array, v: Uint8Array, n: number): Buffer {
    let ctr = BigInt(`0x${Buffer.from(v).toString('hex')}`);
    const blocks: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      ctr = (ctr + 1n) % 2n ** 128n;
      const block = Buffer.from(ctr.toString(16).padStart(32, '0'), 'hex');
      const c = createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
      blocks.push(c.update(block));
    }
    return Buffer.concat(blocks);
  }

  it('the aes-256-ctr stream equals the ECB counter definition, including the 2^128 wrap', () => {
    const nearWrap = fc.bigInt({ min: 2n ** 128n - 40n, max: 2n ** 128n - 1n });
    const nearCarry = fc.bigInt({ min: 0n, max: 2n ** 96n }).map((x) => (x << 32n) | 0xfffffff0n);
    const anyV = fc.bigInt({ min: 0n, max: 2n ** 128n - 1n });
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.oneof(nearWrap, nearCarry, anyV),
        fc.integer({ min: 1, max: 40 }),
        (key, vNum, n) => {
          const v = Buffer.from(vNum.toString(16).padStart(32, '0'), 'hex');
          expect(aesCounterKeystream('aes-256-ctr', key, v, n)).toEqual(ecbCounters(key, v, n));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a partial-block request consumes whole blocks, as the spec loop does', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        (n, seed) => {
          const whole = Math.ceil(n / 16) * 16;
          const a = new CtrDrbg({ cipher: 'aes-256', df: true });
          const b = new CtrDrbg({ cipher: 'aes-256', df: true });
          a.instantiate(seed, bytes(16));
          b.instantiate(seed, bytes(16));
          const partial = Buffer.from(a.generate(n));
          const full = Buffer.from(b.generate(whole));
          expect(partial).toEqual(full.subarray(0, n));
          expect(Buffer.from(a.generate(32))).toEqual(Buffer.from(b.generate(32)));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('returns only the requested bytes', () => {
    const d = new CtrDrbg({ cipher: 'aes-256', df: true });
    d.instantiate(randomBytes(32), randomBytes(16));
    const out = d.generate(5);
    expect(out).toHaveLength(5);
    // The backing store beyond the output holds no keystream or next-state material.
    // 5 bytes take one block; the stream also carried the 3 blocks of the closing Update.
    const backing = new Uint8Array(out.buffer, out.byteOffset, 64);
    expect(backing.subarray(5).every((x) => x === 0)).toBe(true);
  });
});

describe('createDrbg', () => {
  it('rebuilds every DRBG from its own name', () => {
    for (const k of KINDS) {
      const d = k.make();
      expect(createDrbg(d.name).name).toBe(d.name);
    }
  });

  it('parses CAVP section names with the mechanism', () => {
    expect(createDrbg('AES-256 use df').name).toBe('CTR_DRBG(AES-256, df)');
    expect(createDrbg('3KeyTDEA no df').name).toBe('CTR_DRBG(3KeyTDEA, no df)');
    expect(createDrbg('SHA-512/224', { mechanism: 'HMAC_DRBG' }).name).toBe('HMAC_DRBG(SHA-512/224)');
    expect(createDrbg('SHA-256', { mechanism: 'Hash_DRBG' }).name).toBe('Hash_DRBG(SHA-256)');
    expect(createDrbg('hmac_drbg(sha-1)').name).toBe('HMAC_DRBG(SHA-1)');
    expect(parseDrbgName('AES-128 use df')).toEqual({ mechanism: 'CTR_DRBG', cipher: 'aes-128', df: true });
    expect(createDrbg('CTR_DRBG(AES-256, df)', { reseedInterval: 7 }).reseedInterval).toBe(7);
  });

  it('throws RangeError for names it cannot run', () => {
    expect(() => createDrbg('SHA-256')).toThrow(/HMAC_DRBG or Hash_DRBG/);
    expect(() => createDrbg('SHA3-256', { mechanism: 'Hash_DRBG' })).toThrow(RangeError);
    expect(() => createDrbg('AES-256 use df', { mechanism: 'HMAC_DRBG' })).toThrow(RangeError);
    expect(() => createDrbg('SHA-256', { mechanism: 'CTR_DRBG' })).toThrow(RangeError);
    expect(() => createDrbg('2KeyTDEA use df')).toThrow(RangeError);
    expect(() => createDrbg('XOF_DRBG(SHAKE128)')).toThrow(RangeError);
  });
});
