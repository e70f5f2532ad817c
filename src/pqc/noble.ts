import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import type { PqcBackend } from './interface.js';

/** @noble/post-quantum: complete (contexts, seeded keygen, derandomised encaps); slower. */
export function nobleBackend(): PqcBackend {
  return {
    name: 'noble',
    mlDsa65: {
      signsWithContext: true,
      seededKeygen: true,
      keygenFromSeed: (seed) => ml_dsa65.keygen(seed),
      sign: (message, secretKey, context) => ml_dsa65.sign(message, secretKey, { context }),
      verify: (signature, message, publicKey, context) => {
        try {
          return ml_dsa65.verify(signature, message, publicKey, { context }) === true;
        } catch {
          return false;
        }
      },
    },
    mlKem768: {
      derandomisedEncaps: true,
      seededKeygen: true,
      keygenFromSeed: (seed) => ml_kem768.keygen(seed),
      encapsulate: (publicKey, m) => ml_kem768.encapsulate(publicKey, m),
      decapsulate: (cipherText, secretKey) => ml_kem768.decapsulate(cipherText, secretKey),
    },
    destroy: () => undefined,
  };
}
