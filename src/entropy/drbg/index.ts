/**
 * DRBG factory: builds a `Drbg` from a name, either the `Drbg.name` form
 * (`CTR_DRBG(AES-256, df)`, `HMAC_DRBG(SHA-512)`, `Hash_DRBG(SHA-256)`) or a CAVP section name
 * (`AES-256 use df`, `3KeyTDEA no df`, `SHA-512/224`) with the mechanism given separately.
 */
import { CtrDrbg, type CtrCipher } from './ctr-drbg.js';
import { HashDrbg } from './hash-drbg.js';
import { type DrbgHash, HASHES } from './hashes.js';
import { HmacDrbg } from './hmac-drbg.js';
import type { Drbg } from './interface.js';

export { DrbgNotInstantiatedError } from './base.js';
export { CtrDrbg, type CtrCipher, type CtrDrbgOptions } from './ctr-drbg.js';
export { HashDrbg, type HashDrbgOptions } from './hash-drbg.js';
export type { DrbgHash } from './hashes.js';
export { HmacDrbg, type HmacDrbgOptions } from './hmac-drbg.js';
export { type Drbg, ReseedRequiredError } from './interface.js';

export type DrbgMechanism = 'CTR_DRBG' | 'HMAC_DRBG' | 'Hash_DRBG';

export type DrbgSpec =
  | { mechanism: 'CTR_DRBG'; cipher: CtrCipher; df: boolean }
  | { mechanism: 'HMAC_DRBG' | 'Hash_DRBG'; hash: DrbgHash };

export interface CreateDrbgOptions {
  /** Needed for a bare hash name (`SHA-256`), which HMAC_DRBG and Hash_DRBG share. */
  mechanism?: DrbgMechanism;
  reseedInterval?: number;
}

const CIPHERS: Record<string, CtrCipher> = {
  'AES-128': 'aes-128',
  'AES-192': 'aes-192',
  'AES-256': 'aes-256',
  '3KEYTDEA': 'tdea',
  TDEA: 'tdea',
};

const MECHANISMS: Record<string, DrbgMechanism> = {
  CTR_DRBG: 'CTR_DRBG',
  HMAC_DRBG: 'HMAC_DRBG',
  HASH_DRBG: 'Hash_DRBG',
};

/** Accepts `CTR`, `ctr_drbg`, `HMAC_DRBG`, `hash` …; undefined when not a mechanism name. */
export function parseMechanism(text: string): DrbgMechanism | undefined {
  const t = text.trim().toUpperCase().replace(/-/g, '_');
  return MECHANISMS[t] ?? MECHANISMS[`${t}_DRBG`];
}

function parseAlgorithm(text: string, mechanism: DrbgMechanism | undefined): DrbgSpec {
  const t = text.trim().replace(/\s+/g, ' ');
  // CTR forms: "AES-256 use df", "AES-128 no df", "AES-256, df", "3KeyTDEA, no df".
  const ctr = /^([A-Za-z0-9-]+?)(?:,)? (use df|no df|df)$/i.exec(t);
  if (ctr !== null) {
    const cipher = CIPHERS[(ctr[1] as string).toUpperCase()];
    if (cipher === undefined) throw new RangeError(`unsupported CTR_DRBG cipher "${ctr[1]}"`);
    if (mechanism !== undefined && mechanism !== 'CTR_DRBG') {
      throw new RangeError(`"${t}" is a CTR_DRBG section, not ${mechanism}`);
    }
    return { mechanism: 'CTR_DRBG', cipher, df: (ctr[2] as string).toLowerCase() !== 'no df' };
  }
  const hash = (Object.keys(HASHES) as DrbgHash[]).find((h) => h.toUpperCase() === t.toUpperCase());
  if (hash === undefined) throw new RangeError(`unsupported DRBG algorithm "${t}"`);
  if (mechanism === undefined) {
    throw new RangeError(`"${t}" names a hash; say whether it is HMAC_DRBG or Hash_DRBG`);
  }
  if (mechanism === 'CTR_DRBG') throw new RangeError(`"${t}" is not a CTR_DRBG cipher`);
  return { mechanism, hash };
}

/**
 * Parses a DRBG name into a spec. RangeError for anything it cannot run (unknown mechanism,
 * cipher or hash; a hash name without a mechanism).
 */
export function parseDrbgName(name: string, mechanism?: DrbgMechanism): DrbgSpec {
  if (typeof name !== 'string') throw new TypeError('DRBG name must be a string');
  const full = /^\s*([A-Za-z_]+)\s*\((.*)\)\s*$/.exec(name);
  if (full !== null) {
    const m = parseMechanism(full[1] as string);
    if (m === undefined) throw new RangeError(`unknown DRBG mechanism "${full[1]}"`);
    if (mechanism !== undefined && mechanism !== m) {
      throw new RangeError(`"${name}" is ${m}, not ${mechanism}`);
    }
    return parseAlgorithm(full[2] as string, m);
  }
  return parseAlgorithm(name, mechanism);
}

/** Builds an uninstantiated DRBG from a spec. */
export function createDrbgFromSpec(spec: DrbgSpec, reseedInterval?: number): Drbg {
  switch (spec.mechanism) {
    case 'CTR_DRBG':
      return new CtrDrbg({ cipher: spec.cipher, df: spec.df, reseedInterval });
    case 'HMAC_DRBG':
      return new HmacDrbg({ hash: spec.hash, reseedInterval });
    case 'Hash_DRBG':
      return new HashDrbg({ hash: spec.hash, reseedInterval });
  }
}

/**
 * Builds an uninstantiated DRBG from a name, e.g. `createDrbg('CTR_DRBG(AES-256, df)')`,
 * `createDrbg('SHA-512', { mechanism: 'HMAC_DRBG' })`, `createDrbg('AES-128 no df')`.
 * `createDrbg(d.name)` rebuilds the same kind of DRBG as `d`. Throws RangeError for a name it
 * cannot run.
 */
export function createDrbg(name: string, options: CreateDrbgOptions = {}): Drbg {
  return createDrbgFromSpec(parseDrbgName(name, options.mechanism), options.reseedInterval);
}
