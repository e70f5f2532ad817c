import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  canonicalJson,
  gcmEncrypt,
  openKeyMaterial,
  SEAL_VERSION,
  SealOpenError,
  sealKeyMaterial,
  unwrapDataKey,
  wrapDataKey,
} from '../../src/keys/sealing.js';
import { newKey, provenance } from './helpers.js';

const hex = (s: string) => Buffer.from(s, 'hex');

describe('AES-256-GCM known answers', () => {
  // McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", Appendix B, Test Case 16
  // (AES-256, 96-bit IV, 20 bytes of AAD).
  it('GCM spec test case 16', () => {
    const out = gcmEncrypt(
      hex('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308'),
      hex('cafebabefacedbaddecaf888'),
      hex(
        'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
      ),
      hex('feedfacedeadbeeffeedfacedeadbeefabaddad2'),
    );
    expect(out.toString('hex')).toBe(
      '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662' +
        '76fc6ece0f4e1768cddf8853bb2d551b',
    );
  });

  // McGrew & Viega, Appendix B, Test Case 13 (AES-256, zero key, empty plaintext and AAD).
  it('GCM spec test case 13', () => {
    const out = gcmEncrypt(Buffer.alloc(32), Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(0));
    expect(out.toString('hex')).toBe('530f8afbc74536b9a963b4f1c4cb738b');
  });

  // McGrew & Viega, Appendix B, Test Case 14 (AES-256, zero key, one zero block).
  it('GCM spec test case 14', () => {
    const out = gcmEncrypt(Buffer.alloc(32), Buffer.alloc(12), Buffer.alloc(16), Buffer.alloc(0));
    expect(out.toString('hex')).toBe('cea7403d4d606b6e074ec5d3baf39d18' + 'd0d1c8a799996bf0265b98b5d48ab919');
  });
});

describe('sealing key material', () => {
  const dataKey = randomBytes(32);

  it('round-trips, with a version byte, a fresh nonce each time, and no plaintext in the output', () => {
    const { meta, material } = newKey();
    const a = sealKeyMaterial(dataKey, material, meta);
    const b = sealKeyMaterial(dataKey, material, meta);
    expect(a[0]).toBe(SEAL_VERSION);
    expect(a).toHaveLength(1 + 12 + material.length + 16);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    expect(Buffer.from(a).includes(Buffer.from(material))).toBe(false);
    expect(openKeyMaterial(dataKey, a, meta)).toEqual(new Uint8Array(material));
  });

  it('fails on a different record, edited metadata, a flipped bit, a changed version, or another key', () => {
    const { meta, material } = newKey({ owner: 'a', label: 'l' });
    const sealed = sealKeyMaterial(dataKey, material, meta);
    const variants = [
      { ...meta, id: newKey().meta.id },
      { ...meta, expires: null },
      { ...meta, owner: 'b' },
      { ...meta, label: undefined },
      { ...meta, purpose: 'identity' as const },
      { ...meta, provenance: provenance({ degraded: true, reason: 'x' }) },
    ];
    for (const m of variants) expect(() => openKeyMaterial(dataKey, sealed, m)).toThrow(SealOpenError);
    for (const i of [0, 1, 13, sealed.length - 1]) {
      const t = Uint8Array.from(sealed);
      t[i]! ^= 1;
      expect(() => openKeyMaterial(dataKey, t, meta)).toThrow(SealOpenError);
    }
    expect(() => openKeyMaterial(randomBytes(32), sealed, meta)).toThrow(SealOpenError);
    expect(() => openKeyMaterial(dataKey, sealed.subarray(0, 20), meta)).toThrow(SealOpenError);
  });

  it('binding ignores key order and mutable fields (state, closedAt)', () => {
    const { meta, material } = newKey();
    const sealed = sealKeyMaterial(dataKey, material, meta);
    const reordered = JSON.parse(JSON.stringify(Object.fromEntries(Object.entries(meta).reverse())));
    const closed = { ...reordered, state: 'taken', closedAt: new Date().toISOString() };
    expect(openKeyMaterial(dataKey, sealed, closed)).toEqual(new Uint8Array(material));
  });

  it('canonicalJson sorts keys at every level', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[{"y":2,"z":1}]},"b":1}',
    );
  });

  it('wraps and unwraps the data key; a wrong KEK fails', () => {
    const kek = randomBytes(32);
    const wrapped = wrapDataKey(kek, dataKey);
    expect(unwrapDataKey(kek, wrapped)).toEqual(new Uint8Array(dataKey));
    expect(() => unwrapDataKey(randomBytes(32), wrapped)).toThrow(SealOpenError);
    // A key-material ciphertext is not accepted as a wrapped data key (different label).
    const { meta } = newKey();
    expect(() => unwrapDataKey(kek, sealKeyMaterial(kek, dataKey, meta))).toThrow(SealOpenError);
  });
});
