import { hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { describe, expect, it } from 'vitest';
import { createSecureChannel, open, seal } from '../../src/client/secure-message.js';
import { type MessageKat, computeMessageKat } from './message-kat.js';

const file = JSON.parse(
  readFileSync(new URL('../vectors/secure-message-kat.json', import.meta.url), 'utf8'),
) as { version: number; vectors: MessageKat[] };
const buf = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));

describe('secure-message known-answer vectors (test/vectors/secure-message-kat.json)', () => {
  it('covers both directions', () => {
    expect(file.vectors.map((v) => v.direction)).toEqual(['i2r', 'r2i']);
  });

  describe.each(file.vectors)('$direction', (v) => {
    const receiverRole = v.direction === 'i2r' ? 'responder' : 'initiator';
    const senderRole = v.direction === 'i2r' ? 'initiator' : 'responder';
    const receiver = ml_dsa65.keygen(new Uint8Array(32).fill(3));

    it('recomputes every expected value from the inputs', () => {
      expect(computeMessageKat(v.direction, v.inputs)).toEqual(v.expected);
    });

    it('the key agrees with node:crypto HKDF', () => {
      const info = Buffer.concat([
        Buffer.from(`qkm/v2 msg ${v.direction}`),
        Buffer.from(v.inputs.session_id),
      ]);
      const salt = Buffer.concat([buf(v.inputs.sender_channel_id), buf(v.inputs.receiver_channel_id)]);
      const k = hkdfSync('sha256', buf(v.inputs.K), salt, info, 32);
      expect(Buffer.from(k).toString('hex')).toBe(v.expected.key);
    });

    it('the SDK opens the vector message, and seals the same bytes but for the (hedged) signature', () => {
      const rx = createSecureChannel({
        sessionId: v.inputs.session_id,
        key: buf(v.inputs.K),
        role: receiverRole,
        signingSecretKey: receiver.secretKey,
        peerPublicKey: buf(v.expected.sender_public_key),
        channelId: buf(v.inputs.receiver_channel_id),
        peerChannelId: buf(v.inputs.sender_channel_id),
      });
      const opened = open(rx, buf(v.expected.message), v.inputs.aad_utf8);
      expect(Buffer.from(opened.payload).toString()).toBe(v.inputs.plaintext_utf8);
      const tx = createSecureChannel({
        sessionId: v.inputs.session_id,
        key: buf(v.inputs.K),
        role: senderRole,
        signingSecretKey: ml_dsa65.keygen(buf(v.inputs.sender_seed)).secretKey,
        peerPublicKey: receiver.publicKey,
        channelId: buf(v.inputs.sender_channel_id),
        peerChannelId: buf(v.inputs.receiver_channel_id),
      });
      tx.sendCounter = BigInt(v.inputs.counter);
      const sealed = Buffer.from(seal(tx, v.inputs.plaintext_utf8, v.inputs.aad_utf8)).toString('hex');
      const sigHexLen = 3309 * 2;
      expect(sealed.slice(0, -sigHexLen)).toBe(v.expected.message.slice(0, -sigHexLen));
    });
  });
});
