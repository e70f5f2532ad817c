import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AuditLog, type AuditSigner, signerFromIdentity } from '../../src/audit/log.js';
import type { AuditRecord } from '../../src/audit/types.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { identityFromSeed } from '../../src/session/identity.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { FakeEntropy, fakeProvenance } from '../session/fakes.js';

/**
 * Readers of the audit log (`GET /v1/audit` → `sealedPage`) share seals (#16): concurrent flushes
 * join the seal queued or running, a page inside the sealed part is served without a seal, and a
 * page reaching the tail still comes back sealed through every append that resolved before it.
 */

const alice = identityFromSeed(
  new Uint8Array(96).fill(1),
  { region: 'EU', created: '2026-01-01T00:00:00.000Z' },
  fakeProvenance(true),
);

function countingSigner(): AuditSigner & { count: number } {
  const s = signerFromIdentity(alice);
  const c = {
    ...s,
    count: 0,
    sign: (m: Uint8Array) => {
      c.count++;
      return s.sign(m);
    },
  };
  return c;
}

function newLog(sealEvery = 1000) {
  const signer = countingSigner();
  const log = new AuditLog({ store: createMemoryBackend(), entropy: new FakeEntropy(), signer, sealEvery });
  return { log, signer };
}

const append = (log: AuditLog, i: number) => log.append({ type: 'test.event', actor: 'cli', details: { i } });

describe('audit seals shared by readers', () => {
  it('concurrent flushes write one seal, and it covers every append resolved before them', async () => {
    const { log, signer } = newLog();
    for (let i = 0; i < 10; i++) await append(log, i);
    const seals = await Promise.all(Array.from({ length: 8 }, () => log.flush()));
    expect(signer.count).toBe(1);
    expect(new Set(seals.map((s) => s?.seq))).toEqual(new Set([11]));
    expect(seals[0]!.details.through_seq).toBe(10);
    const all = await log.records();
    expect(verifyAuditLog(all, alice.signing.publicKey, { requireSealed: true })).toMatchObject({ ok: true });
    // Nothing new: a flush signs nothing.
    expect(await log.flush()).toBeUndefined();
    expect(signer.count).toBe(1);
  });

  it('a flush called while a seal is running joins it; one after it has finished seals again', async () => {
    const { log, signer } = newLog();
    await append(log, 0);
    const first = log.flush();
    const joined = log.flush();
    expect(await joined).toEqual(await first);
    await append(log, 1);
    const second = await log.flush();
    expect(second!.seq).toBe(4);
    expect(second!.details.through_seq).toBe(3);
    expect(signer.count).toBe(2);
  });

  it('a flush does not wait for a backlog of appends queued after the records it must cover', async () => {
    const { log } = newLog();
    await append(log, 0);
    const backlog = Array.from({ length: 30 }, (_, i) => append(log, i + 1));
    const seal = await log.flush();
    // Record 1 had resolved; the backlog's first append had started. The rest come after the seal.
    expect(seal!.details.through_seq).toBeLessThanOrEqual(2);
    await Promise.all(backlog);
    await log.flush();
    const all = await log.records();
    expect(all).toHaveLength(33);
    expect(verifyAuditLog(all, alice.signing.publicKey, { requireSealed: true })).toMatchObject({ ok: true });
  });

  it('close seals appends still queued when it is called: a clean restart finds no unsealed tail', async () => {
    const store = createMemoryBackend();
    const signer = countingSigner();
    const log = new AuditLog({ store, entropy: new FakeEntropy(), signer, sealEvery: 1000 });
    await append(log, 0);
    const pending = Array.from({ length: 10 }, (_, i) => append(log, i + 1));
    await log.close();
    await Promise.all(pending);
    const reopened = new AuditLog({ store, entropy: new FakeEntropy(), signer, sealEvery: 1000 });
    const stats = await reopened.open();
    expect(stats.unsealedTail).toBeUndefined();
    expect(stats.sealedThrough).toBe(12);
    const all = await reopened.records();
    expect(verifyAuditLog(all, alice.signing.publicKey, { requireSealed: true })).toMatchObject({ ok: true });
  });

  it('a page inside the sealed part is served without a seal; one reaching the tail is sealed', async () => {
    const { log, signer } = newLog();
    for (let i = 0; i < 20; i++) await append(log, i);
    await log.flush(); // seal = record 21
    for (let i = 20; i < 25; i++) await append(log, i); // 22..26 unsealed
    expect(signer.count).toBe(1);
    const inside = await log.sealedPage({ fromSeq: 1, limit: 21 });
    expect(inside.map((r) => r.seq)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    expect(signer.count).toBe(1);
    const tail = await log.sealedPage({ fromSeq: 20, limit: 100 });
    expect(signer.count).toBe(2);
    expect(tail.at(-1)).toMatchObject({ seq: 27, type: 'audit.seal', details: { through_seq: 26 } });
    // Past the head, and with nothing unsealed: no seal either.
    expect(await log.sealedPage({ fromSeq: 28, limit: 10 })).toEqual([]);
    expect(await log.sealedPage({ fromSeq: 1, limit: 1000 })).toHaveLength(27);
    expect(signer.count).toBe(2);
  });

  it('property: any interleaving of appends and pages keeps the chain verifiable, and each page is sealed through what had resolved', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('append' as const), n: fc.integer({ min: 1, max: 4 }) }),
            fc.record({
              op: fc.constant('page' as const),
              from: fc.integer({ min: 1, max: 40 }),
              limit: fc.integer({ min: 1, max: 30 }),
            }),
          ),
          { maxLength: 25 },
        ),
        fc.integer({ min: 2, max: 8 }),
        async (steps, sealEvery) => {
          const { log } = newLog(sealEvery);
          const inFlight: Array<Promise<unknown>> = [];
          const checks: Array<Promise<void>> = [];
          let resolvedMax = 0;
          let i = 0;
          for (const s of steps) {
            if (s.op === 'append') {
              // Not awaited: appends and pages overlap, as requests do.
              for (let k = 0; k < s.n; k++) {
                const p = append(log, i++).then((r) => {
                  resolvedMax = Math.max(resolvedMax, r.seq);
                });
                inFlight.push(p);
              }
              if (i % 3 === 0) await Promise.all(inFlight);
            } else {
              const before = resolvedMax;
              checks.push(
                log.sealedPage({ fromSeq: s.from, limit: s.limit }).then((page: AuditRecord[]) => {
                  expect(page.map((r) => r.seq)).toEqual(page.map((_, j) => s.from + j));
                  // Every record of the page that had resolved before the call is under a seal.
                  if (page.some((r) => r.seq <= before)) {
                    expect(log.stats().sealedThrough).toBeGreaterThanOrEqual(
                      Math.min(before, s.from + s.limit - 1),
                    );
                  }
                }),
              );
            }
          }
          await Promise.all([...inFlight, ...checks]);
          await log.flush();
          const all = await log.records();
          expect(verifyAuditLog(all, alice.signing.publicKey, { requireSealed: true })).toMatchObject({
            ok: true,
          });
        },
      ),
      { numRuns: 30 },
    );
  });
});
