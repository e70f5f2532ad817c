import type {
  KeyListQuery,
  KeyMetadata,
  KeyState,
  KeyStore,
  NewKey,
  SweepOptions,
  TakeOptions,
} from './interface.js';
import {
  aborted,
  accessDecision,
  alreadyDelivered,
  checkHold,
  activeMetadata,
  checkKeyId,
  checkNow,
  checkPurgeLimit,
  closedMetadata,
  emptyCounts,
  expired,
  holdDigest,
  isDue,
  keyExists,
  listPlan,
  matchesQuery,
  notFound,
  storeClosed,
  unknownCursor,
} from './rules.js';

interface Entry {
  meta: KeyMetadata;
  /** Plaintext copy owned by the store; zero-filled and dropped when the key closes. */
  material: Uint8Array | null;
  /** Material kept after a take for one redelivery (TakeOptions.hold). */
  held?: { material: Uint8Array; digest: string; until: number };
}

/**
 * In-memory KeyStore for tests and demos. Same contract as `LevelKeyStore`, minus durability.
 * Every method is a single synchronous step after its argument checks, so JavaScript's
 * run-to-completion makes `take` exactly-once without a lock. Material is copied in on `put`,
 * copied out on `read`/`take`, and zero-filled when destroyed (take, expiry, delete, close).
 */
export class MemoryKeyStore implements KeyStore {
  /** Map iteration order is insertion order, which is creation order. */
  readonly #keys = new Map<string, Entry>();
  #closed = false;

  async put(key: NewKey): Promise<KeyMetadata> {
    this.#assertOpen();
    const meta = activeMetadata(key);
    if (this.#keys.has(meta.id)) throw keyExists(meta.id);
    this.#keys.set(meta.id, { meta, material: Uint8Array.from(key.material) });
    return structuredClone(meta);
  }

  async take(
    id: string,
    now: Date = new Date(),
    options: TakeOptions = {},
  ): Promise<{ meta: KeyMetadata; material: Uint8Array }> {
    checkHold(options.hold);
    const entry = this.#access(id, now);
    if (options.signal?.aborted) throw aborted(id);
    const material = entry.material!;
    entry.material = null;
    entry.meta = closedMetadata(entry.meta, 'taken', now);
    if (options.hold) {
      entry.held = {
        material: Uint8Array.from(material),
        digest: holdDigest(options.hold.token),
        until: options.hold.until.getTime(),
      };
    }
    // Hand out the buffer itself: the store keeps no reference, so nothing is left to wipe.
    return { meta: structuredClone(entry.meta), material };
  }

  async redeliver(
    id: string,
    token: string,
    now: Date = new Date(),
  ): Promise<{ meta: KeyMetadata; material: Uint8Array }> {
    this.#assertOpen();
    checkKeyId(id);
    checkNow(now);
    const entry = this.#keys.get(id);
    if (!entry) throw notFound(id);
    const held = entry.held;
    if (!held || held.digest !== holdDigest(token) || held.until <= now.getTime()) throw alreadyDelivered(id);
    entry.held = undefined;
    return { meta: structuredClone(entry.meta), material: held.material };
  }

  async read(id: string, now: Date = new Date()): Promise<{ meta: KeyMetadata; material: Uint8Array }> {
    const entry = this.#access(id, now);
    return { meta: structuredClone(entry.meta), material: Uint8Array.from(entry.material!) };
  }

  async meta(id: string): Promise<KeyMetadata> {
    this.#assertOpen();
    checkKeyId(id);
    const entry = this.#keys.get(id);
    if (!entry) throw notFound(id);
    return structuredClone(entry.meta);
  }

  async list(query?: KeyListQuery): Promise<KeyMetadata[]> {
    this.#assertOpen();
    const plan = listPlan(query);
    if (plan.after !== undefined && !this.#keys.has(plan.after)) throw unknownCursor(plan.after);
    const out: KeyMetadata[] = [];
    let started = plan.after === undefined;
    for (const [id, entry] of this.#keys) {
      if (!started) {
        started = id === plan.after;
        continue;
      }
      if (matchesQuery(entry.meta, plan)) out.push(structuredClone(entry.meta));
      if (out.length >= plan.limit) break;
    }
    return out;
  }

  async delete(id: string): Promise<void> {
    this.#assertOpen();
    checkKeyId(id);
    const entry = this.#keys.get(id);
    if (!entry) throw notFound(id);
    entry.material?.fill(0);
    entry.held?.material.fill(0);
    this.#keys.delete(id);
  }

  async sweepExpired(now: Date = new Date(), options: SweepOptions = {}): Promise<number> {
    this.#assertOpen();
    checkNow(now);
    const ids: string[] = [];
    for (const entry of this.#keys.values()) {
      if (entry.held && entry.held.until <= now.getTime()) {
        entry.held.material.fill(0);
        entry.held = undefined;
      }
      if (!isDue(entry.meta, now)) continue;
      this.#expire(entry, now);
      ids.push(entry.meta.id);
    }
    if (ids.length > 0) options.onExpired?.(ids);
    return ids.length;
  }

  async purgeClosed(before: Date, limit = 1000): Promise<number> {
    this.#assertOpen();
    checkNow(before);
    checkPurgeLimit(limit, 1000);
    // Oldest closed first, like the LevelDB store's index (a test store: a full scan is fine).
    const due = [...this.#keys.values()]
      .filter((e) => e.meta.state !== 'active' && Date.parse(e.meta.closedAt!) <= before.getTime())
      .sort((a, b) => Date.parse(a.meta.closedAt!) - Date.parse(b.meta.closedAt!))
      .slice(0, limit);
    for (const entry of due) {
      entry.held?.material.fill(0);
      this.#keys.delete(entry.meta.id);
    }
    return due.length;
  }

  async counts(): Promise<Record<KeyState, number>> {
    this.#assertOpen();
    const counts = emptyCounts();
    for (const entry of this.#keys.values()) counts[entry.meta.state]++;
    return counts;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const entry of this.#keys.values()) {
      entry.material?.fill(0);
      entry.held?.material.fill(0);
    }
    this.#keys.clear();
  }

  /** Checks for take/read; expires a due key (and throws KEY_EXPIRED). */
  #access(id: string, now: Date): Entry {
    this.#assertOpen();
    checkKeyId(id);
    checkNow(now);
    const entry = this.#keys.get(id);
    if (!entry) throw notFound(id);
    if (accessDecision(entry.meta, now) === 'expire') {
      this.#expire(entry, now);
      throw expired(id);
    }
    return entry;
  }

  #expire(entry: Entry, now: Date): void {
    entry.material?.fill(0);
    entry.material = null;
    entry.meta = closedMetadata(entry.meta, 'expired', now);
  }

  #assertOpen(): void {
    if (this.#closed) throw storeClosed();
  }
}
