import { type DrbgLimits, MAX_INPUT_BYTES } from './base.js';
/** The approved hash functions for HMAC_DRBG and Hash_DRBG (SP 800-90A Table 2). */

export type DrbgHash =
  | 'SHA-1'
  | 'SHA-224'
  | 'SHA-256'
  | 'SHA-384'
  | 'SHA-512'
  | 'SHA-512/224'
  | 'SHA-512/256';

export interface HashParams {
  /** `node:crypto` algorithm name. */
  readonly node: string;
  /** outlen in bytes. */
  readonly outLen: number;
  /** Highest supported security strength in bits (SP 800-57 Part 1 Table 3). */
  readonly strength: number;
  /** Hash_DRBG seedlen in bytes (440 or 888 bits). */
  readonly seedLen: number;
}

export const HASHES: Readonly<Record<DrbgHash, HashParams>> = {
  'SHA-1': { node: 'sha1', outLen: 20, strength: 128, seedLen: 55 },
  'SHA-224': { node: 'sha224', outLen: 28, strength: 192, seedLen: 55 },
  'SHA-512/224': { node: 'sha512-224', outLen: 28, strength: 192, seedLen: 55 },
  'SHA-256': { node: 'sha256', outLen: 32, strength: 256, seedLen: 55 },
  'SHA-512/256': { node: 'sha512-256', outLen: 32, strength: 256, seedLen: 55 },
  'SHA-384': { node: 'sha384', outLen: 48, strength: 256, seedLen: 111 },
  'SHA-512': { node: 'sha512', outLen: 64, strength: 256, seedLen: 111 },
};

export function hashParams(owner: string, hash: unknown): HashParams {
  const p = typeof hash === 'string' ? HASHES[hash as DrbgHash] : undefined;
  if (p === undefined) throw new RangeError(`${owner}: unknown hash ${String(hash)}`);
  return p;
}

/** SP 800-90A Table 2 limits shared by HMAC_DRBG and Hash_DRBG. */
export const HASH_DRBG_MAX_REQUEST_BYTES = 2 ** 19 / 8;
export const HASH_DRBG_MAX_RESEED_INTERVAL = 2 ** 48;

/**
 * The DrbgBase limits HMAC_DRBG and Hash_DRBG share (SP 800-90A Table 2): they differ only in
 * the hash's security strength.
 */
export function hashFamilyLimits(h: HashParams): DrbgLimits {
  return {
    securityStrength: h.strength,
    minEntropyBytes: h.strength / 8,
    maxEntropyBytes: MAX_INPUT_BYTES,
    maxInputBytes: MAX_INPUT_BYTES,
    maxRequestBytes: HASH_DRBG_MAX_REQUEST_BYTES,
    maxReseedInterval: HASH_DRBG_MAX_RESEED_INTERVAL,
  };
}
