import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import type { Encapsulation, KeyPair, PqcBackend, PqcBackendName } from './interface.js';
import { liboqsBackend } from './liboqs.js';
import { nobleBackend } from './noble.js';

export type { Encapsulation, KeyPair, PqcBackend, PqcBackendName } from './interface.js';
export { PqcUnsupported } from './interface.js';

/**
 * The process's PQC backend (`pqc.backend` in config, default `liboqs-wasm`) and the operations
 * qkm calls, each routed to the backend that can do it as qkm needs it:
 * - ML-DSA-65 sign / verify (empty FIPS 204 context; see ./domain.ts) and ML-KEM-768 decapsulate,
 *   and encapsulate with library randomness: the configured backend.
 * - Key generation from a seed (identity keys and prekeys come from quantum entropy) and
 *   encapsulation with caller randomness `m` (QRNG postures): noble whenever the configured
 *   backend cannot take the seed / `m` (liboqs-js 0.15.1 cannot). Never the OS generator in
 *   their place: the posture promised that randomness.
 * - ML-DSA with a non-empty context (verifying signatures made before the domain-tag change) and
 *   deterministic signing (known-answer vectors only): noble.
 *
 * One backend per process: the appliance selects it at start-up (`usePqcBackend`), before any
 * key is loaded; both nodes of an in-process test share it. Until then the active backend is
 * noble, which is complete and synchronous, so importing a module never needs WebAssembly.
 */

export const PQC_BACKEND_NAMES = ['liboqs-wasm', 'noble'] as const satisfies readonly PqcBackendName[];
export const DEFAULT_PQC_BACKEND: PqcBackendName = 'liboqs-wasm';

const noble = nobleBackend();
let active: PqcBackend = noble;
const loaded = new Map<PqcBackendName, Promise<PqcBackend>>([['noble', Promise.resolve(noble)]]);

/** Loads (once per process) the named backend without making it active. */
export function loadPqcBackend(name: PqcBackendName): Promise<PqcBackend> {
  let p = loaded.get(name);
  if (!p) {
    p = liboqsBackend();
    // A failed load is not cached: the next start-up tries again.
    p.catch(() => loaded.delete(name));
    loaded.set(name, p);
  }
  return p;
}

/** Loads the named backend and makes it the process's active one. */
export async function usePqcBackend(name: PqcBackendName): Promise<PqcBackend> {
  active = await loadPqcBackend(name);
  return active;
}

/** The active backend (noble until `usePqcBackend`). */
export function pqcBackend(): PqcBackend {
  return active;
}

/** The noble backend: what `pqcInfo` names "noble" for the steps the active one cannot do. */
export function nobleFallback(): PqcBackend {
  return noble;
}

/** Which library does each step, for `/v1/status`, metrics and session provenance. */
export interface PqcInfo {
  backend: PqcBackendName;
  /** ML-DSA-65 sign and verify (qkm's domain-tagged form). */
  signature: string;
  /** ML-KEM-768 decapsulation. */
  kemDecaps: string;
  /** ML-KEM-768 encapsulation with caller randomness (every handshake: m from the posture's source). */
  kemEncaps: string;
  /** Key generation from seeds (identity, prekeys). */
  keygen: string;
}

export function pqcInfo(b: PqcBackend = active): PqcInfo {
  return {
    backend: b.name,
    signature: b.name,
    kemDecaps: b.name,
    kemEncaps: b.mlKem768.derandomisedEncaps ? b.name : 'noble (caller randomness)',
    keygen: b.mlDsa65.seededKeygen && b.mlKem768.seededKeygen ? b.name : 'noble (from seed)',
  };
}

const EMPTY = new Uint8Array(0);

/** FIPS 204 ML-DSA.KeyGen_internal(ξ), ξ 32 bytes. */
export function mlDsa65KeygenFromSeed(seed: Uint8Array): KeyPair {
  return (active.mlDsa65.seededKeygen ? active : noble).mlDsa65.keygenFromSeed(seed);
}

/** FIPS 203 ML-KEM.KeyGen_internal(d, z), d ‖ z 64 bytes. */
export function mlKem768KeygenFromSeed(seed: Uint8Array): KeyPair {
  return (active.mlKem768.seededKeygen ? active : noble).mlKem768.keygenFromSeed(seed);
}

/**
 * ML-KEM-768 encapsulation. With `m` (32 bytes of the caller's randomness) deterministic, on a
 * backend that takes it; without, the backend's own (OS) randomness — only for checks that
 * throw the result away (the FIPS 203 modulus check of a peer's key).
 */
export function mlKem768Encapsulate(publicKey: Uint8Array, m?: Uint8Array): Encapsulation {
  const b = m === undefined || active.mlKem768.derandomisedEncaps ? active : noble;
  return b.mlKem768.encapsulate(publicKey, m);
}

export function mlKem768Decapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return active.mlKem768.decapsulate(cipherText, secretKey);
}

/** ML-DSA-65, empty context, hedged (FIPS 204 §3.4). */
export function mlDsa65Sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return active.mlDsa65.sign(message, secretKey, EMPTY);
}

/** ML-DSA-65, empty context. False for any malformed input. */
export function mlDsa65Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  return active.mlDsa65.verify(signature, message, publicKey, EMPTY);
}

/** ML-DSA-65 with rnd = 0³² (FIPS 204 deterministic variant), empty context: vectors only. */
export function mlDsa65SignDeterministic(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return ml_dsa65.sign(message, secretKey, { extraEntropy: false });
}

/** ML-DSA-65 under a non-empty FIPS 204 context (signatures made before the domain tags): noble. */
export function mlDsa65VerifyWithContext(
  signature: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
  context: Uint8Array,
): boolean {
  const b = active.mlDsa65.signsWithContext ? active : noble;
  return b.mlDsa65.verify(signature, message, publicKey, context);
}

/** FIPS 204 Table 2 / FIPS 203 Table 3 sizes, bytes. */
export const ML_DSA_65_LENGTHS = { publicKey: 1952, secretKey: 4032, signature: 3309, seed: 32 } as const;
export const ML_KEM_768_LENGTHS = {
  publicKey: 1184,
  secretKey: 2400,
  cipherText: 1088,
  sharedSecret: 32,
  seed: 64,
  encapsRandomness: 32,
} as const;
