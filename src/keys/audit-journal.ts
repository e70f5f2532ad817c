import type { AuditEvent, AuditRecord } from '../audit/types.js';
import type { RecordStore } from '../store/interface.js';
import type { KeyStore } from './interface.js';

/**
 * Keeps the audit log and the key store in agreement across crashes, for `key.created`,
 * `key.taken` and `key.expired`: before a key's state changes, an *intent* naming the event is written (synced);
 * after the change, the event is appended to the audit log and the intent deleted. A crash
 * anywhere leaves either nothing to do or an intent, and `reconcile()` at start settles every
 * intent left over: it looks at the key store to see whether the change happened and at the
 * audit records written since the intent to see whether its event was recorded, appends the
 * missing events (marked `reconciled: true`) and records the reconciliation itself
 * (`audit.reconciled`).
 *
 * Why intents rather than one atomic batch: the key store and the audit log are separate
 * interfaces (a key store may live on etcd, the audit chain's hashes are computed on its own
 * queue), and an intent needs from the key store only `meta()`.
 */

export type JournaledEvent = 'key.created' | 'key.taken' | 'key.expired';

/**
 * Ids per `key.expired` record: a sweep that expires thousands of keys writes a record per this
 * many (one seal-able, ~10 kB record each) rather than one per key.
 */
export const EXPIRED_IDS_PER_RECORD = 256;

/** `key_id` of a sweep's intent: it names a sweep (its `swept_at`), not one key. */
const SWEEP = '*';

export interface KeyIntent {
  type: JournaledEvent;
  key_id: string;
  actor: string;
  details: Record<string, string | number | boolean>;
  /** The audit log's length when the intent was written: its event can only come after. */
  after_seq: number;
  /** Its record key: unique, so concurrent takes of one key each have their own intent. */
  ref: string;
}

/** What the journal needs of the audit log. */
export interface JournalAudit {
  append(event: AuditEvent): Promise<AuditRecord>;
  /** Records in the chain now (seals included). */
  stats(): { records: number };
  /** Records with seq > `seq`, in order. */
  recordsAfter(seq: number): Promise<AuditRecord[]>;
}

/** What `reconcile` settled: events appended (`created`, `taken`, `expired` keys) and intents dropped. */
export interface ReconcileCounts {
  created: number;
  taken: number;
  dropped: number;
  expired: number;
}

let counter = 0;
const intentRef = (type: JournaledEvent, keyId: string): string =>
  `${type} ${keyId} ${process.pid}.${Date.now()}.${++counter}`;

export class KeyAuditJournal {
  constructor(
    private readonly intents: RecordStore<KeyIntent>,
    private readonly audit: JournalAudit,
  ) {}

  /** Writes the intent; durable when it resolves. Returns the handle for `done`/`abandon`. */
  async begin(
    type: JournaledEvent,
    keyId: string,
    actor: string,
    details: KeyIntent['details'],
  ): Promise<KeyIntent> {
    const intent: KeyIntent = {
      type,
      key_id: keyId,
      actor,
      details,
      after_seq: this.audit.stats().records,
      ref: intentRef(type, keyId),
    };
    await this.intents.put(intent.ref, intent);
    return intent;
  }

  /** The change happened: record its event, then drop the intent. */
  async done(intent: KeyIntent): Promise<void> {
    await this.audit.append({
      type: intent.type,
      actor: intent.actor,
      details: { key_id: intent.key_id, ...intent.details },
    });
    await this.intents.del(intent.ref);
  }

  /**
   * Before a sweep: its intent, naming the sweep by its time (`now` of `sweepExpired`, which is
   * the `closedAt` of every key it expires), so `reconcile` can find the keys after a crash.
   */
  beginExpiry(at: Date): Promise<KeyIntent> {
    return this.begin('key.expired', SWEEP, 'system', { swept_at: at.toISOString() });
  }

  /** The sweep is over: its keys' `key.expired` records, batched, then the intent dropped. */
  async expired(intent: KeyIntent, ids: readonly string[]): Promise<void> {
    await this.appendExpired(ids, intent.details.swept_at as string, false);
    await this.intents.del(intent.ref);
  }

  /**
   * `key.expired` for keys closed outside a sweep (a take that found its key past expiry), not
   * journaled: the key's state already says expired, and a crash here loses only this record.
   */
  async expiredOnTake(id: string, actor: string): Promise<void> {
    await this.audit.append({
      type: 'key.expired',
      actor,
      details: { count: 1, key_ids: [id], on: 'take' },
    });
  }

  private async appendExpired(ids: readonly string[], sweptAt: string, reconciled: boolean): Promise<void> {
    for (let i = 0; i < ids.length; i += EXPIRED_IDS_PER_RECORD) {
      const chunk = ids.slice(i, i + EXPIRED_IDS_PER_RECORD);
      await this.audit.append({
        type: 'key.expired',
        actor: 'system',
        details: {
          count: chunk.length,
          key_ids: [...chunk],
          swept_at: sweptAt,
          ...(reconciled ? { reconciled: true } : {}),
        },
      });
    }
  }

  /** The change did not happen (the store refused it): drop the intent. */
  async abandon(intent: KeyIntent): Promise<void> {
    await this.intents.del(intent.ref).catch(() => undefined);
  }

  /**
   * Settles intents left by a crash. Resolves with how many events were missing and appended.
   * Run once at start, before the API accepts requests.
   */
  async reconcile(keys: KeyStore): Promise<ReconcileCounts> {
    const pending = await this.intents.entries();
    const out = { created: 0, taken: 0, dropped: 0, expired: 0 };
    if (pending.length === 0) return out;
    const from = Math.min(...pending.map(([, i]) => i.after_seq));
    const recorded = new Set<string>();
    for (const r of await this.audit.recordsAfter(from)) {
      const id = r.details.key_id;
      if (typeof id === 'string') recorded.add(`${r.type} ${id}`);
      const ids = r.type === 'key.expired' ? r.details.key_ids : undefined;
      if (Array.isArray(ids))
        for (const x of ids) if (typeof x === 'string') recorded.add(`key.expired ${x}`);
    }
    for (const [ref, intent] of pending) {
      if (intent.type === 'key.expired') {
        out.expired += await this.reconcileSweep(keys, intent, recorded);
        await this.intents.del(ref);
        continue;
      }
      const key = `${intent.type} ${intent.key_id}`;
      const meta = await keys.meta(intent.key_id).catch(() => undefined);
      const happened = intent.type === 'key.created' ? meta !== undefined : meta?.state === 'taken';
      if (!happened) out.dropped++;
      else if (!recorded.has(key)) {
        await this.audit.append({
          type: intent.type,
          actor: intent.actor,
          details: { key_id: intent.key_id, ...intent.details, reconciled: true },
        });
        recorded.add(key);
        if (intent.type === 'key.created') out.created++;
        else out.taken++;
      }
      await this.intents.del(ref);
    }
    if (out.created + out.taken + out.expired > 0) {
      await this.audit.append({
        type: 'audit.reconciled',
        actor: 'system',
        details: {
          key_created: out.created,
          key_taken: out.taken,
          key_expired: out.expired,
          intents_dropped: out.dropped,
        },
      });
    }
    return out;
  }

  /**
   * A sweep interrupted by a crash: the keys it expired are those closed as expired at its
   * `swept_at` (see `beginExpiry`); the ones without a `key.expired` record get one. Reads the
   * expired keys still retained, once per interrupted sweep — only after a crash.
   */
  private async reconcileSweep(keys: KeyStore, intent: KeyIntent, recorded: Set<string>): Promise<number> {
    const at = intent.details.swept_at;
    if (typeof at !== 'string') return 0;
    const missing: string[] = [];
    for (let after: string | undefined; ; ) {
      const page = await keys.list({ state: 'expired', limit: 1000, ...(after ? { after } : {}) });
      for (const m of page) {
        if (m.closedAt === at && !recorded.has(`key.expired ${m.id}`)) missing.push(m.id);
      }
      if (page.length < 1000) break;
      after = page.at(-1)!.id;
    }
    await this.appendExpired(missing, at, true);
    for (const id of missing) recorded.add(`key.expired ${id}`);
    return missing.length;
  }
}
