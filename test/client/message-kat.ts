import { shake256 } from '@noble/hashes/sha3.js';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { createCipheriv, createHash } from 'node:crypto';
import { messageKey } from '../../src/client/secure-message.js';

/**
 * Known-answer vectors for secure messages, format version 2 (test/vectors/secure-message-kat.json).
 * Inputs are fixed byte strings (SHAKE256("qkm msg kat " ‖ label), recorded in full); outputs are
 * what this implementation computes. The signature is FIPS 204 deterministic ML-DSA-65
 * (rnd = 0^32) — for the vectors only; the SDK signs hedged.
 *
 * Regenerate (only when the message format changes):
 *   npx tsx test/client/message-kat.ts > test/vectors/secure-message-kat.json
 */

const enc = new TextEncoder();
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
export const fixed = (label: string, n: number) => shake256(enc.encode(`qkm msg kat ${label}`), { dkLen: n });

function fields(parts: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(
    parts.flatMap((p) => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(p.length);
      return [len, Buffer.from(p)];
    }),
  );
}

export interface MessageKat {
  direction: 'i2r' | 'r2i';
  inputs: {
    K: string;
    session_id: string;
    sender_seed: string;
    sender_channel_id: string;
    receiver_channel_id: string;
    counter: number;
    plaintext_utf8: string;
    aad_utf8: string;
  };
  expected: {
    sender_public_key: string;
    key: string;
    header: string;
    nonce: string;
    ciphertext_and_tag: string;
    signed_digest: string;
    signature_deterministic: string;
    message: string;
  };
}

export function computeMessageKat(direction: 'i2r' | 'r2i', i: MessageKat['inputs']): MessageKat['expected'] {
  const S = Buffer.from(i.sender_channel_id, 'hex');
  const R = Buffer.from(i.receiver_channel_id, 'hex');
  const sender = ml_dsa65.keygen(Buffer.from(i.sender_seed, 'hex'));
  const key = messageKey(Buffer.from(i.K, 'hex'), direction, i.session_id, S, R);
  const sid = enc.encode(i.session_id);
  const header = Buffer.concat([
    enc.encode('QKMS'),
    Uint8Array.of(2, direction === 'i2r' ? 1 : 2, sid.length),
    sid,
    S,
    R,
  ]);
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(BigInt(i.counter), 4);
  const aad = enc.encode(i.aad_utf8);
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
  c.setAAD(fields([header, aad]));
  const ct = Buffer.concat([c.update(enc.encode(i.plaintext_utf8)), c.final(), c.getAuthTag()]);
  const digest = createHash('sha3-256')
    .update(fields([enc.encode('qkm/v1 message'), header, ct, nonce, aad]))
    .digest();
  const sig = ml_dsa65.sign(digest, sender.secretKey, {
    context: enc.encode('qkm/v1 message'),
    extraEntropy: false,
  });
  return {
    sender_public_key: hex(sender.publicKey),
    key: hex(key),
    header: hex(header),
    nonce: hex(nonce),
    ciphertext_and_tag: hex(ct),
    signed_digest: hex(digest),
    signature_deterministic: hex(sig),
    message: hex(fields([header, nonce, aad, ct, sig])),
  };
}

export function messageKatInputs(direction: 'i2r' | 'r2i'): MessageKat['inputs'] {
  return {
    K: hex(fixed('K', 32)),
    session_id: hex(fixed('session id', 16)),
    sender_seed: hex(fixed(`${direction} sender seed`, 32)),
    sender_channel_id: hex(fixed(`${direction} sender channel`, 16)),
    receiver_channel_id: hex(fixed(`${direction} receiver channel`, 16)),
    counter: direction === 'i2r' ? 0 : 7,
    plaintext_utf8: direction === 'i2r' ? 'hello bob' : 'hi alice, seventh reply',
    aad_utf8: direction === 'i2r' ? 'agent=alice;op=chat' : '',
  };
}

export function generateMessageKatFile(): object {
  return {
    description:
      'qkm secure messages (format version 2) known-answer vectors. Hex. Key = HKDF-SHA-256(IKM = K, salt = sender channel id ‖ receiver channel id, info = "qkm/v2 msg " ‖ dir ‖ session id, 32); nonce = 0^4 ‖ u64be(counter); AES-256-GCM; signature ML-DSA-65 deterministic (FIPS 204, rnd = 0^32), ctx "qkm/v1 message", over SHA3-256 of the fields. sender_seed = ML-DSA-65 keygen seed. See README "Secure messages".',
    version: 2,
    vectors: (['i2r', 'r2i'] as const).map((direction) => {
      const inputs = messageKatInputs(direction);
      return { direction, inputs, expected: computeMessageKat(direction, inputs) };
    }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(generateMessageKatFile(), null, 2)}\n`);
}
