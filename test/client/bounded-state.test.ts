import { randomBytes } from 'node:crypto';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { describe, expect, it } from 'vitest';
import { SecureMessageError, createSecureChannel, open, seal } from '../../src/client/secure-message.js';
import {
  MAX_REMEMBERED_SESSIONS,
  announceAgentKey,
  openSessionChannel,
  rememberedChannelIds,
} from '../../src/client/session-channel.js';

/**
 * The SDK's per-process state for a long-lived agent (#16): the replay set of a channel, and the
 * channel ids remembered per agent key. Each is driven past its bound; what is forgotten must fail
 * closed (a replay stays refused, a stale channel id does not open), never reuse a key.
 */

const alice = ml_dsa65.keygen(new Uint8Array(32).fill(7));
const bob = ml_dsa65.keygen(new Uint8Array(32).fill(8));

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof SecureMessageError ? e.code : `unexpected ${String(e)}`;
  }
  return undefined;
}

describe('secure channel replay set', () => {
  it('holds at most maxReceived nonces: beyond it the channel refuses (CHANNEL_EXHAUSTED), replays stay refused', () => {
    const key = new Uint8Array(randomBytes(32));
    const ids = [new Uint8Array(randomBytes(16)), new Uint8Array(randomBytes(16))] as const;
    const common = { sessionId: 'a1b2c3d4e5f6a7b8a1b2c3d4e5f6a7b8', key };
    const sender = createSecureChannel({
      ...common,
      role: 'initiator',
      signingSecretKey: alice.secretKey,
      peerPublicKey: bob.publicKey,
      channelId: ids[0],
      peerChannelId: ids[1],
    });
    const receiver = createSecureChannel({
      ...common,
      role: 'responder',
      signingSecretKey: bob.secretKey,
      peerPublicKey: alice.publicKey,
      channelId: ids[1],
      peerChannelId: ids[0],
      maxReceived: 20,
    });
    const sent = Array.from({ length: 30 }, (_, i) => seal(sender, `m${i}`));
    for (const m of sent.slice(0, 20)) open(receiver, m);
    expect(receiver.seen.size).toBe(20);
    for (const m of sent.slice(20)) expect(codeOf(() => open(receiver, m))).toBe('CHANNEL_EXHAUSTED');
    expect(codeOf(() => open(receiver, sent[3]!))).toBe('MESSAGE_REPLAYED');
    expect(receiver.seen.size).toBe(20);
  });
});

describe('channel ids remembered per agent key', () => {
  it(`remembers at most ${MAX_REMEMBERED_SESSIONS} sessions; a forgotten one gets a fresh id and fails closed`, () => {
    const keys = { publicKey: alice.publicKey, secretKey: alice.secretKey };
    const peerKeys = { publicKey: bob.publicKey, secretKey: bob.secretKey };
    const key = new Uint8Array(randomBytes(32));
    const session = (i: number) => ({
      sessionId: i.toString(16).padStart(32, '0'),
      key,
      role: 'initiator' as const,
    });
    const first = announceAgentKey(session(0), keys);
    // The peer opened its end against the announcement of session 0 …
    const peer = openSessionChannel({
      session: { ...session(0), role: 'responder' },
      keys: peerKeys,
      peerAnnouncement: first,
    });
    for (let i = 1; i <= MAX_REMEMBERED_SESSIONS + 500; i++) announceAgentKey(session(i), keys);
    expect(rememberedChannelIds(keys)).toBe(MAX_REMEMBERED_SESSIONS);
    // … while this end forgot session 0: it opens with a fresh id, so what the peer seals to the
    // announced one does not open here.
    const mine = openSessionChannel({
      session: session(0),
      keys,
      peerAnnouncement: announceAgentKey({ ...session(0), role: 'responder' }, peerKeys),
    });
    expect(Buffer.from(mine.channelId).toString('base64url')).not.toBe(
      Buffer.from(peer.peerChannelId).toString('base64url'),
    );
    expect(codeOf(() => open(mine, seal(peer, 'hello')))).toBe('MESSAGE_WRONG_CHANNEL');
    expect(rememberedChannelIds(keys)).toBe(MAX_REMEMBERED_SESSIONS);
  });
});
