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
import { announceAgentKey, openSessionChannel } from '../../src/client/session-channel.js';

const alice = ml_dsa65.keygen(new Uint8Array(32).fill(7));
const bob = ml_dsa65.keygen(new Uint8Array(32).fill(8));
const K = new Uint8Array(randomBytes(32));

function pair(sessionId = 'a1b2c3d4e5f6a7b8a1b2c3d4e5f6a7b8'): { i: SecureChannel; r: SecureChannel } {
  const iId = new Uint8Array(randomBytes(16));
  const rId = new Uint8Array(randomBytes(16));
  return {
    i: createSecureChannel({
      sessionId,
      key: K,
      role: 'initiator',
      signingSecretKey: alice.secretKey,
      peerPublicKey: bob.publicKey,
      channelId: iId,
      peerChannelId: rId,
    }),
    r: createSecureChannel({
      sessionId,
      key: K,
      role: 'responder',
      signingSecretKey: bob.secretKey,
      peerPublicKey: alice.publicKey,
      channelId: rId,
      peerChannelId: iId,
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
  it('round-trips both directions with aad; nonces are 0x00000000 ‖ counter from 0 (SP 800-38D §8.2.1)', () => {
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
    expect(n1!).toEqual(new Uint8Array(12));
    expect(n2!.subarray(0, 4)).toEqual(new Uint8Array(4));
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
      channelId: r.peerChannelId,
      peerChannelId: r.channelId,
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
      s[0]![1] - 20, // header sender channel id
      s[1]![0] + 1, // nonce fixed field
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

describe('secure messages: re-created channels (issue #11 items 2, 3)', () => {
  it('two sender channels over the same K and session use different keys: counter 0 twice is no nonce reuse', () => {
    const a = pair();
    const b = pair(); // same K and session id, fresh channel ids: what a re-created channel gets
    const m1 = seal(a.i, 'same plaintext');
    const m2 = seal(b.i, 'same plaintext');
    const ctOf = (m: Uint8Array) => {
      const [s, e] = spans(m)[3]!;
      return Buffer.from(m.subarray(s, e)).toString('hex');
    };
    const nonceOf = (m: Uint8Array) => {
      const [s, e] = spans(m)[1]!;
      return Buffer.from(m.subarray(s, e)).toString('hex');
    };
    expect(nonceOf(m1)).toBe(nonceOf(m2)); // both counter 0 …
    expect(ctOf(m1)).not.toBe(ctOf(m2)); // … under different keys
    expect(a.i.sendKey).not.toEqual(b.i.sendKey);
    // And a message for one pair does not open on the other.
    expect(codeOf(() => open(b.r, m1))).toBe('MESSAGE_WRONG_CHANNEL');
  });

  it('seal, open, re-create the receiver, open again → rejected (session-channel flow)', () => {
    const session = { sessionId: 'a1b2c3d4e5f6a7b8a1b2c3d4e5f6a7b8', key: K };
    const iS = { ...session, role: 'initiator' as const };
    const rS = { ...session, role: 'responder' as const };
    const iKeys = { publicKey: alice.publicKey, secretKey: alice.secretKey };
    const rKeys = { publicKey: bob.publicKey, secretKey: bob.secretKey };
    const ich = openSessionChannel({
      session: iS,
      keys: iKeys,
      peerAnnouncement: announceAgentKey(rS, rKeys),
    });
    const rch = openSessionChannel({
      session: rS,
      keys: rKeys,
      peerAnnouncement: announceAgentKey(iS, iKeys),
    });
    const m = seal(ich, 'transfer 100');
    expect(Buffer.from(open(rch, m).payload).toString()).toBe('transfer 100');
    // The receiver restarts: a new channel end over the same session key and the same agent keys.
    const rch2 = openSessionChannel({
      session: rS,
      keys: rKeys,
      peerAnnouncement: announceAgentKey(iS, iKeys),
    });
    expect(rch2.channelId).not.toEqual(rch.channelId);
    expect(codeOf(() => open(rch2, m))).toBe('MESSAGE_WRONG_CHANNEL');
    // The sender learns the new end from its announcement and can talk to it.
    const ich2 = openSessionChannel({
      session: iS,
      keys: iKeys,
      peerAnnouncement: announceAgentKey(rS, rKeys),
    });
    expect(Buffer.from(open(rch2, seal(ich2, 'again')).payload).toString()).toBe('again');
    expect(ich2.sendKey).not.toEqual(ich.sendKey);
    // A second channel object for the same peer end gets a new id of its own: never the same key.
    const ich3 = openSessionChannel({
      session: iS,
      keys: iKeys,
      peerAnnouncement: announceAgentKey(rS, rKeys),
    });
    expect(ich3.channelId).not.toEqual(ich2.channelId);
    expect(ich3.sendKey).not.toEqual(ich2.sendKey);
  });
});
