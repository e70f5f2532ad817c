import { createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Provenance } from '../../src/core/provenance.js';
import { isQkmError } from '../../src/core/errors.js';
import {
  type TokenRecord,
  TokenIssuer,
  acceptIssuedToken,
  agentKeyHash,
  resumeProof,
  resumedKey,
} from '../../src/governance/resumption.js';
import { encodeFields, str, u64 } from '../../src/session/encoding.js';
import type { StorageBackend } from '../../src/store/interface.js';
import { createMemoryBackend } from '../../src/store/memory.js';

const PROVENANCE: Provenance = {
  seedOrigin: 'quantum',
  sources: [],
  entropyCredited: 256,
  drbg: {
    name: 'CTR_DRBG(AES-256, df)',
    instance: 'test',
    reseedCounter: 1,
    seededAt: '2026-01-01T00:00:00.000Z',
    predictionResistance: false,
  },
  degraded: false,
  at: '2026-01-01T00:00:00.000Z',
};

const ALICE = agentKeyHash(new Uint8Array(32).fill(1), 'alice');
const MALLORY = agentKeyHash(new Uint8Array(32).fill(2), 'mallory');
const BOB = 'bob@example.com:calendar';

function issuer(store: StorageBackend, clock: { t: number }, exclusive = false) {
  return new TokenIssuer({
    exclusive,
    tokens: store.records<TokenRecord>('access-tokens'),
    nonces: store.records<{ at: string }>('access-token-nonces'),
    keys: store.keys,
    salt: async (n: number) => ({ data: new Uint8Array(randomBytes(n)), provenance: PROVENANCE }),
    now: () => clock.t,
  });
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isQkmError(err) ? err.code : `not a QkmError: ${String(err)}`;
  }
}

async function setup(maxUses = 3, ttlSeconds = 3600, exclusive = false) {
  const store = createMemoryBackend();
  const clock = { t: Date.UTC(2026, 0, 1) };
  const t = issuer(store, clock, exclusive);
  const K = new Uint8Array(randomBytes(32));
  const T = new Uint8Array(randomBytes(32));
  const issued = await t.issue({
    sessionKey: K,
    transcriptHash: T,
    initiator: ALICE,
    responder: BOB,
    maxUses,
    ttlSeconds,
    provenance: PROVENANCE,
  });
  const mine = acceptIssuedToken(K, T, issued.id, issued.sealed);
  const request = (initiator = ALICE, rs = mine.rs) => {
    const nonce = new Uint8Array(randomBytes(32));
    return { id: issued.id, initiator, nonce, proof: resumeProof(rs, issued.id, initiator, nonce) };
  };
  return { store, clock, t, K, T, issued, mine, request };
}

describe('access-control tokens and resumed sessions', () => {
  it('the initiator opens the token under the session and derives the same K′ as the responder', async () => {
    const { issued, mine, t, request } = await setup();
    expect(mine.body).toEqual(issued.body);
    expect(mine.body).toMatchObject({ initiator: ALICE, responder: BOB, maxUses: 3 });
    expect(Date.parse(mine.body.expires) - Date.parse(mine.body.issued)).toBe(3600_000);
    const req = request();
    const r = await t.resume(req);
    expect(r).toMatchObject({ use: 1, remaining: 2 });
    const ours = resumedKey(mine.rs, {
      id: issued.id,
      initiator: ALICE,
      responder: BOB,
      nonce: req.nonce,
      salt: r.salt,
      use: 1,
    });
    expect(Buffer.from(ours.key).equals(Buffer.from(r.key))).toBe(true);
    expect(Buffer.from(ours.confirm).equals(Buffer.from(r.confirm))).toBe(true);
    // A second resumption has a fresh salt, so a different key.
    const r2 = await t.resume(request());
    expect(Buffer.from(r2.key).equals(Buffer.from(r.key))).toBe(false);
  });

  it('K′ is HKDF-SHA256(RS, quantum salt, SHA-256(transcript)) — recomputed with node:crypto directly', async () => {
    const { K, T, issued, t, request } = await setup();
    const req = request();
    const r = await t.resume(req);
    const rs = hkdfSync('sha256', K, T, Buffer.from('qkm/v2 resumption secret'), 32);
    const transcript = encodeFields([
      str('qkm/v2 resume'),
      str(issued.id),
      str(ALICE),
      str(BOB),
      req.nonce,
      r.salt,
      u64(1),
    ]);
    const info = createHash('sha256').update(transcript).digest();
    const key = Buffer.from(hkdfSync('sha256', Buffer.from(rs), r.salt, info, 32));
    expect(key.equals(Buffer.from(r.key))).toBe(true);
    const confirm = createHmac('sha256', key).update('qkm/v2 resume confirm').digest();
    expect(confirm.equals(Buffer.from(r.confirm))).toBe(true);
  });

  it('a token sealed under another session does not open', async () => {
    const { issued, T } = await setup();
    expect(() => acceptIssuedToken(new Uint8Array(32), T, issued.id, issued.sealed)).toThrow(
      expect.objectContaining({ code: 'TOKEN_INVALID' }),
    );
    expect(() => acceptIssuedToken(new Uint8Array(32), T, issued.id, 'AAAA')).toThrow(
      expect.objectContaining({ code: 'TOKEN_INVALID' }),
    );
  });

  it('refuses unknown, stolen, forged and replayed requests with distinct codes, consuming nothing', async () => {
    const { t, issued, request, mine } = await setup();
    expect(await code(t.resume({ ...request(), id: '00000000-0000-4000-8000-000000000000' }))).toBe(
      'TOKEN_UNKNOWN',
    );
    // Mallory holds the token and even RS, but the token is bound to Alice's agent key.
    expect(await code(t.resume(request(MALLORY, mine.rs)))).toBe('TOKEN_STOLEN');
    // Someone claiming to be Alice without RS cannot produce the proof.
    expect(await code(t.resume(request(ALICE, new Uint8Array(32))))).toBe('TOKEN_INVALID');
    const req = request();
    await t.resume(req);
    expect(await code(t.resume(req))).toBe('TOKEN_REPLAYED');
    expect((await t.record(issued.id))?.used).toBe(1);
    expect(await code(t.resume({ ...request(), nonce: new Uint8Array(8) }))).toBe('INVALID_PARAMETER');
  });

  it('over quota: TOKEN_EXHAUSTED, and the last use destroys the resumption secret', async () => {
    const { t, store, issued, request } = await setup(2);
    await t.resume(request());
    const secretId = (await t.record(issued.id))?.secretId as string;
    expect((await store.keys.meta(secretId)).state).toBe('active');
    await t.resume(request());
    expect(await code(store.keys.read(secretId))).toBe('KEY_NOT_FOUND');
    expect(await code(t.resume(request()))).toBe('TOKEN_EXHAUSTED');
    expect((await t.record(issued.id))?.used).toBe(2);
  });

  it('expired: TOKEN_EXPIRED, nothing consumed', async () => {
    const { t, clock, issued, request } = await setup(5, 60);
    clock.t += 60_000;
    expect(await code(t.resume(request()))).toBe('TOKEN_EXPIRED');
    expect((await t.record(issued.id))?.used).toBe(0);
  });

  it('uses are durable: a restarted responder (same store) keeps counting', async () => {
    const { store, clock, t, issued, request } = await setup(2);
    await t.resume(request());
    const restarted = issuer(store, clock);
    expect(await restarted.resume(request())).toMatchObject({ use: 2, remaining: 0 });
    expect(await code(issuer(store, clock).resume(request()))).toBe('TOKEN_EXHAUSTED');
    expect((await restarted.record(issued.id))?.used).toBe(2);
  });

  it('valid-token abuse is bounded by the quota, even concurrently', async () => {
    const { t, request } = await setup(3);
    const results = await Promise.all(Array.from({ length: 12 }, () => code(t.resume(request()))));
    expect(results.filter((r) => r === undefined)).toHaveLength(3);
    expect(results.filter((r) => r === 'TOKEN_EXHAUSTED')).toHaveLength(9);
  });

  it('two appliances sharing one store (etcd): the quota holds across them, and a request answered by one is a replay at the other', async () => {
    const { store, clock, t, issued, request } = await setup(3);
    const other = issuer(store, clock);
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => code((i % 2 === 0 ? t : other).resume(request()))),
    );
    expect(results.filter((r) => r === undefined)).toHaveLength(3);
    expect(results.filter((r) => r === 'TOKEN_EXHAUSTED')).toHaveLength(9);
    expect((await t.record(issued.id))?.used).toBe(3);

    const { store: s2, clock: c2, t: a, request: req2 } = await setup(10);
    const b = issuer(s2, c2);
    const same = req2();
    const both = await Promise.all([code(a.resume(same)), code(b.resume(same))]);
    expect(both.filter((r) => r === undefined)).toHaveLength(1);
    expect(both.filter((r) => r === 'TOKEN_REPLAYED')).toHaveLength(1);
  });

  it('on a store no other process writes (exclusive), a replay is still refused, even concurrently', async () => {
    const { t, issued, request } = await setup(10, 3600, true);
    const req = request();
    await t.resume(req);
    expect(await code(t.resume(req))).toBe('TOKEN_REPLAYED');
    const again = request();
    const results = await Promise.all(Array.from({ length: 6 }, () => code(t.resume(again))));
    expect(results.filter((r) => r === undefined)).toHaveLength(1);
    expect(results.filter((r) => r === 'TOKEN_REPLAYED')).toHaveLength(5);
    expect((await t.record(issued.id))?.used).toBe(2);
  });

  it("the caller's precheck sees the token record, is judged before the token's own checks, and its refusal consumes nothing", async () => {
    const { t, issued, request, mine } = await setup(3);
    const seen: Array<string | undefined> = [];
    const refuse = async (rec: TokenRecord) => {
      seen.push(rec.id);
      throw Object.assign(new Error('policy says no'), { code: 'CONTACT_BLOCKED' });
    };
    // Stolen and forged requests: the precheck's refusal comes first.
    for (const req of [request(MALLORY, mine.rs), request(ALICE, new Uint8Array(32)), request()]) {
      await expect(t.resume(req, undefined, refuse)).rejects.toMatchObject({ code: 'CONTACT_BLOCKED' });
    }
    expect(seen).toEqual([issued.id, issued.id, issued.id]);
    expect((await t.record(issued.id))?.used).toBe(0);
    // The same request, once the precheck admits it, is not a replay: nothing was recorded.
    const req = request();
    await expect(t.resume(req, undefined, refuse)).rejects.toMatchObject({ code: 'CONTACT_BLOCKED' });
    expect(await t.resume(req, undefined, async () => undefined)).toMatchObject({ use: 1, remaining: 2 });
  });

  it('refuses silly issue parameters', async () => {
    const { t, K, T } = await setup();
    for (const [maxUses, ttlSeconds] of [
      [0, 60],
      [1.5, 60],
      [1, 0],
      [1, 91 * 86_400],
    ] as const) {
      expect(
        await code(
          t.issue({
            sessionKey: K,
            transcriptHash: T,
            initiator: ALICE,
            responder: BOB,
            maxUses,
            ttlSeconds,
            provenance: PROVENANCE,
          }),
        ),
      ).toBe('INVALID_PARAMETER');
    }
  });
});
