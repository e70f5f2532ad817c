/**
 * Shared front half of the SP 800-90A DRBGs: argument checks, the reseed counter, the
 * request-size and reseed-interval limits, and the prediction-resistance path. Each mechanism
 * only implements the `_`-prefixed algorithm steps (validate in the public method, implement
 * in the private one).
 */
import { type Drbg, ReseedRequiredError } from './interface.js';

/** Thrown by `generate`/`reseed` on a DRBG that was never instantiated or was uninstantiated. */
export class DrbgNotInstantiatedError extends Error {
  constructor(name: string) {
    super(`${name}: not instantiated`);
    this.name = 'DrbgNotInstantiatedError';
  }
}

/** 2^35 bits, the SP 800-90A Table 2/3 bound on entropy, personalization and additional input. */
export const MAX_INPUT_BYTES = 2 ** 32;

const EMPTY = new Uint8Array(0);

/** Limits a mechanism declares; see SP 800-90A §10.1 Table 2 and §10.2.1 Table 3. */
export interface DrbgLimits {
  readonly securityStrength: number;
  readonly minEntropyBytes: number;
  readonly maxEntropyBytes: number;
  /** Upper bound on personalization string and additional input, in bytes. */
  readonly maxInputBytes: number;
  readonly maxRequestBytes: number;
  /** The mechanism's largest allowed reseed_interval. */
  readonly maxReseedInterval: number;
}

/**
 * Checks that `value` is a byte array whose length lies in [min, max]. TypeError for a wrong
 * type, RangeError for a wrong length; the message names the field and the lengths only.
 */
export function checkBytes(
  owner: string,
  field: string,
  value: unknown,
  min: number,
  max: number,
): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`${owner}: ${field} must be a Uint8Array`);
  }
  if (value.length < min || value.length > max) {
    const want = min === max ? `${min}` : `${min}..${max}`;
    throw new RangeError(`${owner}: ${field} is ${value.length} bytes, expected ${want}`);
  }
  return value;
}

/** Resolves the configured reseed interval against the mechanism's maximum. */
export function resolveReseedInterval(owner: string, configured: number | undefined, max: number): number {
  if (configured === undefined) return max;
  if (!Number.isSafeInteger(configured) || configured < 1 || configured > max) {
    throw new RangeError(`${owner}: reseedInterval must be an integer in 1..${max}`);
  }
  return configured;
}

export abstract class DrbgBase implements Drbg {
  abstract readonly name: string;
  readonly securityStrength: number;
  readonly minEntropyBytes: number;
  readonly maxEntropyBytes: number;
  readonly maxRequestBytes: number;
  readonly reseedInterval: number;
  protected readonly maxInputBytes: number;
  #reseedCounter = 0;

  protected constructor(limits: DrbgLimits, reseedInterval: number) {
    this.securityStrength = limits.securityStrength;
    this.minEntropyBytes = limits.minEntropyBytes;
    this.maxEntropyBytes = limits.maxEntropyBytes;
    this.maxRequestBytes = limits.maxRequestBytes;
    this.maxInputBytes = limits.maxInputBytes;
    this.reseedInterval = reseedInterval;
  }

  get reseedCounter(): number {
    return this.#reseedCounter;
  }

  get instantiated(): boolean {
    return this.#reseedCounter > 0;
  }

  instantiate(entropyInput: Uint8Array, nonce: Uint8Array, personalization?: Uint8Array): void {
    const entropy = this.checkEntropy(entropyInput);
    const n = this.checkNonce(nonce);
    const pers = checkBytes(this.name, 'personalization', personalization ?? EMPTY, 0, this.maxInputBytes);
    // Instantiating over a live state replaces it; wipe the old one first.
    if (this.instantiated) this.uninstantiate();
    this._instantiate(entropy, n, pers);
    this.#reseedCounter = 1;
  }

  reseed(entropyInput: Uint8Array, additionalInput?: Uint8Array): void {
    this.requireInstantiated();
    const entropy = this.checkEntropy(entropyInput);
    const addin = this.checkAdditional(additionalInput);
    this._reseed(entropy, addin);
    this.#reseedCounter = 1;
  }

  generate(nBytes: number, additionalInput?: Uint8Array): Uint8Array {
    this.requireInstantiated();
    this.checkRequest(nBytes);
    const addin = this.checkAdditional(additionalInput);
    // §9.3.1 step 7 / §10.x.x.x step 1: reseed_counter > reseed_interval → reseed required.
    if (this.#reseedCounter > this.reseedInterval) throw new ReseedRequiredError(this.name);
    const out = this._generate(nBytes, addin);
    this.#reseedCounter += 1;
    return out;
  }

  generateWithReseed(nBytes: number, entropyInput: Uint8Array, additionalInput?: Uint8Array): Uint8Array {
    this.requireInstantiated();
    this.checkRequest(nBytes);
    // §9.3.1 step 7.1-7.4: reseed with the additional input, then generate with none.
    this.reseed(entropyInput, additionalInput);
    return this.generate(nBytes);
  }

  uninstantiate(): void {
    this._zeroise();
    this.#reseedCounter = 0;
  }

  /** Nonce check; CTR_DRBG without df overrides it (the nonce is not used there). */
  protected checkNonce(nonce: unknown): Uint8Array {
    return checkBytes(this.name, 'nonce', nonce, 0, this.maxInputBytes);
  }

  protected checkEntropy(entropy: unknown): Uint8Array {
    return checkBytes(this.name, 'entropyInput', entropy, this.minEntropyBytes, this.maxEntropyBytes);
  }

  protected checkAdditional(addin: unknown): Uint8Array {
    return checkBytes(this.name, 'additionalInput', addin ?? EMPTY, 0, this.maxInputBytes);
  }

  private checkRequest(nBytes: number): void {
    if (!Number.isSafeInteger(nBytes) || nBytes < 0) {
      throw new RangeError(`${this.name}: request size must be a non-negative integer`);
    }
    if (nBytes > this.maxRequestBytes) {
      throw new RangeError(`${this.name}: request of ${nBytes} bytes exceeds ${this.maxRequestBytes}`);
    }
  }

  private requireInstantiated(): void {
    if (!this.instantiated) throw new DrbgNotInstantiatedError(this.name);
  }

  /** §10.x instantiate algorithm on checked inputs. */
  protected abstract _instantiate(entropy: Uint8Array, nonce: Uint8Array, personalization: Uint8Array): void;
  /** §10.x reseed algorithm on checked inputs. */
  protected abstract _reseed(entropy: Uint8Array, additionalInput: Uint8Array): void;
  /** §10.x generate algorithm; counter and limits are already handled. */
  protected abstract _generate(nBytes: number, additionalInput: Uint8Array): Uint8Array;
  /** Overwrite the working state with zeros. */
  protected abstract _zeroise(): void;
}
