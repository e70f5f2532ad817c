import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isQkmError } from '../../src/core/errors.js';
import type { Provenance } from '../../src/core/provenance.js';
import { type PrekeyIndexEntry, type PrekeyRecord, PrekeyStore } from '../../src/governance/prekeys.js';
import { Directory } from '../../src/provider/directory.js';
import { identityFromSeed } from '../../src/session/identity.js';
import type { StorageBackend } from '../../src/store/interface.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { BACKENDS, type BackendHarness, ETCD_SKIP, stopSharedEtcd } from '../keys/helpers.js';

const PROVENANCE: Provenance = {
  seedOrigin: 'quantum',
  sources: [],
  entropyCredited: 512,
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
const BOB = 'bob@example.com:calendar';
const ALICE = 'alice@example.com:mail';
const EVE = 'eve@evil.example:mail';

function node(fill: number) {
  const id = identityFromSeed(
    new Uint8Array(96).fill(fill),
    { region: 'EU', created: '2026-01-01T00:00:00.000Z' },
    PROVENANCE,
  );
  const nodeId = id.nodeId;
  const store = createMemoryBackend();
  const prekeys = new PrekeyStore({
    signer: id,
    keys: store.keys,
    records: store.records<PrekeyRecord>('prekeys'),
    index: store.records<PrekeyIndexEntry>('prekey-ids'),
    seed: async (n) => ({ data: new Uint8Array(randomBytes(n)), provenance: PROVENANCE }),
  });
  return { nodeId, bundle: id.bundle, prekeys };
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isQkmError(err) ? err.code : `not a QkmError: ${String(err)}`;
  }
}

const A = node(0xa);
const B = node(0xb);

afterAll(() => stopSharedEtcd(), 30_000);

if (ETCD_SKIP !== undefined) {
  describe('Provider directory: etcd', () => {
    it.skip(`skipped: ${ETCD_SKIP}`, () => undefined);
  });
}

/** The directory conformance suite: the same behaviour on every record store (#14). */
describe.each(BACKENDS)('Provider directory on $name', ({ make }) => {
  let harness: BackendHarness | undefined;
  let store: StorageBackend | undefined;
  afterEach(async () => {
    await store?.close();
    await harness?.cleanup();
    store = undefined;
    harness = undefined;
  });

  async function setup() {
    harness = await make();
    store = await harness.open();
    const dir = new Directory({ store });
    const b = B;
    const a = A;
    await dir.enroll(b.bundle, 'node B');
    await dir.enroll(a.bundle, 'node A');
    await dir.registerAgent(b.nodeId, BOB, 'http://127.0.0.1:7301');
    await dir.setPolicy(b.nodeId, BOB, [
      { pattern: '*@example.com:*', budget: 2 },
      { pattern: '*@evil.example:*', budget: -1 },
    ]);
    await dir.uploadPrekeys(b.nodeId, BOB, await b.prekeys.publishBatch(BOB, 3));
    return { dir, a, b };
  }

  it('hands out exactly one OTK per bundle, budget permitting, and nothing on refusal', async () => {
    const { dir, b } = await setup();
    const first = await dir.bundle(BOB, ALICE);
    expect(first).toMatchObject({
      agent: { aid: BOB, node_id: b.nodeId },
      lastResort: false,
      decision: { used: 1, remaining: 1 },
    });
    const second = await dir.bundle(BOB, ALICE);
    expect(second.prekey.id).not.toBe(first.prekey.id);
    expect(await dir.remainingOtks(BOB)).toBe(1);
    expect(await code(dir.bundle(BOB, ALICE))).toBe('CONTACT_BUDGET_EXHAUSTED');
    expect(await code(dir.bundle(BOB, EVE))).toBe('CONTACT_BLOCKED');
    expect(await code(dir.bundle(BOB, 'carol@other.org:x'))).toBe('CONTACT_NO_RULE');
    expect(await dir.remainingOtks(BOB)).toBe(1);
    // A handed-out OTK decapsulates at its node exactly once (verified there, too).
    expect(first.prekey.kind).toBe('otk');
  });

  it('falls back to the last-resort prekey, flagged, and refuses when there is none', async () => {
    const { dir, b } = await setup();
    await dir.setPolicy(b.nodeId, BOB, [{ pattern: '*', budget: 10 }]);
    for (let i = 0; i < 3; i++) await dir.bundle(BOB, ALICE);
    expect(await code(dir.bundle(BOB, ALICE))).toBe('PREKEYS_EXHAUSTED');
    expect((await dir.contacts.explain(BOB, ALICE)).used).toBe(3);
    await dir.uploadPrekeys(b.nodeId, BOB, [await b.prekeys.lastResort(BOB)]);
    const lr = await dir.bundle(BOB, ALICE);
    expect(lr).toMatchObject({ lastResort: true, prekey: { kind: 'last-resort' } });
  });

  it('registration is admin-gated (Sybil) and ids and prekeys are bound to their node', async () => {
    const { dir, a, b } = await setup();
    const stranger = node(0xc);
    expect(await code(dir.registerAgent(stranger.nodeId, 'sybil@example.com:x', 'http://127.0.0.1:1'))).toBe(
      'NODE_NOT_ENROLLED',
    );
    expect(await code(dir.registerAgent(a.nodeId, BOB, 'http://127.0.0.1:7302'))).toBe('AID_EXISTS');
    expect(await code(dir.setPolicy(a.nodeId, BOB, []))).toBe('FORBIDDEN');
    expect(await code(dir.uploadPrekeys(a.nodeId, BOB, await b.prekeys.publishBatch(BOB, 1)))).toBe(
      'FORBIDDEN',
    );
    // Node A registers its own agent but uploads prekeys signed by node B: refused, none stored.
    await dir.registerAgent(a.nodeId, ALICE, 'http://127.0.0.1:7302');
    const good = await a.prekeys.publishBatch(ALICE, 1);
    const forged = await b.prekeys.publishBatch(ALICE, 1);
    expect(await code(dir.uploadPrekeys(a.nodeId, ALICE, [...good, ...forged]))).toBe('PREKEY_INVALID');
    expect(await dir.remainingOtks(ALICE)).toBe(0);
    expect(await code(dir.registerAgent(a.nodeId, 'x@example.com:y', 'ftp://nope'))).toBe(
      'INVALID_PARAMETER',
    );
    expect(await code(dir.enroll({ ...a.bundle, region: 'US' }))).toBe('BUNDLE_INVALID');
    expect(await code(dir.enroll('zz'))).toBe('BUNDLE_INVALID');
  });

  it('a node asks bundles only for its own initiator agents, and a refusal consumes nothing', async () => {
    const { dir, a, b } = await setup();
    await dir.registerAgent(a.nodeId, ALICE, 'http://127.0.0.1:7302');
    // Node B may not spend Alice's budget (nor borrow her standing in Bob's policy).
    expect(await code(dir.bundle(BOB, ALICE, { requester: b.nodeId }))).toBe('FORBIDDEN');
    expect(await code(dir.bundle(BOB, 'nobody@example.com:x', { requester: a.nodeId }))).toBe('FORBIDDEN');
    expect(await code(dir.bundle(BOB, ALICE, { requester: node(0xc).nodeId }))).toBe('NODE_NOT_ENROLLED');
    expect((await dir.contacts.explain(BOB, ALICE)).used).toBe(0);
    expect(await dir.remainingOtks(BOB)).toBe(3);
    const got = await dir.bundle(BOB, ALICE, { requester: a.nodeId });
    expect(got.node.identity).toEqual(b.bundle);
    expect(await dir.prekeyStock(b.nodeId, BOB)).toEqual({ otks: 2, lastResortExpires: null });
    expect(await code(dir.prekeyStock(a.nodeId, BOB))).toBe('FORBIDDEN');
  });

  it('an administrator can restrict a node to its domains and remove a node', async () => {
    const { dir, a, b } = await setup();
    await dir.enroll(a.bundle, 'node A', ['Example.com']);
    expect((await dir.enrolled(a.nodeId))?.domains).toEqual(['example.com']);
    await dir.registerAgent(a.nodeId, ALICE, 'http://127.0.0.1:7302');
    expect(await code(dir.registerAgent(a.nodeId, 'ceo@bigcorp.example:mail', 'http://127.0.0.1:7302'))).toBe(
      'FORBIDDEN',
    );
    expect(await code(dir.enroll(a.bundle, 'node A', ['not a domain']))).toBe('INVALID_PARAMETER');
    // Removed: its agents get no bundles, its requests are refused, and the id stays reserved.
    expect(await dir.unenroll(b.nodeId)).toBe(true);
    expect(await code(dir.bundle(BOB, ALICE, { requester: a.nodeId }))).toBe('NODE_NOT_ENROLLED');
    expect(await code(dir.setPolicy(b.nodeId, BOB, []))).toBe('NODE_NOT_ENROLLED');
    expect(await code(dir.registerAgent(a.nodeId, BOB, 'http://127.0.0.1:7302'))).toBe('AID_EXISTS');
    expect(await dir.unenroll(b.nodeId)).toBe(false);
    expect(await dir.remainingOtks(BOB)).toBe(3);
  });

  it('the state survives reopening the store (durable backends)', async () => {
    const { dir, b } = await setup();
    if (!harness?.durable || !store) return;
    await dir.bundle(BOB, ALICE);
    store = await harness.reopen(store);
    const again = new Directory({ store });
    expect(await again.enrolled(b.nodeId)).toMatchObject({ label: 'node B' });
    expect(await again.remainingOtks(BOB)).toBe(2);
    expect((await again.contacts.explain(BOB, ALICE)).used).toBe(1);
    expect(await again.stats()).toEqual({ nodes: 2, agents: 1, otks: 2, lastResort: 0 });
  });

  it('two Directories on one store (two Providers): each OTK once, budgets counted exactly', async () => {
    const { dir, b } = await setup();
    // etcd: a second client, as a second Provider process has; LevelDB and memory admit one
    // process, so the second Directory shares the backend (and, now, no lock with the first).
    const other = harness!.name === 'etcd' ? await harness!.open() : store!;
    try {
      const dir2 = new Directory({ store: other });
      await dir.uploadPrekeys(b.nodeId, BOB, await b.prekeys.publishBatch(BOB, 7)); // 10 in stock
      await dir.setPolicy(b.nodeId, BOB, [{ pattern: '*@example.com:*', budget: 4 }]);
      const initiators = ['u0', 'u1', 'u2', 'u3'].map((u) => `${u}@example.com:m`);
      const requests = initiators.flatMap((init) =>
        Array.from({ length: 6 }, (_, k) =>
          (k % 2 === 0 ? dir : dir2).bundle(BOB, init).then(
            (got) => ({ init, id: got.prekey.id, lastResort: got.lastResort }),
            (err: unknown) => ({ init, code: isQkmError(err) ? err.code : String(err) }),
          ),
        ),
      );
      const results = await Promise.all(requests);
      const granted = results.filter(
        (r): r is { init: string; id: string; lastResort: boolean } => 'id' in r,
      );
      const ids = granted.map((g) => g.id);
      expect(new Set(ids).size).toBe(ids.length);
      // 16 units of budget for 10 OTKs: every OTK goes out, the rest are refused.
      expect(ids).toHaveLength(10);
      expect(granted.every((g) => !g.lastResort)).toBe(true);
      const codes = new Set(results.filter((r) => 'code' in r).map((r) => (r as { code: string }).code));
      expect([...codes].every((c) => c === 'PREKEYS_EXHAUSTED' || c === 'CONTACT_BUDGET_EXHAUSTED')).toBe(
        true,
      );
      expect(codes.has('PREKEYS_EXHAUSTED')).toBe(true);
      for (const init of initiators) {
        const mine = granted.filter((g) => g.init === init).length;
        expect(mine).toBeLessThanOrEqual(4);
        // Refused for want of a prekey: the unit was given back, so the count is the grants.
        expect((await dir2.contacts.explain(BOB, init)).used).toBe(mine);
      }
      expect(await dir2.remainingOtks(BOB)).toBe(0);
    } finally {
      if (other !== store) await other.close();
    }
  });

  it('two nodes claiming one new agent id at once: one gets it, the other AID_EXISTS', async () => {
    const { dir, a, b } = await setup();
    const other = harness!.name === 'etcd' ? await harness!.open() : store!;
    try {
      const dir2 = new Directory({ store: other });
      const aid = 'shared@example.com:x';
      const res = await Promise.all([
        code(dir.registerAgent(a.nodeId, aid, 'http://127.0.0.1:7302')),
        code(dir2.registerAgent(b.nodeId, aid, 'http://127.0.0.1:7301')),
      ]);
      expect(res.sort()).toEqual(['AID_EXISTS', undefined]);
    } finally {
      if (other !== store) await other.close();
    }
  });

  it('concurrent bundle requests never hand out one OTK twice or exceed the budget', async () => {
    const { dir, b } = await setup();
    await dir.setPolicy(b.nodeId, BOB, [{ pattern: '*', budget: 100 }]);
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        dir.bundle(BOB, `u${i}@example.com:m`).catch((e) => e.code as string),
      ),
    );
    const ids = results
      .filter((r) => typeof r !== 'string')
      .map((r) => (r as { prekey: { id: string } }).prekey.id);
    expect(ids).toHaveLength(3);
    expect(new Set(ids).size).toBe(3);
    expect(results.filter((r) => r === 'PREKEYS_EXHAUSTED')).toHaveLength(3);
  });
});
