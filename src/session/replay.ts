import type { RecordStore, StorageBackend } from '../store/interface.js';

interface ReplayEntry {
  /** Epoch ms after which the handshake's timestamp is outside the window anyway. */
  expires: number;
}

/** A replay-cache admission: decided at once, durable when `durable` resolves. */
export interface Admission {
  admitted: boolean;
  /** Resolves once the entry is synced to the store (at once when not admitted). */
  durable: Promise<void>;
}

/**
 * Handshake replay cache, persisted in the store (namespace `replay`) so a restart does not
 * reopen replays. An entry only has to outlive the timestamp window: after that the freshness
 * check rejects the handshake by itself, so entries are pruned then.
 *
 * Admission is decided against an in-memory mirror of the namespace (loaded once; LevelDB's lock
 * makes this process its only writer), so the synced write can start at once and overlap the
 * responder's decapsulation instead of preceding it. One ReplayCache per store.
 */
export class ReplayCache {
  private readonly records: RecordStore<ReplayEntry>;
  private lastPrune = 0;
  private pruning: Promise<number> | undefined;
  private mirror: Map<string, number> | undefined;
  private loading: Promise<Map<string, number>> | undefined;

  constructor(
    store: StorageBackend,
    private readonly opts: { windowMs: number; pruneEveryMs?: number },
  ) {
    this.records = store.records<ReplayEntry>('replay');
  }

  /**
   * Records (initiator, nonce) atomically and durably; resolves false if it was already seen.
   * `timestamp` is the handshake's own (already window-checked) timestamp.
   */
  async admit(initiator: string, nonceHex: string, timestamp: number, now: number): Promise<boolean> {
    const a = await this.reserve(initiator, nonceHex, timestamp, now);
    await a.durable;
    return a.admitted;
  }

  /**
   * Like admit, but resolves as soon as admission is decided, with the synced write under way.
   * Of concurrent callers with the same key exactly one is admitted. If the write fails the
   * reservation is released (so the same handshake can be retried) and `durable` rejects: the
   * caller must not accept the handshake before `durable` resolves.
   */
  async reserve(initiator: string, nonceHex: string, timestamp: number, now: number): Promise<Admission> {
    const mirror = this.mirror ?? (await this.load());
    this.maybePrune(now);
    const key = `${initiator}:${nonceHex}`;
    if (mirror.has(key)) return { admitted: false, durable: Promise.resolve() };
    const expires = timestamp + this.opts.windowMs;
    mirror.set(key, expires);
    const durable = this.records.put(key, { expires });
    durable.catch(() => {
      if (mirror.get(key) === expires) mirror.delete(key);
    });
    return { admitted: true, durable };
  }

  /** Deletes entries whose handshakes could no longer pass the freshness check. Returns how many. */
  async prune(now: number): Promise<number> {
    this.lastPrune = now;
    const mirror = this.mirror ?? (await this.load());
    let n = 0;
    for (const [k, expires] of [...mirror]) {
      if (expires < now - 1000) {
        await this.records.del(k);
        mirror.delete(k);
        n++;
      }
    }
    return n;
  }

  /** Reads the namespace once; concurrent first callers share the read. */
  private load(): Promise<Map<string, number>> {
    this.loading ??= this.records.entries().then(
      (rows) => {
        this.mirror ??= new Map(rows.map(([k, v]) => [k, v.expires]));
        return this.mirror;
      },
      (err: unknown) => {
        this.loading = undefined; // the store may come back: retry on the next call
        throw err;
      },
    );
    return this.loading;
  }

  /**
   * Starts a prune when one is due, without waiting for it: pruning deletes one synced entry at a
   * time and must not stall the handshake that happened to trigger it. Safe to run alongside
   * `admit`: it only deletes entries whose handshakes the freshness check already rejects, so no
   * admit can depend on them.
   */
  private maybePrune(now: number): void {
    if (this.pruning || now - this.lastPrune < (this.opts.pruneEveryMs ?? 60_000)) return;
    this.lastPrune = now;
    this.pruning = this.prune(now)
      .catch(() => 0) // retried at the next due time; entries only accumulate meanwhile
      .finally(() => {
        this.pruning = undefined;
      });
  }
}
