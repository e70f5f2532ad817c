/**
 * The seam between qkm and a post-quantum library (issue #13). Types only; the contract is in
 * the comments. Two implementations: `noble` (@noble/post-quantum, pure TypeScript) and
 * `liboqs-wasm` (@oqs/liboqs-js, Open Quantum Safe's WebAssembly build of liboqs).
 *
 * What liboqs-js 0.15.1 does NOT expose (checked against the exports of its ML-DSA-65 and
 * ML-KEM-768 WebAssembly modules: only OQS_SIG_{new,keypair,sign,verify,free} and
 * OQS_KEM_{new,keypair,encaps,decaps,free}):
 * - ML-DSA context strings (FIPS 204 `ctx`): OQS_SIG_sign signs with the empty context only.
 *   qkm therefore signs with the empty context over a domain-tagged message (src/pqc/domain.ts,
 *   handshake v3 / bundle v2); signatures made before that, under a context string, are checked
 *   on noble. `signsWithContext` says which backend can take a context.
 * - Derandomised key generation (keygen from a seed) and encapsulation with caller-supplied
 *   randomness. qkm derives identity keys from quantum entropy and, in QRNG postures, takes the
 *   encapsulation randomness from the quantum source; those steps always run on noble, never
 *   silently on the OS generator (src/pqc/index.ts routes them). `seededKeygen` /
 *   `derandomisedEncaps` say which.
 */

/** Which implementation. `pqc.backend` in config. */
export type PqcBackendName = 'liboqs-wasm' | 'noble';

export interface KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export interface Encapsulation {
  cipherText: Uint8Array;
  sharedSecret: Uint8Array;
}

/** ML-DSA-65 (FIPS 204, pure mode, hedged signing). */
export interface MlDsa65 {
  /** True when `sign`/`verify` accept a non-empty context; false: any non-empty context throws. */
  readonly signsWithContext: boolean;
  /** True when `keygenFromSeed` is implemented by this library (else it throws). */
  readonly seededKeygen: boolean;
  /** FIPS 204 ML-DSA.KeyGen_internal(ξ) with a 32-byte seed ξ. Deterministic. */
  keygenFromSeed(seed: Uint8Array): KeyPair;
  /** A signature (3309 bytes) of `message` under `context` (0–255 bytes). Throws on a malformed key. */
  sign(message: Uint8Array, secretKey: Uint8Array, context: Uint8Array): Uint8Array;
  /** True iff `signature` is valid. Never throws: malformed inputs of any length give false. */
  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array, context: Uint8Array): boolean;
}

/** ML-KEM-768 (FIPS 203). */
export interface MlKem768 {
  /** True when `encapsulate` accepts caller randomness `m` (else it throws when `m` is given). */
  readonly derandomisedEncaps: boolean;
  readonly seededKeygen: boolean;
  /** FIPS 203 ML-KEM.KeyGen_internal(d, z) with a 64-byte seed d ‖ z. Deterministic. */
  keygenFromSeed(seed: Uint8Array): KeyPair;
  /**
   * Encapsulate to `publicKey`. With `m` (32 bytes) the result is deterministic
   * (ML-KEM.Encaps_internal); without it the library draws its own randomness from the OS.
   * Throws on a malformed public key (wrong length or failing the FIPS 203 modulus check).
   */
  encapsulate(publicKey: Uint8Array, m?: Uint8Array): Encapsulation;
  /**
   * Decapsulate. Implicit rejection: a tampered ciphertext of the right length yields a
   * pseudorandom secret, not an error. Throws on wrong-length inputs.
   */
  decapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array;
}

export interface PqcBackend {
  readonly name: PqcBackendName;
  readonly mlDsa65: MlDsa65;
  readonly mlKem768: MlKem768;
  /** Frees native (WebAssembly) state and wipes what it holds. Idempotent. */
  destroy(): void;
}

/** The backend cannot do this operation (see the capability flags); the caller uses noble. */
export class PqcUnsupported extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PqcUnsupported';
  }
}
