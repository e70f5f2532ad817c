import { readFileSync } from 'node:fs';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { legacyVerifications, signTagged, taggedMessage, verifyTaggedForm } from '../../src/pqc/domain.js';
import {
  mlDsa65KeygenFromSeed,
  mlKem768Encapsulate,
  mlKem768KeygenFromSeed,
  pqcBackend,
  pqcInfo,
  usePqcBackend,
} from '../../src/pqc/index.js';

/** The seam (src/pqc/index.ts: which library does each step) and the signature domains (domain.ts). */

const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();
const vectors = <T>(name: string): T =>
  JSON.parse(readFileSync(new URL(`../vectors/pqc/${name}`, import.meta.url), 'utf8')) as T;
const encaps = vectors<{ cases: { ek: string; m: string; c: string; k: string }[] }>('mlkem768-acvp.json')
  .cases[0]!;
const dsaKg = vectors<{ cases: { seed: string; pk: string }[] }>('mldsa65-acvp-keygen.json').cases[0]!;
const kemKg = vectors<{ cases: { d: string; z: string; ek: string }[] }>('mlkem768-acvp-keygen.json')
  .cases[0]!;

afterAll(() => usePqcBackend('noble').then(() => undefined));

describe.each(['liboqs-wasm', 'noble'] as const)('the seam with pqc.backend = %s', (backend) => {
  it('names the library of each step', async () => {
    await usePqcBackend(backend);
    expect(pqcBackend().name).toBe(backend);
    expect(pqcInfo()).toEqual(
      backend === 'noble'
        ? { backend, signature: 'noble', kemDecaps: 'noble', kemEncaps: 'noble', keygen: 'noble' }
        : {
            backend,
            signature: 'liboqs-wasm',
            kemDecaps: 'liboqs-wasm',
            kemEncaps: 'noble (caller randomness)',
            keygen: 'noble (from seed)',
          },
    );
  });

  it('encapsulation with caller randomness and keygen from seeds give the NIST ACVP answers (never OS randomness)', async () => {
    await usePqcBackend(backend);
    const out = mlKem768Encapsulate(hex(encaps.ek), hex(encaps.m));
    expect(toHex(out.cipherText)).toBe(encaps.c);
    expect(toHex(out.sharedSecret)).toBe(encaps.k);
    expect(toHex(mlDsa65KeygenFromSeed(hex(dsaKg.seed)).publicKey)).toBe(dsaKg.pk);
    expect(toHex(mlKem768KeygenFromSeed(hex(kemKg.d + kemKg.z)).publicKey)).toBe(kemKg.ek);
  });

  it('tagged and legacy (context-string) signatures are disjoint, across tags too (fast-check)', async () => {
    await usePqcBackend(backend);
    const keys = mlDsa65KeygenFromSeed(new Uint8Array(32).fill(11));
    const both = ['tagged', 'legacy-context'] as const;
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 40 }),
        fc.uint8Array({ minLength: 1, maxLength: 40 }),
        fc.uint8Array({ maxLength: 200 }),
        (tag, other, msg) => {
          const tagged = signTagged(tag, msg, keys.secretKey);
          expect(verifyTaggedForm(tag, tagged, msg, keys.publicKey, both)).toBe('tagged');
          expect(verifyTaggedForm(tag, tagged, msg, keys.publicKey, ['legacy-context'])).toBeUndefined();
          const legacy = ml_dsa65.sign(msg, keys.secretKey, { context: tag });
          const before = legacyVerifications();
          expect(verifyTaggedForm(tag, legacy, msg, keys.publicKey, both)).toBe('legacy-context');
          expect(legacyVerifications()).toBe(before + 1);
          expect(verifyTaggedForm(tag, legacy, msg, keys.publicKey)).toBeUndefined();
          if (Buffer.compare(Buffer.from(tag), Buffer.from(other)) !== 0) {
            expect(verifyTaggedForm(other, tagged, msg, keys.publicKey, both)).toBeUndefined();
            expect(verifyTaggedForm(other, legacy, msg, keys.publicKey, both)).toBeUndefined();
          }
        },
      ),
      { numRuns: 8 },
    );
  });
});

describe('taggedMessage', () => {
  it('is u8(len tag) ‖ tag ‖ message, and prefix-free: moving bytes between tag and message changes it', () => {
    const enc = new TextEncoder();
    expect(Buffer.from(taggedMessage(enc.encode('ab'), enc.encode('c'))).toString('hex')).toBe('02616263');
    expect(taggedMessage(enc.encode('ab'), enc.encode('c'))).not.toEqual(
      taggedMessage(enc.encode('a'), enc.encode('bc')),
    );
  });

  it('refuses an empty tag or one longer than 255 bytes', () => {
    expect(() => taggedMessage(new Uint8Array(0), new Uint8Array(1))).toThrow(RangeError);
    expect(() => taggedMessage(new Uint8Array(256), new Uint8Array(1))).toThrow(RangeError);
    expect(taggedMessage(new Uint8Array(255), new Uint8Array(0)).length).toBe(256);
  });

  it('verification never throws on junk', () => {
    const keys = mlDsa65KeygenFromSeed(new Uint8Array(32).fill(12));
    for (const j of [undefined, null, 'x', new Uint8Array(3)]) {
      expect(
        verifyTaggedForm(new Uint8Array(3), j as Uint8Array, new Uint8Array(1), keys.publicKey),
      ).toBeUndefined();
      expect(
        verifyTaggedForm(new Uint8Array(0), new Uint8Array(3309), new Uint8Array(1), keys.publicKey),
      ).toBeUndefined();
    }
  });
});
