import { describe, expect, it } from 'vitest';
import { isQkmError } from '../../src/core/errors.js';
import {
  type BudgetRecord,
  ContactPolicies,
  type StoredContactPolicy,
} from '../../src/governance/contacts.js';
import {
  type PrekeyIndexEntry,
  type PrekeyRecord,
  PrekeyStore,
  type SignedPrekey,
} from '../../src/governance/prekeys.js';
import { TokenIssuer, type TokenRecord } from '../../src/governance/resumption.js';
import { givenBundle } from '../../src/session/bundles.js';
import type { BundleSource } from '../../src/session/bundles.js';
import { decodeAnswer, encodeAnswer } from '../../src/session/resume.js';
import { fakeProvenance } from './fakes.js';
import { type TestNode, makePair } from './harness.js';

/**
 * Governed sessions (qkm/v2) at the service level, both nodes in memory with one clock: what
 * the e2e tests cannot reach cheaply — the last-resort flag, concurrent use of one OTK, the
 * initiator's own prekey checks, bad tokens and answers.
 */

const ALICE = 'alice@example.com:mail';
const BOB = 'bob@example.com:calendar';

interface Governed {
  prekeys: PrekeyStore;
  contacts: ContactPolicies;
  tokens: TokenIssuer;
}

function govern(node: TestNode, aids: string[]): Governed {
  const now = () => node.clock.now;
  const g: Governed = {
    prekeys: new PrekeyStore({
      signer: node.identity,
      keys: node.store.keys,
      records: node.store.records<PrekeyRecord>('prekeys'),
      index: node.store.records<PrekeyIndexEntry>('prekey-ids'),
      seed: (n) => draw(node, n),
      now,
    }),
    contacts: new ContactPolicies({
      policies: node.store.records<StoredContactPolicy>('contact-policies'),
      budgets: node.store.records<BudgetRecord>('contact-budgets'),
      isLocalAid: async (aid) => aids.includes(aid),
      now,
    }),
    tokens: new TokenIssuer({
      tokens: node.store.records<TokenRecord>('access-tokens'),
      nonces: node.store.records<{ at: string }>('access-token-nonces'),
      keys: node.store.keys,
      salt: (n) => draw(node, n),
      now,
    }),
  };
  node.restart({ governance: { ...g, tokenMaxUses: 2, tokenTtlSeconds: 3600 } });
  return g;
}

async function draw(node: TestNode, n: number) {
  const e = await node.entropy.getEntropy(n, { require: 'quantum' });
  return { data: e.bytes, provenance: fakeProvenance(true) };
}

async function setup() {
  const { a, b, clock } = await makePair();
  govern(a, [ALICE]);
  const gb = govern(b, [BOB]);
  await gb.contacts.set(BOB, [{ pattern: '*@example.com:*', budget: 10 }]);
  return { a, b, gb, clock };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isQkmError(err)) return err.code;
    throw err;
  }
  return 'resolved';
}

const initiate = (a: TestNode, b: TestNode, bundles: BundleSource) =>
  a.sessions.initiate({
    agent: 'alice',
    responderAgent: 'calendar',
    peer: b.identity.nodeId,
    governed: { initiatorAid: ALICE, responderAid: BOB, bundles },
  });

describe('governed sessions (service level)', () => {
  it('the last-resort prekey works when no OTK is at hand, and both ends flag it in provenance', async () => {
    const { a, b, gb } = await setup();
    const lr = await gb.prekeys.lastResort(BOB);
    for (let n = 0; n < 2; n++) {
      const i = await initiate(a, b, givenBundle(lr));
      const acc = await b.sessions.accept({ handshake: i.handshake, agent: 'bob', agentAid: BOB });
      expect(Buffer.from(acc.key).equals(Buffer.from(i.key))).toBe(true);
      expect(i.provenance.governance?.lastResort).toBe(true);
      expect(acc.provenance.governance?.lastResort).toBe(true);
    }
    const rec = (await b.audit.records()).filter((r) => r.type === 'session.accepted');
    expect(rec.every((r) => r.details.last_resort === true)).toBe(true);
  });

  it('one OTK, two handshakes accepted at once: exactly one session, the other PREKEY_CONSUMED', async () => {
    const { a, b, gb } = await setup();
    const [otk] = await gb.prekeys.publishBatch(BOB, 1);
    const i1 = await initiate(a, b, givenBundle(otk!));
    const i2 = await initiate(a, b, givenBundle(otk!));
    const results = await Promise.all(
      [i1, i2].map((i) =>
        b.sessions.accept({ handshake: i.handshake, agent: 'bob', agentAid: BOB }).then(
          () => 'ok',
          (e) => (isQkmError(e) ? e.code : 'other'),
        ),
      ),
    );
    expect(results.sort()).toEqual(['PREKEY_CONSUMED', 'ok']);
    // The loser spent no budget.
    expect((await gb.contacts.explain(BOB, ALICE)).used).toBe(1);
  });

  it("the initiator checks the prekey itself: another agent's, another node's, expired (nothing sent)", async () => {
    const { a, b, gb, clock } = await setup();
    const [otk] = await gb.prekeys.publishBatch(BOB, 1, 3600);
    const other = { ...otk!, aid: 'carol@example.com:notes' } as SignedPrekey;
    expect(await code(initiate(a, b, givenBundle(other)))).toBe('PREKEY_INVALID');
    const forged = { ...otk!, signature: otk!.signature.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) };
    expect(await code(initiate(a, b, givenBundle(forged)))).toBe('PREKEY_INVALID');
    clock.now += 3601_000;
    expect(await code(initiate(a, b, givenBundle(otk!)))).toBe('PREKEY_EXPIRED');
    expect((await a.audit.records()).some((r) => r.type === 'session.initiated')).toBe(false);
  });

  it('a token that does not open under the session is TOKEN_INVALID at confirm; the session stays confirmable', async () => {
    const { a, b, gb } = await setup();
    const [otk] = await gb.prekeys.publishBatch(BOB, 1);
    const i = await initiate(a, b, givenBundle(otk!));
    const acc = await b.sessions.accept({ handshake: i.handshake, agent: 'bob', agentAid: BOB });
    const bad = { id: acc.token!.id, sealed: `${acc.token!.sealed.slice(0, -2)}AA` };
    expect(await code(a.sessions.confirm(i.session_id, acc.confirm, 'alice', bad))).toBe('TOKEN_INVALID');
    const ok = await a.sessions.confirm(i.session_id, acc.confirm, 'alice', acc.token!);
    expect(ok.token?.id).toBe(acc.token!.id);
    // A second delivery of the same token finds the resumption secret already used.
    expect(await code(a.sessions.confirm(i.session_id, acc.confirm, 'alice', acc.token!))).toBe(
      'TOKEN_INVALID',
    );
  });

  it('resumption: a forged answer is CONFIRM_MISMATCH, another agent cannot complete, the real one can once', async () => {
    const { a, b, gb } = await setup();
    const [otk] = await gb.prekeys.publishBatch(BOB, 1);
    const i = await initiate(a, b, givenBundle(otk!));
    const acc = await b.sessions.accept({ handshake: i.handshake, agent: 'bob', agentAid: BOB });
    await a.sessions.confirm(i.session_id, acc.confirm, 'alice', acc.token!);
    const start = await a.sessions.startResume({ agent: 'alice', tokenId: acc.token!.id });
    const r = await b.sessions.acceptResume({ resume: start.resume, agent: 'bob', agentAid: BOB });
    const answer = decodeAnswer(r.answer!);
    const forged = encodeAnswer({ ...answer, confirm: new Uint8Array(32) });
    expect(
      await code(a.sessions.completeResume({ agent: 'alice', resumeId: start.resume_id, answer: forged })),
    ).toBe('CONFIRM_MISMATCH');
    expect(
      await code(
        a.sessions.completeResume({ agent: 'mallory', resumeId: start.resume_id, answer: r.answer! }),
      ),
    ).toBe('SESSION_NOT_FOUND');
    const done = await a.sessions.completeResume({
      agent: 'alice',
      resumeId: start.resume_id,
      answer: r.answer!,
    });
    expect(Buffer.from(done.key).equals(Buffer.from(r.key))).toBe(true);
    expect(
      await code(a.sessions.completeResume({ agent: 'alice', resumeId: start.resume_id, answer: r.answer! })),
    ).toBe('SESSION_NOT_FOUND');
    // The responder agent must be the token's: another governed agent of B cannot take the resume.
    const again = await a.sessions.startResume({ agent: 'alice', tokenId: acc.token!.id });
    expect(
      await code(
        b.sessions.acceptResume({
          resume: again.resume,
          agent: 'carol',
          agentAid: 'carol@example.com:notes',
        }),
      ),
    ).toBe('HANDSHAKE_WRONG_AGENT');
    // A policy changed to block alice stops her token too.
    await gb.contacts.set(BOB, [{ pattern: ALICE, budget: -1 }]);
    expect(await code(b.sessions.acceptResume({ resume: again.resume, agent: 'bob', agentAid: BOB }))).toBe(
      'CONTACT_BLOCKED',
    );
    expect((await gb.tokens.record(acc.token!.id))!.used).toBe(1);
  });

  it('expired tokens are refused TOKEN_EXPIRED, then pruned a day later with their nonces and secrets', async () => {
    const { a, b, gb, clock } = await setup();
    const [otk] = await gb.prekeys.publishBatch(BOB, 1);
    const i = await initiate(a, b, givenBundle(otk!));
    const acc = await b.sessions.accept({ handshake: i.handshake, agent: 'bob', agentAid: BOB });
    await a.sessions.confirm(i.session_id, acc.confirm, 'alice', acc.token!);
    const start = await a.sessions.startResume({ agent: 'alice', tokenId: acc.token!.id });
    await b.sessions.acceptResume({ resume: start.resume, agent: 'bob', agentAid: BOB });
    const late = await a.sessions.startResume({ agent: 'alice', tokenId: acc.token!.id });
    clock.now += 3600_000 + 1;
    expect(await code(b.sessions.acceptResume({ resume: late.resume, agent: 'bob', agentAid: BOB }))).toBe(
      'TOKEN_EXPIRED',
    );
    expect(await b.sessions.pruneTokens()).toBe(0); // within the day of grace
    clock.now += 86_400_000;
    expect(await b.sessions.pruneTokens()).toBe(1);
    expect(await gb.tokens.record(acc.token!.id)).toBeUndefined();
    expect(await b.store.records('access-token-nonces').entries()).toEqual([]);
    expect(await code(b.sessions.acceptResume({ resume: late.resume, agent: 'bob', agentAid: BOB }))).toBe(
      'TOKEN_UNKNOWN',
    );
    // The initiator drops its copy and the never-completed resumptions.
    expect(await a.sessions.pruneTokens()).toBe(3);
    expect(await a.sessions.tokens('alice')).toEqual([]);
  });

  it('a node without governance refuses governed handshakes (HANDSHAKE_VERSION) and governed initiations', async () => {
    const { a, b } = await makePair();
    const gb = govern(b, [BOB]);
    await gb.contacts.set(BOB, [{ pattern: '*', budget: 1 }]);
    const [otk] = await gb.prekeys.publishBatch(BOB, 1);
    expect(await code(initiate(a, b, givenBundle(otk!)))).toBe('INVALID_PARAMETER');
    govern(a, [ALICE]);
    const i = await initiate(a, b, givenBundle(otk!));
    b.restart(); // governance dropped
    expect(await code(b.sessions.accept({ handshake: i.handshake, agent: 'calendar', agentAid: BOB }))).toBe(
      'HANDSHAKE_VERSION',
    );
  });
});
