import { readFileSync } from 'node:fs';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { PqcUnsupported } from '../../src/pqc/interface.js';
import { liboqsBackend } from '../../src/pqc/liboqs.js';
import { nobleBackend } from '../../src/pqc/noble.js';

const oqs = await liboqsBackend();
const noble = nobleBackend();
afterAll(() => oqs.destroy());
const empty = new Uint8Array(0);

describe('PQC backends cross-verify (liboqs-wasm ⇄ noble)', () => {
  const dsaKeys = ml_dsa65.keygen(new Uint8Array(32).fill(7));
  const kemKeys = ml_kem768.keygen(new Uint8Array(64).fill(9));

  it('ML-DSA-65: signed by one, verified by the other; a flipped bit fails on both', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), (msg, flip) => {
        for (const [a, b] of [
          [oqs, noble],
          [noble, oqs],
        ] as const) {
          const sig = a.mlDsa65.sign(msg, dsaKeys.secretKey, empty);
          expect(b.mlDsa65.verify(sig, msg, dsaKeys.publicKey, empty)).toBe(true);
          const bad = sig.slice();
          const at = flip % bad.length;
          bad[at] = (bad[at] ?? 0) ^ 1;
          expect(b.mlDsa65.verify(bad, msg, dsaKeys.publicKey, empty)).toBe(false);
        }
      }),
      { numRuns: 10 },
    );
  });

  it('ML-KEM-768: encapsulated by one, decapsulated by the other', () => {
    fc.assert(
      fc.property(fc.constant(0), () => {
        for (const [a, b] of [
          [oqs, noble],
          [noble, oqs],
        ] as const) {
          const { cipherText, sharedSecret } = a.mlKem768.encapsulate(kemKeys.publicKey);
          expect(b.mlKem768.decapsulate(cipherText, kemKeys.secretKey)).toEqual(sharedSecret);
        }
      }),
      { numRuns: 10 },
    );
  });

  it('liboqs refuses what it cannot do instead of silently doing something else', () => {
    const ctx = new TextEncoder().encode('qkm/v1 handshake');
    expect(() => oqs.mlDsa65.sign(empty, dsaKeys.secretKey, ctx)).toThrow(PqcUnsupported);
    expect(() => oqs.mlKem768.encapsulate(kemKeys.publicKey, new Uint8Array(32))).toThrow(PqcUnsupported);
    expect(() => oqs.mlDsa65.keygenFromSeed(new Uint8Array(32))).toThrow(PqcUnsupported);
  });

  it('malformed inputs: verify gives false on both, never throws', () => {
    for (const b of [oqs, noble]) {
      expect(b.mlDsa65.verify(new Uint8Array(5), empty, dsaKeys.publicKey, empty)).toBe(false);
      expect(b.mlDsa65.verify(new Uint8Array(3309), empty, new Uint8Array(7), empty)).toBe(false);
      expect(() => b.mlKem768.decapsulate(new Uint8Array(3), kemKeys.secretKey)).toThrow();
    }
  });
});

describe('FIPS 203 known answer (NIST ACVP, test/vectors/pqc/mlkem768-acvp.json)', () => {
  const file = JSON.parse(
    readFileSync(new URL('../vectors/pqc/mlkem768-acvp.json', import.meta.url), 'utf8'),
  ) as { cases: { tcId: number; ek: string; m: string; c: string; k: string }[] };
  for (const v of file.cases) {
    it(`ML-KEM-768 encapsulation tcId ${v.tcId} on every backend that takes caller randomness`, () => {
      for (const b of [noble, oqs].filter((x) => x.mlKem768.derandomisedEncaps)) {
        const out = b.mlKem768.encapsulate(Buffer.from(v.ek, 'hex'), Buffer.from(v.m, 'hex'));
        expect(Buffer.from(out.cipherText).toString('hex').toUpperCase()).toBe(v.c);
        expect(Buffer.from(out.sharedSecret).toString('hex').toUpperCase()).toBe(v.k);
      }
    });
  }
});
