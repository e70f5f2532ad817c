import type { AuditEvent, AuditRecord } from '../audit/types.js';
import type { RecordStore } from '../store/interface.js';
import type { KeyStore } from './interface.js';

/**
 * Keeps the audit log and the key store in agreement across crashes, for `key.created` and
 * `key.taken`: before a key's state changes, an *intent* naming the event is written (synced);
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

export type JournaledEvent = 'key.created' | 'key.taken';

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

  /** The change did not happen (the store refused it): drop the intent. */
  async abandon(intent: KeyIntent): Promise<void> {
    await this.intents.del(intent.ref).catch(() => undefined);
  }

  /**
   * Settles intents left by a crash. Resolves with how many events were missing and appended.
   * Run once at start, before the API accepts requests.
   */
  async reconcile(keys: KeyStore): Promise<{ created: number; taken: number; dropped: number }> {
    const pending = await this.intents.entries();
    const out = { created: 0, taken: 0, dropped: 0 };
    if (pending.length === 0) return out;
    const from = Math.min(...pending.map(([, i]) => i.after_seq));
    const recorded = new Set<string>();
    for (const r of await this.audit.recordsAfter(from)) {
      const id = r.details.key_id;
      if (typeof id === 'string') recorded.add(`${r.type} ${id}`);
    }
    for (const [ref, intent] of pending) {
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
    if (out.created + out.taken > 0) {
      await this.audit.append({
        type: 'audit.reconciled',
        actor: 'system',
        details: { key_created: out.created, key_taken: out.taken, intents_dropped: out.dropped },
      });
    }
    return out;
  }
}
