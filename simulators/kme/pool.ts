/**
 * One KME's key store: a FIFO pool of unassigned link keys ("units", all of the link's key size)
 * and the keys already handed to a master and waiting for their slave(s).
 *
 * Invariants (tested in test/simulators/kme-pool.test.ts):
 * - a unit is in at most one place: the pool, a reservation, or gone;
 * - a reservation is released only by its slave(s) fetching it, each slave once — a new request
 *   never discards it; it counts toward capacity so an absent slave cannot grow memory without
 *   bound (the pair then stops accepting link keys, and enc_keys answers 503);
 * - every operation is all-or-nothing: if any requested unit or key is missing, nothing changes.
 */
import { randomUUID } from 'node:crypto';
import type { LinkKey } from './types.js';

export interface PoolUnit {
  id: string;
  bytes: Buffer;
}

/** How a delivered key was built from pool units; sent to the peer KME so it builds the same key. */
export interface KeyAssignment {
  key_ID: string;
  /** Absent when the key is exactly one whole unit whose ID is `key_ID` (the common case). */
  unit_IDs?: string[];
  /** Bits; a multiple of 8. */
  size: number;
}

export interface ComposedKey {
  keyId: string;
  key: Buffer;
}

interface Reservation {
  master: string;
  /** Every slave the key was assigned to (a short list: 1 + additional_slave_SAE_IDs). */
  slaves: readonly string[];
  /** Slaves that have not fetched the key yet. */
  pending: string[];
  key: Buffer;
  units: number;
}

export type ClaimResult =
  | { ok: true; keys: ComposedKey[] }
  | { ok: false; reason: 'not-found' | 'unauthorized' | 'duplicate' };

/**
 * Everything the pool knows under one ID: a unit waiting in the pool (`live`), or a key held for
 * its slave(s) (`res`). One map for both means one hash lookup per step of a key's life — on a
 * busy pair these lookups were the pool's whole cost.
 */
interface Entry {
  id: string;
  bytes: Buffer;
  /** In the pool, free to be assigned. */
  live: boolean;
  /** Set once the key is held for its slave(s). */
  res: Reservation | undefined;
  /** The last call that visited this entry: finds an ID repeated within one call without a Set. */
  stamp: number;
}

/** Link-key bytes are copied into slabs of this many bytes (one allocation per ~128 units, not per block). */
const SLAB_BYTES = 4096;

export class KeyPool {
  readonly unitBits: number;
  readonly maxKeyCount: number;
  private readonly byId = new Map<string, Entry>();
  private pooled = 0;
  private reservedKeys = 0;
  private reservedUnits = 0;
  /**
   * Pooled entries in arrival order, consumed from `head`. Entries that leave another way
   * (taken by ID, dropped) stay behind with `live = false` and are skipped; this keeps
   * `takeOldest` O(count) (iterating the Map would walk over every deleted slot).
   */
  private order: Entry[] = [];
  private head = 0;
  /** Dead entries after `head`, so the list is compacted before it outgrows the pool. */
  private stale = 0;
  private stampCounter = 0;
  private slab: Buffer = Buffer.alloc(0);
  private slabUsed = 0;

  constructor(unitBits: number, maxKeyCount: number) {
    if (!Number.isInteger(unitBits) || unitBits <= 0 || unitBits % 8 !== 0) {
      throw new RangeError('unitBits must be a positive multiple of 8');
    }
    if (!Number.isInteger(maxKeyCount) || maxKeyCount < 1) throw new RangeError('maxKeyCount must be >= 1');
    this.unitBits = unitBits;
    this.maxKeyCount = maxKeyCount;
  }

  /** Unassigned units: `stored_key_count`. */
  get storedCount(): number {
    return this.pooled;
  }

  /** Keys waiting for a slave. */
  get reservedKeyCount(): number {
    return this.reservedKeys;
  }

  /** How many more units this pool can take: capacity minus pool minus reserved. */
  get freeCapacity(): number {
    return Math.max(0, this.maxKeyCount - this.pooled - this.reservedUnits);
  }

  /** True if `id` is a unit in the pool (not yet assigned). */
  hasUnit(id: string): boolean {
    return this.byId.get(id)?.live === true;
  }

  /** Drops units for good (the peer no longer has them, so they can never form a shared key). */
  discard(units: readonly PoolUnit[]): void {
    for (const u of units) u.bytes.fill(0);
  }

  /** True if `id` is a unit in the pool or a key held for a slave. */
  has(id: string): boolean {
    return this.byId.has(id);
  }

  /**
   * Called (synchronously) whenever units or reservations leave, i.e. capacity frees up. One
   * listener; the pair's feeder uses it to resume a paused supply.
   */
  onFreed: (() => void) | undefined;

  /**
   * Adds link keys (copies the bytes). The caller (the pair's feeder) has already trimmed the
   * block to the capacity of both ends: over capacity, or a key of the wrong length, throws. A key
   * whose ID this pool already knows (stored or reserved), or that repeats within the block, is
   * skipped; the skipped IDs are returned so the feeder can keep both pools alike.
   */
  accept(keys: readonly LinkKey[]): string[] {
    if (keys.length > this.freeCapacity) throw new RangeError('block exceeds pool capacity');
    const unitBytes = this.unitBits / 8;
    for (const k of keys) {
      if (k.key.length !== unitBytes) throw new RangeError('link key has the wrong length');
    }
    const skipped: string[] = [];
    const { byId, order } = this;
    // A plain loop: this runs for every link key at both ends of an unthrottled link.
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      const id = k.keyId;
      if (byId.has(id)) {
        skipped.push(id);
        continue;
      }
      const bytes = this.carve(unitBytes);
      bytes.set(k.key);
      const entry: Entry = { id, bytes, live: true, res: undefined, stamp: 0 };
      byId.set(id, entry);
      order.push(entry);
      this.pooled++;
    }
    return skipped;
  }

  /**
   * A zeroed region of `n` bytes for one unit. Units are views into shared slabs, each its own
   * region, so wiping one never touches another; one allocation serves many blocks.
   */
  private carve(n: number): Buffer {
    if (this.slabUsed + n > this.slab.length) {
      this.slab = Buffer.alloc(Math.max(SLAB_BYTES, n));
      this.slabUsed = 0;
    }
    const bytes = this.slab.subarray(this.slabUsed, this.slabUsed + n);
    this.slabUsed += n;
    return bytes;
  }

  /** Removes and wipes these units if present (the feeder undoing a key only one pool took). */
  drop(ids: readonly string[]): void {
    for (const id of ids) {
      const e = this.byId.get(id);
      if (e === undefined || !e.live) continue;
      e.bytes.fill(0);
      this.leave(e);
      this.byId.delete(id);
    }
  }

  /** Removes the `count` oldest units, or returns undefined (and removes nothing) if fewer are stored. */
  takeOldest(count: number): PoolUnit[] | undefined {
    if (count > this.pooled) return undefined;
    const out: PoolUnit[] = [];
    const { order, byId } = this;
    while (out.length < count) {
      const e = order[this.head++]!;
      if (!e.live) {
        this.stale = Math.max(0, this.stale - 1); // left by ID earlier
        continue;
      }
      e.live = false;
      this.pooled--;
      byId.delete(e.id);
      out.push({ id: e.id, bytes: e.bytes });
    }
    this.compactOrder();
    if (out.length > 0) this.onFreed?.();
    return out;
  }

  /** Removes exactly these units, or returns undefined (and removes nothing) if any is missing. */
  takeByIds(ids: readonly string[]): PoolUnit[] | undefined {
    const entries = this.liveEntries(ids);
    if (entries === undefined) return undefined;
    const out: PoolUnit[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      this.leave(e);
      this.byId.delete(e.id);
      out[i] = { id: e.id, bytes: e.bytes };
    }
    this.compactOrder();
    if (out.length > 0) this.onFreed?.();
    return out;
  }

  /**
   * `takeByIds` + `reserve` for whole-unit keys (key ID = unit ID, key = the unit's bytes) in one
   * pass: the units become keys held for `slaves`, fetched through {@link claim}. Returns false
   * (and changes nothing) if any unit is missing or repeated.
   */
  reserveUnits(master: string, slaves: readonly string[], ids: readonly string[]): boolean {
    if (slaves.length === 0) throw new RangeError('a key needs at least one slave');
    const entries = this.liveEntries(ids);
    if (entries === undefined) return false;
    const everyone = [...slaves];
    for (const e of entries) {
      this.leave(e);
      e.res = { master, slaves: everyone, pending: [...everyone], key: e.bytes, units: 1 };
    }
    this.reservedKeys += entries.length;
    this.reservedUnits += entries.length;
    this.compactOrder();
    return true;
  }

  /** The pooled entries of `ids`, or undefined if one is missing or repeated. Changes nothing. */
  private liveEntries(ids: readonly string[]): Entry[] | undefined {
    const stamp = ++this.stampCounter;
    const entries: Entry[] = new Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const e = this.byId.get(ids[i]!);
      if (e === undefined || !e.live || e.stamp === stamp) return undefined;
      e.stamp = stamp;
      entries[i] = e;
    }
    return entries;
  }

  /** A live entry leaves the pool (its slot in `order` turns stale). */
  private leave(e: Entry): void {
    e.live = false;
    this.pooled--;
    this.stale++;
  }

  /** Returns units taken for a request that then failed (e.g. the peer KME was unreachable). */
  putBack(units: readonly PoolUnit[]): void {
    for (const u of units) {
      const entry: Entry = { id: u.id, bytes: u.bytes, live: true, res: undefined, stamp: 0 };
      this.byId.set(u.id, entry);
      this.order.push(entry);
      this.pooled++;
    }
  }

  /** Drops consumed and dead entries once they outnumber the live ones. */
  private compactOrder(): void {
    const dead = this.head + this.stale;
    if (dead > 1024 && dead * 2 > this.order.length) {
      const { order } = this;
      const live: Entry[] = [];
      for (let i = this.head; i < order.length; i++) {
        const e = order[i]!;
        if (e.live) live.push(e);
      }
      this.order = live;
      this.head = 0;
      this.stale = 0;
    }
  }

  /**
   * Holds composed keys for `slaves` (at least one), to be fetched once by each through
   * {@link claim}. `unitsPerKey` is what each key consumed, for the capacity count.
   */
  reserve(
    master: string,
    slaves: readonly string[],
    keys: readonly ComposedKey[],
    unitsPerKey: number,
  ): void {
    for (const k of keys) {
      if (this.byId.has(k.keyId)) throw new RangeError('duplicate key ID');
    }
    const everyone = [...slaves];
    for (const k of keys) {
      this.byId.set(k.keyId, {
        id: k.keyId,
        bytes: k.key,
        live: false,
        res: { master, slaves: everyone, pending: [...everyone], key: k.key, units: unitsPerKey },
        stamp: 0,
      });
      this.reservedKeys++;
      this.reservedUnits += unitsPerKey;
    }
  }

  /**
   * dec_keys: `caller` fetches keys that `master` obtained for it. All or nothing:
   * - an ID not reserved, reserved under another master, or already fetched by this caller →
   *   `not-found` (ETSI 014 §5.4: "one or more keys specified are not found on KME");
   * - an ID reserved for other slaves only → `unauthorized` (§5.4: 401), and the key stays
   *   available to its slave(s);
   * - the same ID twice in one request → `duplicate`.
   * Unauthorized wins over not-found so that probing another SAE's key IDs is always refused as such.
   */
  claim(caller: string, master: string, keyIds: readonly string[]): ClaimResult {
    const stamp = ++this.stampCounter;
    const found: Array<Entry | undefined> = new Array(keyIds.length);
    let missing = false;
    for (let i = 0; i < keyIds.length; i++) {
      const e = this.byId.get(keyIds[i]!);
      if (e === undefined || e.res === undefined) {
        missing = true;
        continue;
      }
      if (e.stamp === stamp) return { ok: false, reason: 'duplicate' };
      e.stamp = stamp;
      found[i] = e;
    }
    // Repeats among IDs we do not hold leave no stamp: check those the slow way.
    if (missing && new Set(keyIds).size !== keyIds.length) return { ok: false, reason: 'duplicate' };
    let notFound = missing;
    for (const e of found) {
      if (e === undefined) continue;
      const r = e.res!;
      if (!r.slaves.includes(caller)) return { ok: false, reason: 'unauthorized' };
      // Already fetched by this slave (multicast keys stay for the others), or asked under another master.
      if (!r.pending.includes(caller) || r.master !== master) notFound = true;
    }
    if (notFound) return { ok: false, reason: 'not-found' };
    const keys: ComposedKey[] = new Array(found.length);
    for (let i = 0; i < found.length; i++) {
      const e = found[i]!;
      const r = e.res!;
      r.pending.splice(r.pending.indexOf(caller), 1);
      if (r.pending.length === 0) {
        this.byId.delete(e.id);
        this.reservedKeys--;
        this.reservedUnits -= r.units;
        // The last slave owns the buffer now; earlier ones get a copy so wiping one leaves the other intact.
        keys[i] = { keyId: e.id, key: r.key };
      } else {
        keys[i] = { keyId: e.id, key: Buffer.from(r.key) };
      }
    }
    this.onFreed?.();
    return { ok: true, keys };
  }
}

/**
 * Builds one key of `sizeBits` from pool units: the units' bytes concatenated in order and cut
 * to `sizeBits / 8` bytes. A key of exactly one whole unit keeps the link's UUID; any other
 * key gets a fresh random UUID (never derived from the bytes), which the peer KME receives in
 * the {@link KeyAssignment} so both ends use the same ID.
 */
export function composeKey(
  units: readonly PoolUnit[],
  sizeBits: number,
  unitBits: number,
  keyId?: string,
): ComposedKey {
  const bytes = sizeBits / 8;
  if (units.length === 1 && units[0]!.bytes.length === bytes) {
    // One whole unit: the unit's buffer becomes the key (no copy, so nothing left to wipe).
    return { keyId: keyId ?? units[0]!.id, key: units[0]!.bytes };
  }
  const whole = Buffer.concat(units.map((u) => u.bytes));
  if (whole.length < bytes) throw new RangeError('not enough units for the key size');
  const key = Buffer.from(whole.subarray(0, bytes));
  whole.fill(0);
  for (const u of units) u.bytes.fill(0);
  const id = keyId ?? (units.length === 1 && sizeBits === unitBits ? units[0]!.id : randomUUID());
  return { keyId: id, key };
}

/** Units needed for one key of `sizeBits`. */
export function unitsPerKey(sizeBits: number, unitBits: number): number {
  return Math.ceil(sizeBits / unitBits);
}
