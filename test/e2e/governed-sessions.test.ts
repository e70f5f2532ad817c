import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AccessToken, QkmApiError, QkmClient } from '../../src/client/client.js';
import type { SignedPrekey } from '../../src/governance/prekeys.js';
import { decodeResume, encodeResume } from '../../src/session/resume.js';
import { decodeBody, decodeMessage, encodeBody, encodeMessage } from '../../src/session/transcript.js';
import { runCli } from '../cli/run-cli.js';
import {
  ALICE,
  BOB,
  CAROL,
  type GovernedPair,
  MALLORY,
  startGovernedPair,
} from './fixtures/governed-nodes.js';

/**
 * Governed sessions (protocol qkm/v2) between two appliances over loopback HTTP, and SAGA's
 * attacker models (Table IV) against them. Each attack is refused at a named step with its own
 * error code, leaves an audit record on the node that refused it, and consumes nothing it should
 * not: the counts of one-time prekeys, contact budget and token uses are asserted around it.
 */

let pair: GovernedPair;

async function refused(p: Promise<unknown>): Promise<{ status: number; code: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof QkmApiError) return { status: err.status, code: err.code };
    throw err;
  }
  throw new Error('expected the call to fail');
}

type AuditRecord = { seq: number; type: string; actor: string; details: Record<string, unknown> };
const audit = (admin: QkmClient) => admin.audit.export<AuditRecord>({ limit: 10_000 });
/** The records `admin`'s node wrote after `since` (its last seq before the attempt). */
async function auditAfter(admin: QkmClient, since: number): Promise<AuditRecord[]> {
  return (await audit(admin)).filter((r) => r.seq > since);
}
const lastSeq = async (admin: QkmClient) => (await audit(admin)).at(-1)?.seq ?? 0;

const otks = async () => (await pair.b.admin.prekeys.list<SignedPrekey>(BOB)).length;
const budgetUsed = async (initiator: string) =>
  (await pair.b.admin.contacts.decision<{ used: number }>(BOB, initiator)).used;
const publish = async (n = 1) => pair.b.admin.prekeys.publish<SignedPrekey>(BOB, n);

async function fullSession(initiator: QkmClient, responder: QkmClient, prekey: SignedPrekey) {
  const init = await initiator.sessions.initiate({ peer: pair.b.nodeId, responderAid: BOB, prekey });
  const acc = await responder.sessions.accept(init.handshake);
  const conf = await initiator.sessions.confirm(init.session_id, acc.confirm, acc.token);
  return { init, acc, conf };
}

async function resume(initiator: QkmClient, responder: QkmClient, tokenId: string) {
  const start = await initiator.sessions.resume(tokenId);
  const acc = await responder.sessions.acceptResume(start.resume);
  const done = await initiator.sessions.completeResume(start.resume_id, acc.answer!);
  return { start, acc, done };
}

beforeAll(async () => {
  pair = await startGovernedPair({ tokenMaxUses: 3, tokenTtlSeconds: 3600 });
  // Bob admits example.com agents (3 prekeys per window each) and blocks mallory by her exact
  // id; nobody else matches.
  await pair.b.admin.contacts.set(BOB, [
    { pattern: '*@example.com:*', budget: 3 },
    { pattern: 'mallory@evil.test:mail', budget: -1 },
  ]);
  await pair.b.admin.contacts.set(CAROL, [{ pattern: '*', budget: 5 }]);
}, 60_000);

afterAll(async () => {
  await pair?.stop();
});

let token: AccessToken;

describe('governed session (qkm/v2) over loopback HTTP', () => {
  it('a full handshake encapsulates to the OTK too, consumes it once, and hands the initiator a token', async () => {
    const [otk] = await publish(2);
    const before = { otks: await otks(), used: await budgetUsed(ALICE) };
    const { init, acc, conf } = await fullSession(pair.a.agents.alice!, pair.b.agents.bob!, otk!);
    expect(Buffer.from(init.key).equals(Buffer.from(acc.key))).toBe(true);
    expect(init.key).toHaveLength(32);
    expect(acc.peer_aid).toBe(ALICE);
    for (const p of [init.provenance, acc.provenance]) {
      expect(p.governance).toEqual({
        protocol: 'qkm/v2',
        initiatorAid: ALICE,
        responderAid: BOB,
        prekeyId: otk!.id,
        lastResort: false,
        // These nodes pin each other by hand: manual pinning keeps working, and says so.
        peerTrust: 'pinned',
      });
    }
    expect(conf.confirmed).toBe(true);
    expect(conf.token).toMatchObject({ id: acc.token!.id, max_uses: 3 });
    token = conf.token!;
    expect(await otks()).toBe(before.otks - 1);
    expect(await budgetUsed(ALICE)).toBe(before.used + 1);
    const held = await pair.a.agents.alice!.sessions.tokens();
    expect(held).toEqual([
      expect.objectContaining({ token_id: token.id, peer_aid: BOB, used: 0, max_uses: 3 }),
    ]);
    // Audited on both nodes, with the prekey id and no key material.
    const accepted = (await audit(pair.b.admin)).find(
      (r) => r.type === 'session.accepted' && r.details.session_id === acc.session_id,
    );
    expect(accepted?.details).toMatchObject({ protocol: 'qkm/v2', prekey_id: otk!.id, last_resort: false });
    expect((await audit(pair.b.admin)).some((r) => r.type === 'governance.token_issued')).toBe(true);
  });

  it('a token-resumed session derives the same K on both ends without a prekey or signature', async () => {
    const before = { otks: await otks(), used: await budgetUsed(ALICE) };
    const { acc, done } = await resume(pair.a.agents.alice!, pair.b.agents.bob!, token.id);
    expect(Buffer.from(acc.key).equals(Buffer.from(done.key))).toBe(true);
    expect(acc.session_id).toBe(done.session_id);
    expect(acc).toMatchObject({ use: 1, remaining: 2, token_id: token.id, peer_aid: ALICE });
    expect(done.provenance.resumption).toEqual({ tokenId: token.id, use: 1, kdf: 'HKDF-SHA-256' });
    expect(acc.provenance.qrng).toMatchObject({ used: true });
    // Resumption spends neither prekeys nor contact budget: only the token's quota.
    expect({ otks: await otks(), used: await budgetUsed(ALICE) }).toEqual(before);
  });
});

describe('attacker models (SAGA Table IV), each refused at a named step', () => {
  it('no credentials: no or a forged bearer token is refused at authentication (UNAUTHORIZED), audited', async () => {
    const since = await lastSeq(pair.b.admin);
    const before = await otks();
    const anon = new QkmClient({ url: pair.b.appliance.url, token: `qkm_${'A'.repeat(43)}` });
    expect(await refused(anon.sessions.accept('x'))).toEqual({ status: 401, code: 'UNAUTHORIZED' });
    expect(await refused(anon.sessions.acceptResume('x'))).toEqual({ status: 401, code: 'UNAUTHORIZED' });
    const records = await auditAfter(pair.b.admin, since);
    expect(records.filter((r) => r.type === 'api.refused' && r.details.code === 'UNAUTHORIZED')).toHaveLength(
      2,
    );
    expect(await otks()).toBe(before);
  });

  it('no OTK: a handshake on a used one-time prekey is refused at the prekey check (PREKEY_CONSUMED)', async () => {
    const [otk] = await publish(1);
    await fullSession(pair.a.agents.alice!, pair.b.agents.bob!, otk!);
    const before = { otks: await otks(), used: await budgetUsed(ALICE) };
    const since = await lastSeq(pair.b.admin);
    // The initiator's node still makes the handshake (it cannot know); the responder refuses.
    const init = await pair.a.agents.alice!.sessions.initiate({
      peer: pair.b.nodeId,
      responderAid: BOB,
      prekey: otk!,
    });
    expect(await refused(pair.b.agents.bob!.sessions.accept(init.handshake))).toEqual({
      status: 410,
      code: 'PREKEY_CONSUMED',
    });
    expect(
      (await auditAfter(pair.b.admin, since)).some(
        (r) => r.type === 'session.rejected' && r.details.code === 'PREKEY_CONSUMED',
      ),
    ).toBe(true);
    expect({ otks: await otks(), used: await budgetUsed(ALICE) }).toEqual(before);
  });

  it('no token: resuming with a token nobody issued is refused (TOKEN_UNKNOWN) on either node', async () => {
    expect(
      await refused(pair.a.agents.alice!.sessions.resume('00000000-0000-4000-8000-000000000000')),
    ).toEqual({
      status: 403,
      code: 'TOKEN_UNKNOWN',
    });
    const real = await pair.a.agents.alice!.sessions.resume(token.id);
    const m = decodeResume(real.resume);
    const forged = encodeResume({ ...m, tokenId: '00000000-0000-4000-8000-000000000000' });
    const since = await lastSeq(pair.b.admin);
    expect(await refused(pair.b.agents.bob!.sessions.acceptResume(forged))).toEqual({
      status: 403,
      code: 'TOKEN_UNKNOWN',
    });
    expect(
      (await auditAfter(pair.b.admin, since)).some(
        (r) => r.type === 'session.rejected' && r.details.code === 'TOKEN_UNKNOWN',
      ),
    ).toBe(true);
  });

  it('impersonation: a handshake rewritten to name another initiator fails its signature; another responder agent cannot accept', async () => {
    const [otk] = await publish(1);
    const before = { otks: await otks(), alice: await budgetUsed(ALICE), mallory: await budgetUsed(MALLORY) };
    const init = await pair.a.agents.mallory!.sessions.initiate({
      peer: pair.b.nodeId,
      responderAid: BOB,
      prekey: otk!,
    });
    const { body, signature } = decodeMessage(init.handshake);
    const b = decodeBody(body);
    const asAlice = encodeMessage(
      encodeBody({ ...b, initiatorAgent: 'alice', governed: { ...b.governed!, initiatorAid: ALICE } }),
      signature,
    );
    const since = await lastSeq(pair.b.admin);
    expect(await refused(pair.b.agents.bob!.sessions.accept(asAlice))).toEqual({
      status: 401,
      code: 'HANDSHAKE_BAD_SIGNATURE',
    });
    // Carol (another agent of B) cannot accept a handshake addressed to bob.
    const honest = await pair.a.agents.alice!.sessions.initiate({
      peer: pair.b.nodeId,
      responderAid: BOB,
      prekey: otk!,
    });
    expect(await refused(pair.b.agents.carol!.sessions.accept(honest.handshake))).toEqual({
      status: 403,
      code: 'HANDSHAKE_WRONG_AGENT',
    });
    const codes = (await auditAfter(pair.b.admin, since))
      .filter((r) => r.type === 'session.rejected')
      .map((r) => r.details.code);
    expect(codes).toEqual(expect.arrayContaining(['HANDSHAKE_BAD_SIGNATURE', 'HANDSHAKE_WRONG_AGENT']));
    expect({
      otks: await otks(),
      alice: await budgetUsed(ALICE),
      mallory: await budgetUsed(MALLORY),
    }).toEqual(before);
    // Nothing was burnt: bob can still accept alice's genuine handshake.
    const acc = await pair.b.agents.bob!.sessions.accept(honest.handshake);
    expect(Buffer.from(acc.key).equals(Buffer.from(honest.key))).toBe(true);
    expect(await otks()).toBe(before.otks - 1);
  });

  it('contact-policy violation: a blocked initiator is refused at the policy check (CONTACT_BLOCKED), its OTK kept', async () => {
    const [otk] = await publish(1);
    const before = await otks();
    const init = await pair.a.agents.mallory!.sessions.initiate({
      peer: pair.b.nodeId,
      responderAid: BOB,
      prekey: otk!,
    });
    const since = await lastSeq(pair.b.admin);
    expect(await refused(pair.b.agents.bob!.sessions.accept(init.handshake))).toEqual({
      status: 403,
      code: 'CONTACT_BLOCKED',
    });
    expect(
      (await auditAfter(pair.b.admin, since)).some(
        (r) => r.type === 'session.rejected' && r.details.code === 'CONTACT_BLOCKED',
      ),
    ).toBe(true);
    expect(await otks()).toBe(before);
    expect(await budgetUsed(MALLORY)).toBe(0);
  });

  it('contact budget: an initiator past its budget is refused (CONTACT_BUDGET_EXHAUSTED), nothing consumed', async () => {
    // Alice has used her 3 prekeys of this window by now (three full sessions above).
    expect(await budgetUsed(ALICE)).toBe(3);
    const [otk] = await publish(1);
    const before = await otks();
    const init = await pair.a.agents.alice!.sessions.initiate({
      peer: pair.b.nodeId,
      responderAid: BOB,
      prekey: otk!,
    });
    expect(await refused(pair.b.agents.bob!.sessions.accept(init.handshake))).toEqual({
      status: 429,
      code: 'CONTACT_BUDGET_EXHAUSTED',
    });
    expect(await otks()).toBe(before);
    expect(await budgetUsed(ALICE)).toBe(3);
  });

  it('stolen token: another agent presenting it is refused (TOKEN_STOLEN) at its node and at the responder', async () => {
    const uses = async () => (await pair.b.appliance.tokens.record(token.id))!.used;
    const before = await uses();
    const sinceA = await lastSeq(pair.a.admin);
    expect(await refused(pair.a.agents.mallory!.sessions.resume(token.id))).toEqual({
      status: 403,
      code: 'TOKEN_STOLEN',
    });
    expect(
      (await auditAfter(pair.a.admin, sinceA)).some(
        (r) => r.type === 'session.rejected' && r.details.code === 'TOKEN_STOLEN',
      ),
    ).toBe(true);
    // Alice's resume message intercepted and re-addressed as mallory's: the proof is alice's,
    // but the token is bound to alice's agent key, so the responder refuses before the proof.
    const start = await pair.a.agents.alice!.sessions.resume(token.id);
    const stolen = encodeResume({ ...decodeResume(start.resume), initiatorAgent: 'mallory' });
    const sinceB = await lastSeq(pair.b.admin);
    expect(await refused(pair.b.agents.bob!.sessions.acceptResume(stolen))).toEqual({
      status: 403,
      code: 'TOKEN_STOLEN',
    });
    expect(
      (await auditAfter(pair.b.admin, sinceB)).some(
        (r) => r.type === 'session.rejected' && r.details.code === 'TOKEN_STOLEN',
      ),
    ).toBe(true);
    expect(await uses()).toBe(before);
  });

  it('replay: a resume message answered once is refused the second time (TOKEN_REPLAYED), no use counted', async () => {
    const start = await pair.a.agents.alice!.sessions.resume(token.id);
    const first = await pair.b.agents.bob!.sessions.acceptResume(start.resume);
    expect(first.use).toBe(2);
    expect(await refused(pair.b.agents.bob!.sessions.acceptResume(start.resume))).toEqual({
      status: 409,
      code: 'TOKEN_REPLAYED',
    });
    expect((await pair.b.appliance.tokens.record(token.id))!.used).toBe(2);
  });

  it('valid-token abuse is bounded by the quota, durably: a restart does not reset the count (TOKEN_EXHAUSTED)', async () => {
    const third = await resume(pair.a.agents.alice!, pair.b.agents.bob!, token.id);
    expect(third.acc).toMatchObject({ use: 3, remaining: 0 });
    const over = await pair.a.agents.alice!.sessions.resume(token.id);
    expect(await refused(pair.b.agents.bob!.sessions.acceptResume(over.resume))).toEqual({
      status: 429,
      code: 'TOKEN_EXHAUSTED',
    });
    await pair.restartB();
    const again = await pair.a.agents.alice!.sessions.resume(token.id);
    const since = await lastSeq(pair.b.admin);
    expect(await refused(pair.b.agents.bob!.sessions.acceptResume(again.resume))).toEqual({
      status: 429,
      code: 'TOKEN_EXHAUSTED',
    });
    expect(
      (await auditAfter(pair.b.admin, since)).some(
        (r) => r.type === 'session.rejected' && r.details.code === 'TOKEN_EXHAUSTED',
      ),
    ).toBe(true);
    expect((await pair.b.appliance.tokens.record(token.id))!.used).toBe(3);
  }, 60_000);

  it('Sybil: registering governed agents is admin-gated (FORBIDDEN, audited) and an agent id is unique (AID_EXISTS)', async () => {
    const since = await lastSeq(pair.b.admin);
    const agentsBefore = (await pair.b.admin.agents.list()).length;
    expect(
      await refused(pair.b.agents.bob!.agents.add('sybil', ['sessions'], 'sybil@example.com:mail')),
    ).toEqual({
      status: 403,
      code: 'FORBIDDEN',
    });
    expect(await refused(pair.b.admin.agents.add('bob2', ['sessions'], BOB))).toEqual({
      status: 409,
      code: 'AID_EXISTS',
    });
    expect(
      (await auditAfter(pair.b.admin, since)).some(
        (r) => r.type === 'api.refused' && r.details.code === 'FORBIDDEN' && r.actor === 'bob',
      ),
    ).toBe(true);
    expect((await pair.b.admin.agents.list()).length).toBe(agentsBefore);
    // An agent without a governed id cannot take part in a governed session at all.
    const { token: plainToken } = await pair.a.admin.agents.add('plain', ['sessions']);
    const plain = new QkmClient({ url: pair.a.appliance.url, token: plainToken });
    const [otk] = await publish(1);
    expect(
      await refused(plain.sessions.initiate({ peer: pair.b.nodeId, responderAid: BOB, prekey: otk! })),
    ).toEqual({
      status: 403,
      code: 'AGENT_NOT_GOVERNED',
    });
  });
});

describe('expired tokens', () => {
  let short: GovernedPair;
  beforeAll(async () => {
    short = await startGovernedPair({ tokenMaxUses: 5, tokenTtlSeconds: 1 });
    await short.b.admin.contacts.set(BOB, [{ pattern: '*@example.com:*', budget: 2 }]);
  }, 60_000);
  afterAll(async () => {
    await short?.stop();
  });

  it('a token past its expiry is refused by the responder (TOKEN_EXPIRED) and by the initiator node', async () => {
    const [otk] = await short.b.admin.prekeys.publish<SignedPrekey>(BOB, 1);
    const alice = short.a.agents.alice!;
    const init = await alice.sessions.initiate({ peer: short.b.nodeId, responderAid: BOB, prekey: otk! });
    const acc = await short.b.agents.bob!.sessions.accept(init.handshake);
    const conf = await alice.sessions.confirm(init.session_id, acc.confirm, acc.token);
    const start = await alice.sessions.resume(conf.token!.id);
    // The only wait in this file: the token lives one second.
    await new Promise((r) => setTimeout(r, Date.parse(conf.token!.expires) - Date.now() + 50));
    const since = await lastSeq(short.b.admin);
    expect(await refused(short.b.agents.bob!.sessions.acceptResume(start.resume))).toEqual({
      status: 403,
      code: 'TOKEN_EXPIRED',
    });
    expect(
      (await auditAfter(short.b.admin, since)).some(
        (r) => r.type === 'session.rejected' && r.details.code === 'TOKEN_EXPIRED',
      ),
    ).toBe(true);
    expect((await short.b.appliance.tokens.record(conf.token!.id))!.used).toBe(0);
    expect(await refused(alice.sessions.resume(conf.token!.id))).toEqual({
      status: 403,
      code: 'TOKEN_EXPIRED',
    });
  });
});

describe('CLI', () => {
  it('qkm session initiate --responder-aid / accept / confirm --access-token / resume / resume-accept / resume-complete / tokens', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'qkm-cli-gov-'));
    try {
      const [otk] = await pair.b.admin.prekeys.publish<SignedPrekey>(CAROL, 1);
      const prekeyFile = join(dir, 'prekey.json');
      await writeFile(prekeyFile, JSON.stringify(otk));
      const as = (node: 'a' | 'b', agent: string) => [
        '--json',
        '--url',
        pair[node].appliance.url,
        '--token',
        pair[node].tokens[agent]!,
      ];
      const json = async (args: string[]) => {
        const r = await runCli(...args);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        return JSON.parse(r.stdout);
      };
      const init = await json([
        ...as('a', 'alice'),
        'session',
        'initiate',
        pair.b.nodeId,
        '--responder-aid',
        CAROL,
        '--prekey',
        prekeyFile,
      ]);
      const acc = await json([...as('b', 'carol'), 'session', 'accept', init.handshake]);
      expect(acc.key).toBe(init.key);
      const conf = await json([
        ...as('a', 'alice'),
        'session',
        'confirm',
        init.session_id,
        acc.confirm,
        '--access-token',
        JSON.stringify(acc.token),
      ]);
      expect(conf.token.id).toBe(acc.token.id);
      const start = await json([...as('a', 'alice'), 'session', 'resume', acc.token.id]);
      const racc = await json([...as('b', 'carol'), 'session', 'resume-accept', start.resume]);
      const done = await json([
        ...as('a', 'alice'),
        'session',
        'resume-complete',
        start.resume_id,
        racc.answer,
      ]);
      expect(done.key).toBe(racc.key);
      const tokens = await json([...as('a', 'alice'), 'session', 'tokens']);
      expect(tokens.find((t: { token_id: string }) => t.token_id === acc.token.id)).toMatchObject({
        peer_aid: CAROL,
        used: 1,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
