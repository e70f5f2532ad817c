/**
 * Deterministic random bit generators after NIST SP 800-90A Rev.1: types only.
 * Implementations: `CtrDrbg` (ctr-drbg.ts), `HmacDrbg` (hmac-drbg.ts), `HashDrbg` (hash-drbg.ts).
 *
 * The DRBG is a pure mechanism: it does not fetch entropy itself. Callers (the EntropyService,
 * the CAVP runner) pass entropy input in, which keeps it deterministic and testable against
 * the CAVP known answers.
 */
export interface Drbg {
  /** e.g. `CTR_DRBG(AES-256, df)`, `HMAC_DRBG(SHA-256)`. */
  readonly name: string;
  /** Security strength in bits (SP 800-90A Table 2/3). */
  readonly securityStrength: number;
  /** Minimum and maximum entropy-input lengths in bytes accepted by instantiate/reseed. */
  readonly minEntropyBytes: number;
  readonly maxEntropyBytes: number;
  /** Largest `generate` request in bytes (max_number_of_bits_per_request / 8). */
  readonly maxRequestBytes: number;
  /** Number of generate calls allowed between reseeds (reseed_interval). */
  readonly reseedInterval: number;
  /** SP 800-90A reseed_counter: 1 after instantiate/reseed, +1 per generate. 0 when not instantiated. */
  readonly reseedCounter: number;
  readonly instantiated: boolean;

  /** §9.1. Throws RangeError for lengths outside the mechanism's limits. */
  instantiate(entropyInput: Uint8Array, nonce: Uint8Array, personalization?: Uint8Array): void;
  /** §9.2. */
  reseed(entropyInput: Uint8Array, additionalInput?: Uint8Array): void;
  /**
   * §9.3 without prediction resistance. Throws `ReseedRequiredError` when reseed_counter has
   * passed the reseed interval (the caller must reseed and retry), RangeError for a request
   * larger than `maxRequestBytes`, Error if not instantiated.
   */
  generate(nBytes: number, additionalInput?: Uint8Array): Uint8Array;
  /**
   * §9.3.1 with prediction resistance: reseed with `entropyInput` and `additionalInput`, then
   * generate with no additional input.
   */
  generateWithReseed(nBytes: number, entropyInput: Uint8Array, additionalInput?: Uint8Array): Uint8Array;
  /** §9.4: zeroise the internal state. */
  uninstantiate(): void;
}

export class ReseedRequiredError extends Error {
  constructor(name: string) {
    super(`${name}: reseed required (reseed interval reached)`);
    this.name = 'ReseedRequiredError';
  }
}
