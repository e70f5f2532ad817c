import { describe, expect, it } from 'vitest';
import { AuditLog, signerFromIdentity } from '../../src/audit/log.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { identityFromSeed } from '../../src/session/identity.js';
import { qkdAvailabilityFrom } from '../../src/session/policy.js';
import { ReplayCache } from '../../src/session/replay.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { FakeEntropy, FakeQkdLink, fakeProvenance } from './fakes.js';
import { makePair } from './harness.js';

/**
 * The per-establishment shortcuts (cached KME "link up", cached pinned peers, the audit head
 * written lazily) must not change what a session or the audit log can be trusted for.
 */

const peer = { nodeId: 'c'.repeat(32), region: 'EU', saeId: 'sae-b', kmeId: 'kme-b' };

describe('QKD availability cache', () => {
  it('reuses an "up" answer, forgets on invalidate; a "down" one only until it expires or a fresh check', async () => {
    const link = new FakeQkdLink();
    let now = 0;
    const realNow = performance.now.bind(performance);
    performance.now = () => now;
    try {
      const check = qkdAvailabilityFrom(link.endpoint('sae-a', 'kme-a'), {
        cacheUpMs: 60_000,
        cacheDownMs: 1000,
      });
      expect(await check(peer)).toEqual({ up: true });
      expect(await check(peer)).toEqual({ up: true });
      expect(link.calls.status).toBe(1);

      check.invalidate?.(peer);
      link.up = false;
      expect((await check(peer)).up).toBe(false);
      expect((await check(peer)).up).toBe(false);
      expect(link.calls.status).toBe(2); // the "down" answer is reused…

      link.up = true;
      expect((await check(peer)).up).toBe(false); // …for cacheDownMs,
      expect(await check(peer, { fresh: true })).toEqual({ up: true }); // unless asked fresh
      expect(link.calls.status).toBe(3);

      check.invalidate?.(peer);
      link.up = false;
      expect((await check(peer)).up).toBe(false);
      link.up = true;
      now += 1000; // expired: still answered at once, while the KME is asked again…
      expect((await check(peer)).up).toBe(false);
      expect(link.calls.status).toBe(5);
      await new Promise((r) => setImmediate(r)); // the background answer is in
      expect(await check(peer)).toEqual({ up: true }); // …and the link that came back is used
      expect(link.calls.status).toBe(5);

      // So is an expired "up" (the session that gets it tries enc_keys, whose failure falls back
      // within its own deadline)…
      link.up = false;
      now += 60_000;
      expect(await check(peer)).toEqual({ up: true });
      expect(link.calls.status).toBe(6);
      await new Promise((r) => setImmediate(r));
      expect((await check(peer)).up).toBe(false);
      expect(link.calls.status).toBe(6);
      // …but not to a fresh check: it waits for the live answer.
      link.up = true;
      check.invalidate?.(peer);
      expect(await check(peer)).toEqual({ up: true });
      link.up = false;
      now += 60_000;
      expect((await check(peer, { fresh: true })).up).toBe(false);
      expect(link.calls.status).toBe(8);
    } finally {
      performance.now = realNow;
    }
  });

  it('a KME that does not answer never stalls a session that may fall back', async () => {
    let now = 0;
    const realNow = performance.now.bind(performance);
    performance.now = () => now;
    let statusCalls = 0;
    let answer: ((v: never) => void) | undefined;
    const hanging = {
      status: () => {
        statusCalls++;
        // The first request fails (as after a timeout); later ones hang until released.
        if (statusCalls === 1) return Promise.reject(Object.assign(new Error('t'), { kind: 'timeout' }));
        return new Promise<never>((_resolve, reject) => {
          answer = () => reject(Object.assign(new Error('t'), { kind: 'timeout' }));
        });
      },
    } as unknown as Parameters<typeof qkdAvailabilityFrom>[0];
    try {
      const check = qkdAvailabilityFrom(hanging, { cacheDownMs: 1000 });
      expect(await check(peer)).toEqual({ up: false, reason: 'KME status failed (timeout)' });
      now += 5000;
      // Expired, and the re-check hangs: the answer is still immediate, and only one request is out.
      const answers = await Promise.all([check(peer), check(peer), check(peer)]);
      expect(answers.every((a) => a.up === false)).toBe(true);
      expect(statusCalls).toBe(2);
      // A caller that needs QKD waits for the live answer.
      let settled = false;
      const live = check(peer, { fresh: true }).then((a) => {
        settled = true;
        return a;
      });
      await new Promise((r) => setImmediate(r));
      expect(settled).toBe(false);
      answer?.(undefined as never);
      expect((await live).up).toBe(false);
    } finally {
      performance.now = realNow;
    }
  });

  it('a link out of keys costs the sessions no KME round trip each; a QKD minimum asks live', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    link.up = false;
    const first = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
    });
    expect(first.posture).toBe('PQC+QRNG');
    const statusAfterFirst = link.calls.status;
    const second = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
    });
    expect(second.posture).toBe('PQC+QRNG');
    expect(second.provenance).toMatchObject({ degraded: true, fallback: true });
    expect(second.provenance.reason).toMatch(/KME status failed/);
    expect(link.calls.status).toBe(statusAfterFirst);
    // The link is back: a QKD minimum does not rest on the cached "down".
    link.up = true;
    const strict = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
      minPosture: 'QKD+PQC+QRNG',
    });
    expect(strict.posture).toBe('QKD+PQC+QRNG');
    expect(link.calls.status).toBe(statusAfterFirst + 1);
  });

  it('tells its observer every KME answer, failure and markDown', async () => {
    const link = new FakeQkdLink();
    const seen: unknown[] = [];
    const check = qkdAvailabilityFrom(link.endpoint('sae-a', 'kme-a'), {
      observe: (sae, s) => seen.push([sae, s]),
    });
    await check(peer);
    check.markDown?.(peer, 'KME did not answer enc_keys (timeout)');
    check.invalidate?.(peer);
    link.up = false;
    await check(peer);
    expect(seen).toEqual([
      ['sae-b', { answered: true, storedKeyCount: 100 }],
      ['sae-b', { answered: false, error: 'KME did not answer enc_keys (timeout)' }],
      ['sae-b', { answered: false, error: 'KME status failed (unavailable)' }],
    ]);
  });

  it('shares one KME request between concurrent checks', async () => {
    const link = new FakeQkdLink();
    const check = qkdAvailabilityFrom(link.endpoint('sae-a', 'kme-a'));
    const all = await Promise.all([check(peer), check(peer), check(peer)]);
    expect(all).toEqual([{ up: true }, { up: true }, { up: true }]);
    expect(link.calls.status).toBe(1);
  });

  it.each([
    ['cacheUpMs', true],
    ['cacheDownMs', false],
  ] as const)('%s 0 asks the KME every time (link up: %s)', async (option, up) => {
    const link = new FakeQkdLink();
    link.up = up;
    const check = qkdAvailabilityFrom(link.endpoint('sae-a', 'kme-a'), { [option]: 0 });
    await check(peer);
    await check(peer);
    expect(link.calls.status).toBe(2);
  });

  it('a stale "up" ends in the enc_keys fallback: degraded, the live reason, no QKD key used', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    const first = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
    });
    expect(first.posture).toBe('QKD+PQC+QRNG'); // the KME said "up": now cached
    link.up = false;
    const getKeysBefore = link.calls.getKeys;
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(link.calls.getKeys).toBe(getKeysBefore + 1); // tried (cached "up") and failed
    expect(i.posture).toBe('PQC+QRNG');
    expect(i.provenance).toMatchObject({ degraded: true, fallback: true });
    expect(i.provenance.reason).toMatch(/QKD key request failed \(unavailable\): KME status failed/);
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    expect(Buffer.from(acc.key).equals(Buffer.from(i.key))).toBe(true);
    // The failure dropped the cached "up" and asked the KME live (the reason above): the next
    // decision reuses that "down" answer and never tries enc_keys.
    const statusBefore = link.calls.status;
    const next = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
    });
    expect(next.posture).toBe('PQC+QRNG');
    expect(link.calls.status).toBe(statusBefore);
    expect(link.calls.getKeys).toBe(getKeysBefore + 1);
  });

  it('an enc_keys the KME never answered becomes the cached "down": the next sessions do not wait', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId }); // "up" cached
    const orig = a.qkd!.getKeys.bind(a.qkd);
    a.qkd!.getKeys = async () => {
      throw Object.assign(new Error('x'), { kind: 'timeout' });
    };
    const statusBefore = link.calls.status;
    const first = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
    });
    expect(first.posture).toBe('PQC+QRNG');
    expect(first.provenance.reason).toMatch(/QKD key request failed \(timeout\)/);
    a.qkd!.getKeys = orig;
    const next = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
    });
    expect(next.posture).toBe('PQC+QRNG');
    expect(next.provenance.reason).toMatch(/KME did not answer enc_keys \(timeout\)/);
    expect(link.calls.status).toBe(statusBefore); // neither session asked the KME for status
    // A caller that needs QKD does not take that answer: it asks live, and the link is fine.
    const strict = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
      minPosture: 'QKD+PQC+QRNG',
    });
    expect(strict.posture).toBe('QKD+PQC+QRNG');
  });

  it('a stale "up" with a QKD minimum is still refused (fail closed)', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    link.up = false;
    await expect(
      a.sessions.initiate({
        agent: 'alice',
        responderAgent: 'bob',
        peer: b.identity.nodeId,
        minPosture: 'QKD+PQC+QRNG',
      }),
    ).rejects.toMatchObject({ code: 'POSTURE_UNAVAILABLE' });
  });
});

describe('pinned-peer cache', () => {
  it('a removed peer is gone at once, and re-pinning serves the new record', async () => {
    const { a, b } = await makePair();
    const id = b.identity.nodeId;
    expect((await a.peers.get(id))?.nodeId).toBe(id); // now cached
    await a.peers.remove(id);
    expect(await a.peers.get(id)).toBeUndefined();
    await expect(
      a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: id }),
    ).rejects.toMatchObject({ code: 'PEER_NOT_FOUND' });
    await a.peers.add(b.identity.bundle, { label: 'again', minPosture: 'PQC+QRNG' });
    expect(await a.peers.get(id)).toMatchObject({ nodeId: id, label: 'again', minPosture: 'PQC+QRNG' });
  });

  it('callers get their own copy', async () => {
    const { a, b } = await makePair();
    const p1 = await a.peers.require(b.identity.nodeId);
    (p1 as { label?: string }).label = 'mutated';
    expect((await a.peers.require(b.identity.nodeId)).label).toBeUndefined();
  });
});

describe('audit head written lazily', () => {
  const alice = identityFromSeed(
    new Uint8Array(96).fill(1),
    { region: 'EU', created: '2026-01-01T00:00:00.000Z' },
    fakeProvenance(true),
  );

  it('a log reopened without close (as after a crash) continues the chain without a gap', async () => {
    const store = createMemoryBackend();
    const signer = signerFromIdentity(alice);
    const first = new AuditLog({ store, entropy: new FakeEntropy(), signer, sealEvery: 1000 });
    for (let i = 0; i < 70; i++) await first.append({ type: 't', actor: 'cli', details: { i } });
    // No close/flush: the stored head is up to 64 records behind.
    const second = new AuditLog({ store, entropy: new FakeEntropy(), signer, sealEvery: 1000 });
    const rec = await second.append({ type: 't', actor: 'cli', details: { i: 70 } });
    // The 70 records the crash left unsealed are flagged first (issue #11 item 1), as seq 71.
    expect(rec.seq).toBe(72);
    await second.close();
    const records = await second.records();
    expect(records[70]).toMatchObject({
      type: 'audit.unsealed_tail_found',
      details: { from_seq: 1, through_seq: 70, count: 70, chain_ok: true },
    });
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 73 }, (_, i) => i + 1));
    expect(verifyAuditLog(records, alice.signing.publicKey)).toMatchObject({
      ok: true,
      count: 73,
      unattested: [{ from_seq: 1, through_seq: 70 }],
    });
    // close() stored the head: a third instance starts where the chain ends, with nothing to flag.
    const third = new AuditLog({ store, entropy: new FakeEntropy(), signer });
    expect((await third.append({ type: 't', actor: 'cli' })).seq).toBe(74);
    expect(third.stats().unsealedTail).toBeUndefined();
  });
});

describe('replay cache pruning in the background', () => {
  it('an admit does not wait for the prune it triggers, and the prune still runs', async () => {
    const store = createMemoryBackend();
    const t0 = 1_000_000;
    const c = new ReplayCache(store, { windowMs: 120_000 });
    for (let i = 0; i < 5; i++) expect(await c.admit('a'.repeat(32), `0${i}`, t0, t0)).toBe(true);
    const later = t0 + 200_000; // the five are now outside the window: prunable
    expect(await c.admit('b'.repeat(32), '00', later, later)).toBe(true);
    expect(await c.admit('b'.repeat(32), '00', later, later)).toBe(false);
    const rs = store.records<unknown>('replay');
    for (let i = 0; i < 100 && (await rs.entries()).length > 1; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect((await rs.entries()).map(([k]) => k)).toEqual([`${'b'.repeat(32)}:00`]);
  });
});
