import { createMLDSA65, createMLKEM768 } from '@oqs/liboqs-js';
import { type PqcBackend, PqcUnsupported } from './interface.js';

const unsupported = (what: string): never => {
  throw new PqcUnsupported(`liboqs-js 0.15.1 does not expose ${what}; use the noble backend for it`);
};

/**
 * @oqs/liboqs-js (WebAssembly liboqs). Fast, but only empty-context ML-DSA and OS-random
 * keygen/encaps (see interface.ts). Its wrapper frees its WASM buffers after every call;
 * `destroy` frees the algorithm instances.
 */
export async function liboqsBackend(): Promise<PqcBackend> {
  const dsa = await createMLDSA65();
  const kem = await createMLKEM768();
  let destroyed = false;
  return {
    name: 'liboqs-wasm',
    mlDsa65: {
      signsWithContext: false,
      seededKeygen: false,
      keygenFromSeed: () => unsupported('seeded ML-DSA key generation'),
      sign: (message, secretKey, context) => {
        if (context.length > 0) unsupported('ML-DSA context strings');
        return dsa.sign(message, secretKey);
      },
      verify: (signature, message, publicKey, context) => {
        if (context.length > 0) return unsupported('ML-DSA context strings');
        try {
          return dsa.verify(message, signature, publicKey) === true;
        } catch {
          return false;
        }
      },
    },
    mlKem768: {
      derandomisedEncaps: false,
      seededKeygen: false,
      keygenFromSeed: () => unsupported('seeded ML-KEM key generation'),
      encapsulate: (publicKey, m) => {
        if (m !== undefined) unsupported('ML-KEM encapsulation with caller randomness');
        const { ciphertext, sharedSecret } = kem.encapsulate(publicKey);
        return { cipherText: ciphertext, sharedSecret };
      },
      decapsulate: (cipherText, secretKey) => kem.decapsulate(cipherText, secretKey),
    },
    destroy: () => {
      if (destroyed) return;
      destroyed = true;
      dsa.destroy();
      kem.destroy();
    },
  };
}
