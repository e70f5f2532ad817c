import { randomBytes } from 'node:crypto';
import type { AbstractBatchOperation } from 'abstract-level';
import type { ClassicLevel } from 'classic-level';
import { QkmError } from '../core/errors.js';
import { KeyedMutex } from '../store/keyed-mutex.js';
import { levelOp } from '../store/level-errors.js';
import { KekError, StoreIntegrityError } from './errors.js';
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
import {
  DATA_KEY_BYTES,
  openKeyMaterial,
  SealOpenError,
  sealKeyMaterial,
  unwrapDataKey,
  wrapDataKey,
} from './sealing.js';

export type RootDb = ClassicLevel<string, string>;

/** A key's metadata as persisted: plus its creation sequence number (the list order). */
type StoredMeta = KeyMetadata & { seq: number };

interface SysRecord {
  format?: number;
  dataKey?: string;
}

interface HeldRecord {
  /** The key's sealed material, base64, still bound to its active metadata. */
  sealed: string;
  digest: string;
  until: string;
}

/**
 * Format 2 added the `st` and `closed` indexes; a format-1 store is upgraded in place on open
 * (the indexes are built from `meta` in one pass, then the format is rewritten).
 */
const FORMAT = 2;
/** How many keys `sweepExpired` closes per atomic batch. */
const SWEEP_BATCH = 256;
/** Upper bound of `purgeClosed`'s `limit`: one purge is one atomic batch of at most this many keys. */
const MAX_PURGE_BATCH = 1000;

/**
 * LevelDB layout of the key store (sublevels of the backend's one database):
 * - `sys`   `store` → { format, dataKey (the data key wrapped under the KEK, base64) }
 * - `meta`  id → metadata JSON (+ seq)                       — never secret
 * - `mat`   id → sealed material (see sealing.ts)             — present only while active
 * - `order` seq (16 hex digits) → id                          — creation order for `list`
 * - `exp`   `<expires ISO> <id>` → id, for active keys only   — what `sweepExpired` scans
 * - `held`  id → { sealed material, token digest, until }    — a taken key kept for one
 *           redelivery (TakeOptions.hold), written in the take's own batch
 * - `st`    `<state> <seq>` → id                               — creation order per state, so
 *           listing one state (the usual: active keys) reads only that state's entries
 * - `closed` `<closedAt ISO> <id>` → id, for closed keys only — what `purgeClosed` scans
 */
function layout(root: RootDb) {
  return {
    sys: root.sublevel<string, SysRecord>('sys', { valueEncoding: 'json' }),
    meta: root.sublevel<string, StoredMeta>('meta', { valueEncoding: 'json' }),
    mat: root.sublevel<string, Uint8Array>('mat', { valueEncoding: 'view' }),
    order: root.sublevel<string, string>('order', { valueEncoding: 'utf8' }),
    exp: root.sublevel<string, string>('exp', { valueEncoding: 'utf8' }),
    held: root.sublevel<string, HeldRecord>('held', { valueEncoding: 'json' }),
    st: root.sublevel<string, string>('st', { valueEncoding: 'utf8' }),
    closed: root.sublevel<string, string>('closed', { valueEncoding: 'utf8' }),
  };
}
type Layout = ReturnType<typeof layout>;
type Op = AbstractBatchOperation<RootDb, string, unknown>;

const seqKey = (seq: number): string => seq.toString(16).padStart(16, '0');
const expKey = (meta: KeyMetadata): string => `${new Date(meta.expires!).toISOString()} ${meta.id}`;
const stKey = (state: KeyState, seq: number): string => `${state} ${seqKey(seq)}`;
/** Closed keys without `closedAt` (none are written so) sort as closed at creation. */
const closedKey = (meta: KeyMetadata): string =>
  `${new Date(meta.closedAt ?? meta.created).toISOString()} ${meta.id}`;

export interface LevelKeyStoreOptions {
  /**
   * Compact the LevelDB range of destroyed material in the background (default true). LevelDB
   * never overwrites in place: a delete writes a tombstone and the old (sealed) value stays in
   * older table files until compaction rewrites them; this asks for that right away.
   */
  compactOnDestroy?: boolean;
  /**
   * How long destroyed ids are gathered before one compaction covers them all (default
   * COMPACT_DELAY_MS). `compactRange` first flushes the memtable into a new level-0 table and
   * then rewrites every table of the range, so run back to back under a steady stream of takes
   * it kept LevelDB rewriting tables continuously — thousands of new files a minute, and an
   * allocation churn that glibc's malloc never returned to the system (+2.7 MB/min of anonymous
   * RSS in the soak, #16). `close` runs a gathered compaction at once.
   */
  compactDelayMs?: number;
}

/** See `LevelKeyStoreOptions.compactDelayMs`: destroyed ciphertext lingers at most this much longer. */
export const COMPACT_DELAY_MS = 1000;

/**
 * KeyStore on LevelDB (`classic-level`). Material is sealed under the store's data key; every
 * write that changes a key's state is one atomic batch written with `{ sync: true }` (fsync).
 *
 * Exactly-once `take`: steps for one id run under a per-id lock in this process, and LevelDB's
 * directory lock keeps every other process out, so the check-then-write cannot interleave; the
 * batch that records `taken` also deletes the material, and it is durable before `take`
 * resolves. A crash before the batch loses nothing (the key is still active with its material);
 * a crash after it can never serve the key again.
 *
 * Destroying material deletes its record and then compacts that key range (see
 * `compactOnDestroy`). Compaction rewrites table files but cannot scrub freed disk blocks; what
 * could remain there is ciphertext, never plaintext.
 *
 * Created by `openLevelBackend` (src/store/level.ts), which owns the database and closes it.
 */
export class LevelKeyStore implements KeyStore {
  readonly #root: RootDb;
  readonly #db: Layout;
  readonly #path: string;
  readonly #dataKey: Uint8Array;
  readonly #locks = new KeyedMutex();
  readonly #counts: Record<KeyState, number>;
  readonly #compactOnDestroy: boolean;
  #seq: number;
  #closed = false;
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #compactDelayMs: number;
  #pendingCompaction = new Set<string>();
  /** The gathering window before the next compaction; cleared (and the compaction run) by close. */
  #compactionTimer: { timer: NodeJS.Timeout; run: () => void } | undefined;
  #compaction: Promise<void> | undefined;

  private constructor(
    root: RootDb,
    db: Layout,
    path: string,
    dataKey: Uint8Array,
    seq: number,
    counts: Record<KeyState, number>,
    options: LevelKeyStoreOptions,
  ) {
    this.#root = root;
    this.#db = db;
    this.#path = path;
    this.#dataKey = dataKey;
    this.#seq = seq;
    this.#counts = counts;
    this.#compactOnDestroy = options.compactOnDestroy ?? true;
    this.#compactDelayMs = options.compactDelayMs ?? COMPACT_DELAY_MS;
  }

  /**
   * Opens the key store inside an open database: unwraps (or, for a new store, creates and
   * wraps) the data key, and loads the sequence number and the counts by state.
   * Rejects `KekError` (STORE_UNAVAILABLE, problem `wrong-key`) when `kek` does not open the
   * store's data key.
   */
  static async open(
    root: RootDb,
    path: string,
    kek: Uint8Array,
    options: LevelKeyStoreOptions = {},
  ): Promise<LevelKeyStore> {
    const db = layout(root);
    return levelOp(path, async () => {
      const sys = (await db.sys.get('store')) ?? {};
      let dataKey: Uint8Array;
      if (sys.format !== undefined && sys.format !== FORMAT && sys.format !== 1) {
        throw new QkmError(
          'STORE_UNAVAILABLE',
          `the store at ${path} has format ${sys.format}; this qkm reads format ${FORMAT}`,
        );
      }
      if (sys.dataKey === undefined) {
        // A fresh data key is only right for an empty store: keys without their data key would
        // all fail authentication, so a store that lost its `sys` record is refused instead.
        const [orphan] = await db.mat.keys({ limit: 1 }).all();
        if (orphan !== undefined) {
          throw new StoreIntegrityError(
            `the store at ${path} holds sealed keys but its data key record is missing`,
          );
        }
        dataKey = randomBytes(DATA_KEY_BYTES);
        const wrapped = Buffer.from(wrapDataKey(kek, dataKey)).toString('base64');
        const record: SysRecord = { format: FORMAT, dataKey: wrapped };
        await root.batch<string, unknown>([{ type: 'put', sublevel: db.sys, key: 'store', value: record }], {
          sync: true,
        });
      } else {
        try {
          dataKey = unwrapDataKey(kek, Buffer.from(sys.dataKey, 'base64'));
        } catch (err) {
          throw new KekError(
            'wrong-key',
            path,
            `the key-encryption key does not open the data key of the store at ${path} (wrong or replaced kek file?)`,
            { cause: err },
          );
        }
      }
      const counts = emptyCounts();
      const upgrade = sys.format === 1;
      let ops: Op[] = [];
      for await (const meta of db.meta.values()) {
        counts[meta.state]++;
        if (!upgrade) continue;
        ops.push({ type: 'put', sublevel: db.st, key: stKey(meta.state, meta.seq), value: meta.id });
        if (meta.state !== 'active')
          ops.push({ type: 'put', sublevel: db.closed, key: closedKey(meta), value: meta.id });
        if (ops.length >= 2 * SWEEP_BATCH) {
          await root.batch<string, unknown>(ops, {});
          ops = [];
        }
      }
      if (upgrade) {
        // The format is rewritten last, synced: a crash mid-upgrade redoes it (the puts are idempotent).
        ops.push({ type: 'put', sublevel: db.sys, key: 'store', value: { ...sys, format: FORMAT } });
        await root.batch<string, unknown>(ops, { sync: true });
      }
      // Sequence numbers continue after the newest key in the order index. (A deleted newest
      // key's number may be reused; nothing refers to it any more.)
      const [last] = await db.order.keys({ reverse: true, limit: 1 }).all();
      const seq = last === undefined ? 0 : Number.parseInt(last, 16);
      return new LevelKeyStore(root, db, path, dataKey, seq, counts, options);
    });
  }

  put(key: NewKey): Promise<KeyMetadata> {
    return this.#guard(() => this.#put(key));
  }

  async #put(key: NewKey): Promise<KeyMetadata> {
    const meta = activeMetadata(key);
    // Allocated synchronously on entry: creation order is the order `put` was called in, and
    // concurrent puts never share a number. A failed put leaves a harmless gap.
    const seq = ++this.#seq;
    return this.#locks.run(meta.id, () =>
      this.#op(async () => {
        if ((await this.#db.meta.get(meta.id)) !== undefined) throw keyExists(meta.id);
        const stored: StoredMeta = { ...meta, seq };
        const sealed = sealKeyMaterial(this.#dataKey, key.material, meta);
        const ops: Op[] = [
          { type: 'put', sublevel: this.#db.meta, key: meta.id, value: stored },
          { type: 'put', sublevel: this.#db.mat, key: meta.id, value: sealed },
          { type: 'put', sublevel: this.#db.order, key: seqKey(seq), value: meta.id },
          { type: 'put', sublevel: this.#db.st, key: stKey('active', seq), value: meta.id },
        ];
        if (meta.expires !== null)
          ops.push({ type: 'put', sublevel: this.#db.exp, key: expKey(meta), value: meta.id });
        await this.#root.batch<string, unknown>(ops, { sync: true });
        this.#counts.active++;
        return publicMeta(stored);
      }),
    );
  }

  take(
    id: string,
    now: Date = new Date(),
    options: TakeOptions = {},
  ): Promise<{ meta: KeyMetadata; material: Uint8Array }> {
    return this.#guard(() => {
      checkHold(options.hold);
      return this.#access(id, now, true, options);
    });
  }

  redeliver(
    id: string,
    token: string,
    now: Date = new Date(),
  ): Promise<{ meta: KeyMetadata; material: Uint8Array }> {
    return this.#guard(async () => {
      checkKeyId(id);
      checkNow(now);
      return this.#locks.run(id, () =>
        this.#op(async () => {
          const stored = await this.#db.meta.get(id);
          if (stored === undefined) throw notFound(id);
          const held = await this.#db.held.get(id);
          if (
            held === undefined ||
            held.digest !== holdDigest(token) ||
            Date.parse(held.until) <= now.getTime()
          ) {
            throw alreadyDelivered(id);
          }
          const { state: _s, closedAt: _c, ...active } = stored;
          const material = this.#open(Buffer.from(held.sealed, 'base64'), { ...active, state: 'active' });
          try {
            await this.#root.batch<string, unknown>([{ type: 'del', sublevel: this.#db.held, key: id }], {
              sync: true,
            });
          } catch (err) {
            material.fill(0);
            throw err;
          }
          this.#scheduleCompaction(id);
          return { meta: publicMeta(stored), material };
        }),
      );
    });
  }

  read(id: string, now: Date = new Date()): Promise<{ meta: KeyMetadata; material: Uint8Array }> {
    return this.#guard(() => this.#access(id, now, false));
  }

  meta(id: string): Promise<KeyMetadata> {
    return this.#guard(() => this.#meta(id));
  }

  async #meta(id: string): Promise<KeyMetadata> {
    checkKeyId(id);
    const stored = await this.#op(() => this.#db.meta.get(id));
    if (stored === undefined) throw notFound(id);
    return publicMeta(stored);
  }

  list(query?: KeyListQuery): Promise<KeyMetadata[]> {
    return this.#guard(() => this.#list(query));
  }

  async #list(query?: KeyListQuery): Promise<KeyMetadata[]> {
    const plan = listPlan(query);
    return this.#op(async () => {
      let cursorSeq: number | undefined;
      if (plan.after !== undefined) {
        const cursor = await this.#db.meta.get(plan.after);
        if (cursor === undefined) throw unknownCursor(plan.after);
        cursorSeq = cursor.seq;
      }
      // One state: its own index, so closed keys cost an active listing nothing. All states:
      // the creation-order index (bounded by the retention of closed keys, see purgeClosed).
      const state = plan.state;
      const index = state === undefined ? this.#db.order : this.#db.st;
      const lt = state === undefined ? undefined : `${state}!`; // '!' sorts right after the space
      let gt: string | undefined =
        state === undefined
          ? cursorSeq === undefined
            ? undefined
            : seqKey(cursorSeq)
          : cursorSeq === undefined
            ? `${state} `
            : stKey(state, cursorSeq);
      const out: KeyMetadata[] = [];
      // Walk the index in chunks (no bigger than what is still wanted), fetching metadata with getMany.
      while (out.length < plan.limit) {
        // Filters on purpose/owner may skip entries: read full chunks then; otherwise no more than wanted.
        const chunk =
          plan.purpose !== undefined || plan.owner !== undefined
            ? 256
            : Math.min(256, plan.limit - out.length);
        const range: { gt?: string; lt?: string; limit: number } = { limit: chunk };
        if (gt !== undefined) range.gt = gt;
        if (lt !== undefined) range.lt = lt;
        const entries = await index.iterator(range).all();
        if (entries.length === 0) break;
        const metas = await this.#db.meta.getMany(entries.map(([, id]) => id));
        for (const stored of metas) {
          if (stored !== undefined && matchesQuery(stored, plan)) out.push(publicMeta(stored));
          if (out.length >= plan.limit) break;
        }
        gt = entries[entries.length - 1]![0];
        if (entries.length < chunk) break;
      }
      return out;
    });
  }

  delete(id: string): Promise<void> {
    return this.#guard(() => this.#delete(id));
  }

  async #delete(id: string): Promise<void> {
    checkKeyId(id);
    await this.#locks.run(id, () =>
      this.#op(async () => {
        const stored = await this.#db.meta.get(id);
        if (stored === undefined) throw notFound(id);
        const ops: Op[] = [
          { type: 'del', sublevel: this.#db.meta, key: id },
          { type: 'del', sublevel: this.#db.mat, key: id },
          { type: 'del', sublevel: this.#db.order, key: seqKey(stored.seq) },
          { type: 'del', sublevel: this.#db.held, key: id },
          { type: 'del', sublevel: this.#db.st, key: stKey(stored.state, stored.seq) },
        ];
        if (stored.expires !== null) ops.push({ type: 'del', sublevel: this.#db.exp, key: expKey(stored) });
        if (stored.state !== 'active')
          ops.push({ type: 'del', sublevel: this.#db.closed, key: closedKey(stored) });
        await this.#root.batch<string, unknown>(ops, { sync: true });
        this.#counts[stored.state]--;
        this.#scheduleCompaction(id);
      }),
    );
  }

  sweepExpired(now: Date = new Date(), options: SweepOptions = {}): Promise<number> {
    return this.#guard(() => this.#sweepExpired(now, options));
  }

  async #sweepExpired(now: Date, options: SweepOptions): Promise<number> {
    checkNow(now);
    await this.#sweepHeld(now);
    // Every index entry at or before `now`: the ISO prefix sorts by time; '\x7f' sorts after
    // the space and any id character that follows it.
    const due = await this.#op(() => this.#db.exp.values({ lt: `${now.toISOString()}\x7f` }).all());
    let n = 0;
    for (let i = 0; i < due.length; i += SWEEP_BATCH) {
      const ids = due.slice(i, i + SWEEP_BATCH);
      n += await this.#locks.runMany(ids, () =>
        this.#op(async () => {
          // Re-check under the locks: a take may have closed some of them meanwhile.
          const metas = await this.#db.meta.getMany(ids);
          const closing = metas.filter((m): m is StoredMeta => m !== undefined && isDue(m, now));
          if (closing.length === 0) return 0;
          const ops = closing.flatMap((m) => this.#closeOps(m, 'expired', now));
          await this.#root.batch<string, unknown>(ops, { sync: true });
          this.#counts.active -= closing.length;
          this.#counts.expired += closing.length;
          for (const m of closing) this.#scheduleCompaction(m.id);
          options.onExpired?.(closing.map((m) => m.id));
          return closing.length;
        }),
      );
    }
    return n;
  }

  purgeClosed(before: Date, limit = MAX_PURGE_BATCH): Promise<number> {
    return this.#guard(() => this.#purgeClosed(before, limit));
  }

  async #purgeClosed(before: Date, limit: number): Promise<number> {
    checkNow(before);
    checkPurgeLimit(limit, MAX_PURGE_BATCH);
    const entries = await this.#op(() =>
      this.#db.closed.iterator({ lt: `${before.toISOString()}\x7f`, limit }).all(),
    );
    if (entries.length === 0) return 0;
    const due = entries.map(([, id]) => id);
    return this.#locks.runMany(due, () =>
      this.#op(async () => {
        // Re-read under the locks: a delete may have removed some meanwhile (its own batch
        // dropped their index entries too, so deleting them again here is harmless).
        const metas = await this.#db.meta.getMany(due);
        const gone = metas.filter((m): m is StoredMeta => m !== undefined && m.state !== 'active');
        const ops: Op[] = entries.map(([key]): Op => ({ type: 'del', sublevel: this.#db.closed, key }));
        for (const m of gone) {
          ops.push(
            { type: 'del', sublevel: this.#db.meta, key: m.id },
            { type: 'del', sublevel: this.#db.order, key: seqKey(m.seq) },
            { type: 'del', sublevel: this.#db.st, key: stKey(m.state, m.seq) },
            { type: 'del', sublevel: this.#db.held, key: m.id },
          );
        }
        await this.#root.batch<string, unknown>(ops, { sync: true });
        for (const m of gone) this.#counts[m.state]--;
        return gone.length;
      }),
    );
  }

  /** Destroys held material past its `until` (few records: holds last minutes). */
  async #sweepHeld(now: Date): Promise<void> {
    const held = await this.#op(() => this.#db.held.iterator().all());
    const due = held.filter(([, h]) => Date.parse(h.until) <= now.getTime()).map(([id]) => id);
    if (due.length === 0) return;
    await this.#locks.runMany(due, () =>
      this.#op(async () => {
        const ops: Op[] = due.map((id) => ({ type: 'del', sublevel: this.#db.held, key: id }));
        await this.#root.batch<string, unknown>(ops, { sync: true });
        for (const id of due) this.#scheduleCompaction(id);
      }),
    );
  }

  async counts(): Promise<Record<KeyState, number>> {
    if (this.#closed) throw storeClosed();
    return { ...this.#counts };
  }

  /**
   * Refuses new operations (STORE_UNAVAILABLE), lets the ones already running finish, waits for
   * background compaction, then wipes the data key. The database itself is closed by the backend
   * that owns it, after this resolves.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Operations admitted before close may still be waiting for a per-id lock; the data key
    // must outlive them (wiping it first would make a queued put seal under a zero key).
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    this.#compactionTimer?.run();
    await this.#compaction;
    this.#dataKey.fill(0);
  }

  async #access(
    id: string,
    now: Date,
    consume: boolean,
    options: TakeOptions = {},
  ): Promise<{ meta: KeyMetadata; material: Uint8Array }> {
    checkKeyId(id);
    checkNow(now);
    return this.#locks.run(id, () =>
      this.#op(async () => {
        // Both reads at once (one round to the store, not two); the sealed material is only
        // opened once the metadata admits the access.
        const [stored, sealed] = await Promise.all([this.#db.meta.get(id), this.#db.mat.get(id)]);
        if (stored === undefined) throw notFound(id);
        if (accessDecision(stored, now) === 'expire') {
          await this.#root.batch<string, unknown>(this.#closeOps(stored, 'expired', now), { sync: true });
          this.#counts.active--;
          this.#counts.expired++;
          this.#scheduleCompaction(id);
          throw expired(id);
        }
        if (sealed === undefined) {
          throw new StoreIntegrityError(`key ${id} is active but its stored material is missing`, id);
        }
        const material = this.#open(sealed, stored);
        if (!consume) return { meta: publicMeta(stored), material };
        const ops = this.#closeOps(stored, 'taken', now);
        if (options.hold) {
          const held: HeldRecord = {
            sealed: Buffer.from(sealed).toString('base64'),
            digest: holdDigest(options.hold.token),
            until: options.hold.until.toISOString(),
          };
          ops.push({ type: 'put', sublevel: this.#db.held, key: id, value: held });
        }
        // Last moment to notice the requester is gone: after the batch there is no undo.
        if (options.signal?.aborted) {
          material.fill(0);
          throw aborted(id);
        }
        try {
          await this.#root.batch<string, unknown>(ops, { sync: true });
        } catch (err) {
          material.fill(0);
          throw err;
        }
        this.#counts.active--;
        this.#counts.taken++;
        this.#scheduleCompaction(id);
        return { meta: publicMeta(closedMetadata(stored, 'taken', now) as StoredMeta), material };
      }),
    );
  }

  /** Batch that closes an active key: new state, material and expiry-index entry deleted. */
  #closeOps(stored: StoredMeta, state: 'taken' | 'expired', now: Date): Op[] {
    const closed = closedMetadata(stored, state, now) as StoredMeta;
    const ops: Op[] = [
      { type: 'put', sublevel: this.#db.meta, key: stored.id, value: closed },
      { type: 'del', sublevel: this.#db.mat, key: stored.id },
      { type: 'del', sublevel: this.#db.st, key: stKey('active', stored.seq) },
      { type: 'put', sublevel: this.#db.st, key: stKey(state, stored.seq), value: stored.id },
      { type: 'put', sublevel: this.#db.closed, key: closedKey(closed), value: stored.id },
    ];
    if (stored.expires !== null) ops.push({ type: 'del', sublevel: this.#db.exp, key: expKey(stored) });
    return ops;
  }

  #open(sealed: Uint8Array, meta: KeyMetadata): Uint8Array {
    try {
      return openKeyMaterial(this.#dataKey, sealed, meta);
    } catch (err) {
      if (err instanceof SealOpenError) {
        throw new StoreIntegrityError(
          `stored material of key ${meta.id} failed authentication (${err.reason}); the store was altered or is corrupt`,
          meta.id,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /**
   * Queues a background compaction of the destroyed ids' range in `mat`. Coalesces: ids are
   * gathered for `compactDelayMs`, then one compaction covers the span of all of them; ids
   * destroyed while it runs wait for the next window. One compaction runs at a time.
   */
  #scheduleCompaction(id: string): void {
    if (!this.#compactOnDestroy) return;
    this.#pendingCompaction.add(id);
    if (this.#compaction !== undefined) return;
    this.#compaction = new Promise<void>((resolve) => {
      const run = () => {
        clearTimeout(timer);
        if (this.#compactionTimer?.run !== run) return;
        this.#compactionTimer = undefined;
        void this.#compactPending().then(() => {
          this.#compaction = undefined;
          resolve();
          // Destroyed while the compaction ran: their own window starts now.
          if (this.#pendingCompaction.size > 0 && this.#root.status === 'open' && !this.#closed) {
            const next = [...this.#pendingCompaction];
            this.#pendingCompaction.clear();
            for (const pending of next) this.#scheduleCompaction(pending);
          }
        });
      };
      // Unref'd: a pending compaction never keeps the process alive (close runs it at once).
      const timer = setTimeout(run, this.#compactDelayMs);
      timer.unref();
      this.#compactionTimer = { timer, run };
    });
  }

  /** One compaction over the span of the ids gathered so far (at close, everything still pending). */
  async #compactPending(): Promise<void> {
    while (this.#pendingCompaction.size > 0 && this.#root.status === 'open') {
      const ids = [...this.#pendingCompaction].sort();
      this.#pendingCompaction.clear();
      const start = this.#db.mat.prefixKey(ids[0]!, 'utf8');
      const end = this.#db.mat.prefixKey(ids[ids.length - 1]!, 'utf8');
      try {
        await this.#root.compactRange(start, end);
      } catch {
        // Best effort: the record is already deleted; a failed compaction only delays the
        // rewrite of old table files to LevelDB's own schedule.
      }
      // Outside close, ids destroyed meanwhile wait for their own window (see scheduleCompaction).
      if (!this.#closed) return;
    }
    this.#pendingCompaction.clear();
  }

  #op<T>(fn: () => Promise<T>): Promise<T> {
    return levelOp(this.#path, fn);
  }

  /** Admits an operation unless the store is closed, and tracks it until it settles (see close). */
  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw storeClosed();
    const p = fn();
    this.#inflight.add(p);
    try {
      return await p;
    } finally {
      this.#inflight.delete(p);
    }
  }
}

function publicMeta(stored: StoredMeta): KeyMetadata {
  const { seq: _seq, ...meta } = stored;
  return meta;
}
