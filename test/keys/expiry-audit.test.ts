import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import type { AuditEvent, AuditRecord } from '../../src/audit/types.js';
import { isQkmError } from '../../src/core/errors.js';
import { EXPIRED_IDS_PER_RECORD, KeyAuditJournal, type KeyIntent } from '../../src/keys/audit-journal.js';
import { KeyService } from '../../src/keys/service.js';
import type { StorageBackend } from '../../src/store/interface.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { FakeEntropy } from '../session/fakes.js';
import { T0 } from './helpers.js';

/**
 * Expiry is on the audit record (#16): a sweep writes `key.expired` records of at most
 * EXPIRED_IDS_PER_RECORD ids each (a mass expiry does not write one record per key), a take that
 * finds its key expired records it too, a crash between the sweep and its records is reconciled
 * at the next start, and the history outlives the retention purge of the keys' metadata.
 */

const secs = (s: number) => new Date(T0.getTime() + s * 1000);

describe('key.expired audit records', () => {
  let backend: StorageBackend;
  let audit: AuditLog;
  let clock: Date;
  let service: KeyService;

  const build = (
    auditLike: ConstructorParameters<typeof KeyAuditJournal>[1] = audit,
    retentionSeconds = 3600,
  ) =>
    new KeyService({
      store: backend.keys,
      entropy: new FakeEntropy(),
      now: () => clock,
      retentionSeconds,
      journal: new KeyAuditJournal(backend.records<KeyIntent>('key-intents'), auditLike),
    });

  beforeEach(() => {
    backend = createMemoryBackend();
    audit = new AuditLog({ store: backend, entropy: new FakeEntropy() });
    clock = T0;
    service = build();
  });
  afterEach(async () => {
    await audit.close();
    await backend.close();
  });

  const expiredRecords = async () => (await audit.records()).filter((r) => r.type === 'key.expired');
  const idsOf = (recs: AuditRecord[]) => recs.flatMap((r) => r.details.key_ids as string[]);

  it('a mass expiry is a few batched records naming every key once', async () => {
    const n = 2 * EXPIRED_IDS_PER_RECORD + 30;
    const made: string[] = [];
    for (let i = 0; i < n; i++) made.push((await service.create({ size: 16, ttlSeconds: 10 })).id);
    const survivor = await service.create({ size: 16, ttlSeconds: 100 });
    clock = secs(10);
    expect(await service.sweep()).toBe(n);
    const recs = await expiredRecords();
    expect(recs).toHaveLength(3);
    for (const r of recs) {
      expect(r.actor).toBe('system');
      expect(r.details.count).toBe((r.details.key_ids as string[]).length);
      expect(r.details.count).toBeLessThanOrEqual(EXPIRED_IDS_PER_RECORD);
      expect(r.details.swept_at).toBe(clock.toISOString());
    }
    expect(idsOf(recs).toSorted()).toEqual(made.toSorted());
    expect(idsOf(recs)).not.toContain(survivor.id);
    // A sweep with nothing due writes nothing, and leaves no intent behind.
    await service.sweep();
    expect(await expiredRecords()).toHaveLength(3);
    expect(await backend.records('key-intents').entries()).toEqual([]);
  });

  it('a take that finds its key expired records the expiry; a second take does not record it again', async () => {
    const k = await service.create({ size: 16, ttlSeconds: 5, owner: 'agent-a' });
    clock = secs(5);
    const err = await service.take(k.id, 'agent-a').catch((e: unknown) => e);
    expect(isQkmError(err, 'KEY_EXPIRED')).toBe(true);
    await service.take(k.id, 'agent-a').catch(() => undefined);
    await service.sweep(); // already expired: not swept again
    const recs = await expiredRecords();
    expect(recs).toHaveLength(1);
    expect(recs[0]!.details).toEqual({ count: 1, key_ids: [k.id], on: 'take' });
    expect(recs[0]!.actor).toBe('agent-a');
  });

  it('the history outlives the purge: created, taken or expired stay on record for a purged key', async () => {
    const taken = await service.create({ size: 16, ttlSeconds: 10 });
    const lapsed = await service.create({ size: 16, ttlSeconds: 10 });
    await service.take(taken.id);
    clock = secs(10);
    await service.sweep();
    clock = secs(10 + 3600);
    await service.sweep();
    expect((await service.counts()).expired + (await service.counts()).taken).toBe(0);
    const recs = await audit.records();
    const fate = (id: string) => recs.filter((r) => r.details.key_id === id || idsOf([r]).includes(id));
    expect(fate(taken.id).map((r) => r.type)).toEqual(['key.created', 'key.taken']);
    expect(fate(lapsed.id).map((r) => r.type)).toEqual(['key.created', 'key.expired']);
  });

  it('a sweep whose records were lost (crash, or the audit log failing) is reconciled once at the next start', async () => {
    const made: string[] = [];
    for (let i = 0; i < EXPIRED_IDS_PER_RECORD + 5; i++) {
      made.push((await service.create({ size: 16, ttlSeconds: 10 })).id);
    }
    // The first key.expired record reaches the log, then the log fails (the process dies here).
    let expiredAppends = 0;
    const failing = {
      append: (e: AuditEvent) => {
        if (e.type === 'key.expired' && ++expiredAppends > 1) return Promise.reject(new Error('disk gone'));
        return audit.append(e);
      },
      stats: () => audit.stats(),
      recordsAfter: (seq: number) => audit.recordsAfter(seq),
    };
    clock = secs(10);
    await expect(build(failing).sweep()).rejects.toThrow('disk gone');
    expect(await expiredRecords()).toHaveLength(1);
    expect(await backend.records('key-intents').entries()).toHaveLength(1);

    // Next start: the missing ids are recorded (marked reconciled), none twice, and that is audited.
    const restarted = build();
    expect(await restarted.reconcileAudit()).toEqual({ created: 0, taken: 0, dropped: 0, expired: 5 });
    const recs = await expiredRecords();
    expect(recs).toHaveLength(2);
    expect(recs[1]!.details).toMatchObject({ count: 5, reconciled: true, swept_at: clock.toISOString() });
    expect(idsOf(recs).toSorted()).toEqual(made.toSorted());
    expect((await audit.records()).at(-1)).toMatchObject({
      type: 'audit.reconciled',
      details: { key_expired: 5 },
    });
    expect(await restarted.reconcileAudit()).toEqual({ created: 0, taken: 0, dropped: 0, expired: 0 });
  });
});
