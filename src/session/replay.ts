import type { RecordStore, StorageBackend } from '../store/interface.js';

interface ReplayEntry {
  /** Epoch ms after which the handshake's timestamp is outside the window anyway. */
  expires: number;
}

/**
 * Handshake replay cache, persisted in the store (namespace `replay`) so a restart does not
 * reopen replays. An entry only has to outlive the timestamp window: after that the freshness
 * check rejects the handshake by itself, so entries are pruned then.
 */
export class ReplayCache {
  private readonly records: RecordStore<ReplayEntry>;
  private lastPrune = 0;
  private pruning: Promise<number> | undefined;

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
    this.maybePrune(now);
    return this.records.putIfAbsent(`${initiator}:${nonceHex}`, { expires: timestamp + this.opts.windowMs });
  }

  /** Deletes entries whose handshakes could no longer pass the freshness check. Returns how many. */
  async prune(now: number): Promise<number> {
    this.lastPrune = now;
    let n = 0;
    for (const [k, v] of await this.records.entries()) {
      if (v.expires < now - 1000) {
        await this.records.del(k);
        n++;
      }
    }
    return n;
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
