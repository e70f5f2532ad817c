import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { describe, expect, it } from 'vitest';
import {
  type SecureChannel,
  SecureMessageError,
  createSecureChannel,
  open,
  seal,
} from '../../src/client/secure-message.js';

const alice = ml_dsa65.keygen(new Uint8Array(32).fill(7));
const bob = ml_dsa65.keygen(new Uint8Array(32).fill(8));
const K = new Uint8Array(randomBytes(32));

function pair(sessionId = 'a1b2c3d4e5f6a7b8a1b2c3d4e5f6a7b8'): { i: SecureChannel; r: SecureChannel } {
  return {
    i: createSecureChannel({
      sessionId,
      key: K,
      role: 'initiator',
      signingSecretKey: alice.secretKey,
      peerPublicKey: bob.publicKey,
    }),
    r: createSecureChannel({
      sessionId,
      key: K,
      role: 'responder',
      signingSecretKey: bob.secretKey,
      peerPublicKey: alice.publicKey,
    }),
  };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof SecureMessageError ? e.code : `unexpected ${String(e)}`;
  }
  return undefined;
}

/** Field boundaries of a sealed message: [header, nonce, aad, ciphertext, signature]. */
function spans(m: Uint8Array): Array<[number, number]> {
  const v = new DataView(m.buffer, m.byteOffset, m.byteLength);
  const out: Array<[number, number]> = [];
  let off = 0;
  while (off < m.length) {
    const len = v.getUint32(off);
    out.push([off + 4, off + 4 + len]);
    off += 4 + len;
  }
  return out;
}

describe('secure messages', () => {
  it('round-trips both directions with aad; nonces are prefix ‖ counter', () => {
    const { i, r } = pair();
    const m1 = seal(i, 'hello bob', 'agent=alice;op=chat');
    const m2 = seal(i, new Uint8Array([1, 2, 3]));
    expect(Buffer.from(open(r, m1, 'agent=alice;op=chat').payload).toString()).toBe('hello bob');
    expect(open(r, m2).payload).toEqual(new Uint8Array([1, 2, 3]));
    const back = seal(r, 'hi alice', 'x');
    expect(Buffer.from(open(i, back).payload).toString()).toBe('hi alice');
    const [n1, n2] = [m1, m2].map((m) => {
      const [s, e] = spans(m)[1]!;
      return m.subarray(s, e);
    });
    expect(n1!.subarray(0, 4)).toEqual(n2!.subarray(0, 4));
    expect(new DataView(n2!.buffer, n2!.byteOffset).getBigUint64(4)).toBe(1n);
  });

  it('rejects a replay, a reflected message, another session and an unexpected aad', () => {
    const { i, r } = pair();
    const m = seal(i, 'once');
    open(r, m);
    expect(codeOf(() => open(r, m))).toBe('MESSAGE_REPLAYED');
    expect(codeOf(() => open(i, m))).toBe('MESSAGE_WRONG_SESSION'); // own direction reflected back
    const other = pair('ffffffffffffffffffffffffffffffff');
    expect(codeOf(() => open(other.r, seal(i, 'x')))).toBe('MESSAGE_WRONG_SESSION');
    expect(codeOf(() => open(r, seal(i, 'x', 'a'), 'b'))).toBe('MESSAGE_AAD_MISMATCH');
  });

  it('rejects a message signed by someone else even with the right key', () => {
    const { r } = pair();
    const mallory = ml_dsa65.keygen(new Uint8Array(32).fill(9));
    const forger = createSecureChannel({
      sessionId: r.sessionId,
      key: K,
      role: 'initiator',
      signingSecretKey: mallory.secretKey,
      peerPublicKey: bob.publicKey,
    });
    expect(codeOf(() => open(r, seal(forger, 'evil')))).toBe('MESSAGE_BAD_SIGNATURE');
  });

  it('tampering one byte of any field (header, nonce, aad, ciphertext, tag, signature, framing) is rejected', () => {
    const { i, r } = pair();
    const m = seal(i, 'payload bytes', 'metadata');
    const s = spans(m);
    const positions = [
      0, // framing (length of header)
      s[0]![0], // header magic
      s[0]![0] + 5, // header direction
      s[0]![1] - 1, // header session id
      s[1]![0] + 1, // nonce prefix
      s[1]![1] - 1, // nonce counter
      s[2]![0], // aad
      s[3]![0], // ciphertext
      s[3]![1] - 1, // GCM tag
      s[4]![0] + 100, // signature
      m.length - 1, // signature last byte
    ];
    for (const pos of positions) {
      const t = m.slice();
      t[pos]! ^= 0x01;
      expect(
        codeOf(() => open(r, t)),
        `byte ${pos}`,
      ).toBeDefined();
    }
    expect(codeOf(() => open(r, m.subarray(0, m.length - 1)))).toBe('MESSAGE_MALFORMED');
    expect(codeOf(() => open(r, new Uint8Array([...m, 0])))).toBe('MESSAGE_MALFORMED');
    // The original still opens: no rejected attempt was recorded as seen.
    expect(Buffer.from(open(r, m).payload).toString()).toBe('payload bytes');
  });

  it('property: no random single-byte mutation of a sealed message is accepted', () => {
    const { i, r } = pair();
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 256 }),
        fc.uint8Array({ maxLength: 32 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        (payload, aad, at, xor, outsideSignature) => {
          const m = seal(i, payload, aad);
          const sigStart = spans(m)[4]![0];
          // Half the mutations land before the signature, where the interesting fields are.
          const pos = outsideSignature ? at % sigStart : at % m.length;
          const t = m.slice();
          t[pos]! ^= xor;
          expect(codeOf(() => open(r, t))).toBeDefined();
          expect(open(r, m).payload).toEqual(payload);
        },
      ),
      { numRuns: 300 },
    );
  }, 20_000);
});
