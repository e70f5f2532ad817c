import { randomBytes, randomUUID } from 'node:crypto';
import type { Etcd3, IRequestOp } from 'etcd3';
import { Range as EtcdRange } from 'etcd3';
import { QkmError } from '../core/errors.js';
import { etcdOp } from '../store/etcd-errors.js';
import { KeyedMutex } from '../store/keyed-mutex.js';
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
  activeMetadata,
  alreadyDelivered,
  checkHold,
  checkKeyId,
  checkNow,
  checkPurgeLimit,
  closedMetadata,
  emptyCounts,
  expired,
  holdDigest,
  isDue,
  KEY_STATES,
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

/**
 * A key's metadata as persisted: plus its place in the creation order (`ord`) and the token of
 * the write that created (`w`) or closed (`c`) it. The tokens make a transaction that etcd3's
 * client retried after a lost reply recognisable as our own, so it is not misreported.
 */
type StoredMeta = KeyMetadata & { ord: string; w: string; c?: string };

interface SysRecord {
  format: number;
  dataKey: string;
}

/** A taken key kept for one redelivery (TakeOptions.hold): as in the LevelDB store. */
interface HeldRecord {
  /** The key's sealed material, base64, still bound to its active metadata. */
  sealed: string;
  digest: string;
  until: string;
}

const FORMAT = 1;
const LIST_CHUNK = 256;
/** Attempts of one compare-and-swap before giving up (contention is per key id, so rare). */
const CAS_ATTEMPTS = 8;

/**
 * etcd layout of the key store, under the backend's prefix `P` (default `qkm/`):
 * - `P sys/store`            → { format, dataKey (the data key wrapped under the KEK, base64) }
 * - `P k/meta/<id>`          → metadata JSON (+ ord, tokens)            — never secret
 * - `P k/mat/<id>`           → sealed material (see sealing.ts)         — only while active
 * - `P k/order/<ord>`        → id, creation order for `list`
 * - `P k/exp/<ISO> <id>`     → id, active keys with an expiry           — what `sweepExpired` scans
 * - `P k/st/<state>/<id>`    → '' , one per key                          — counts by state
 * - `P k/closed/<ISO> <id>`  → id, taken/expired keys by closing time  — what `purgeClosed` scans
 * - `P k/held/<id>`          → { sealed, token digest, until }           — a held take, written
 *                              in the take's own transaction
 */
function keysOf(prefix: string) {
  return {
    sys: `${prefix}sys/store`,
    meta: (id: string) => `${prefix}k/meta/${id}`,
    mat: (id: string) => `${prefix}k/mat/${id}`,
    order: (ord: string) => `${prefix}k/order/${ord}`,
    orderPrefix: `${prefix}k/order/`,
    exp: (m: KeyMetadata) => `${prefix}k/exp/${new Date(m.expires!).toISOString()} ${m.id}`,
    expPrefix: `${prefix}k/exp/`,
    st: (state: KeyState, id: string) => `${prefix}k/st/${state}/${id}`,
    closed: (m: KeyMetadata) => `${prefix}k/closed/${m.closedAt} ${m.id}`,
    closedPrefix: `${prefix}k/closed/`,
    stPrefix: (state: KeyState) => `${prefix}k/st/${state}/`,
    matPrefix: `${prefix}k/mat/`,
    held: (id: string) => `${prefix}k/held/${id}`,
    heldPrefix: `${prefix}k/held/`,
  };
}
type Keys = ReturnType<typeof keysOf>;

/**
 * KeyStore on an etcd cluster, shared by every qkm appliance that opens the same endpoints and
 * prefix with the same KEK. etcd only ever sees sealed material (the same AES-256-GCM sealing as
 * LevelDB, under a data key that is itself stored wrapped under the KEK).
 *
 * Exactly-once `take` across appliances: one etcd transaction compares the key's metadata
 * revision with the one read, and only if unchanged marks it taken and deletes the material.
 * Of any number of concurrent takers (in any process) one transaction commits; the others see
 * the comparison fail and re-read `taken`. A committed transaction is replicated to a quorum
 * (and fsync'd there) before etcd answers, so an acknowledged take or put survives the loss of
 * any minority of members. A member that lost quorum refuses reads and writes (linearizable
 * reads), which the caller sees as STORE_UNAVAILABLE: fail closed, never stale.
 *
 * Expiry is by sweep (like LevelDB), not by etcd leases: a lease would delete the metadata,
 * while the contract keeps an expired key's metadata with state `expired`.
 *
 * Creation order (`list`): `ord` is a hybrid clock value (microseconds, never below the last one
 * this process issued) plus a process token: exact call order within one appliance, wall-clock
 * order across appliances.
 */
export class EtcdKeyStore implements KeyStore {
  readonly #client: Etcd3;
  readonly #k: Keys;
  readonly #endpoints: readonly string[];
  readonly #dataKey: Uint8Array;
  readonly #locks = new KeyedMutex();
  readonly #writer = randomUUID().slice(0, 8);
  #lastOrd = 0;
  #closed = false;
  readonly #inflight = new Set<Promise<unknown>>();

  private constructor(client: Etcd3, k: Keys, endpoints: readonly string[], dataKey: Uint8Array) {
    this.#client = client;
    this.#k = k;
    this.#endpoints = endpoints;
    this.#dataKey = dataKey;
  }

  /**
   * Opens the key store on a connected client: unwraps the data key, or for a new store creates
   * one and stores it wrapped (if several appliances start at once, one transaction wins and the
   * others adopt its key). Rejects `KekError` (STORE_UNAVAILABLE, `wrong-key`) when `kek` does
   * not open the stored data key.
   */
  static async open(
    client: Etcd3,
    prefix: string,
    endpoints: readonly string[],
    kek: Uint8Array,
  ): Promise<EtcdKeyStore> {
    const k = keysOf(prefix);
    const where = `etcd ${endpoints.join(',')} prefix ${prefix}`;
    return etcdOp(endpoints, async () => {
      let sys = (await client.get(k.sys).json()) as SysRecord | null;
      if (sys === null) {
        const orphans = await client.getAll().prefix(k.matPrefix).limit(1).keys();
        if (orphans.length > 0) {
          throw new StoreIntegrityError(
            `the store at ${where} holds sealed keys but its data key record is missing`,
          );
        }
        const fresh = randomBytes(DATA_KEY_BYTES);
        const record: SysRecord = {
          format: FORMAT,
          dataKey: Buffer.from(wrapDataKey(kek, fresh)).toString('base64'),
        };
        const res = await client
          .if(k.sys, 'Version', '==', 0)
          .then(client.put(k.sys).value(JSON.stringify(record)))
          .commit();
        if (res.succeeded) return new EtcdKeyStore(client, k, endpoints, fresh);
        fresh.fill(0);
        sys = (await client.get(k.sys).json()) as SysRecord | null;
        if (sys === null) throw new QkmError('STORE_UNAVAILABLE', `the data key record at ${where} vanished`);
      }
      if (sys.format !== FORMAT) {
        throw new QkmError(
          'STORE_UNAVAILABLE',
          `the store at ${where} has format ${sys.format}; this qkm reads format ${FORMAT}`,
        );
      }
      let dataKey: Uint8Array;
      try {
        dataKey = unwrapDataKey(kek, Buffer.from(sys.dataKey, 'base64'));
      } catch (err) {
        throw new KekError(
          'wrong-key',
          where,
          `the key-encryption key does not open the data key of the store at ${where} (every appliance sharing it needs the same kek file)`,
          { cause: err },
        );
      }
      return new EtcdKeyStore(client, k, endpoints, dataKey);
    });
  }

  put(key: NewKey): Promise<KeyMetadata> {
    return this.#guard(() => this.#put(key));
  }

  async #put(key: NewKey): Promise<KeyMetadata> {
    const meta = activeMetadata(key);
    // Allocated synchronously on entry, as in LevelDB: call order is creation order.
    const ord = this.#nextOrd();
    const stored: StoredMeta = { ...meta, ord, w: randomUUID() };
    const sealed = Buffer.from(sealKeyMaterial(this.#dataKey, key.material, meta));
    return this.#locks.run(meta.id, () =>
      this.#op(async () => {
        const c = this.#client;
        const ops = [
          c.put(this.#k.meta(meta.id)).value(JSON.stringify(stored)),
          c.put(this.#k.mat(meta.id)).value(sealed),
          c.put(this.#k.order(ord)).value(meta.id),
          c.put(this.#k.st('active', meta.id)).value(''),
        ];
        if (meta.expires !== null) ops.push(c.put(this.#k.exp(meta)).value(meta.id));
        const res = await c
          .if(this.#k.meta(meta.id), 'Version', '==', 0)
          .then(...ops)
          .commit();
        if (!res.succeeded) {
          // Either someone else holds the id, or the client retried our own committed write.
          const now = await this.#getMeta(meta.id);
          if (now?.stored.w !== stored.w) throw keyExists(meta.id);
        }
        return publicMeta(stored);
      }),
    );
  }

  take(
    id: string,
    now: Date = new Date(),
    options: TakeOptions = {},
  ): Promise<{ meta: KeyMetadata; material: Uint8Array }> {
    return this.#guard(async () => {
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
          const got = await this.#getMeta(id);
          if (got === undefined) throw notFound(id);
          const res = await this.#client.get(this.#k.held(id)).exec();
          const kv = res.kvs[0];
          const held = kv === undefined ? undefined : (JSON.parse(kv.value.toString('utf8')) as HeldRecord);
          if (
            kv === undefined ||
            held === undefined ||
            held.digest !== holdDigest(token) ||
            Date.parse(held.until) <= now.getTime()
          ) {
            throw alreadyDelivered(id);
          }
          const { state: _s, closedAt: _c, ...active } = got.stored;
          const material = this.#open(Buffer.from(held.sealed, 'base64'), { ...active, state: 'active' });
          let ok: boolean;
          try {
            // Only the redelivery whose delete commits hands the material out (another appliance
            // may be redelivering the same hold concurrently).
            const del = await this.#client
              .if(this.#k.held(id), 'Mod', '==', kv.mod_revision)
              .then(this.#client.delete().key(this.#k.held(id)))
              .commit();
            ok = del.succeeded;
          } catch (err) {
            material.fill(0);
            throw err;
          }
          if (!ok) {
            material.fill(0);
            throw alreadyDelivered(id);
          }
          return { meta: publicMeta(got.stored), material };
        }),
      );
    });
  }

  read(id: string, now: Date = new Date()): Promise<{ meta: KeyMetadata; material: Uint8Array }> {
    return this.#guard(() => this.#access(id, now, false));
  }

  meta(id: string): Promise<KeyMetadata> {
    return this.#guard(async () => {
      checkKeyId(id);
      const got = await this.#op(() => this.#getMeta(id));
      if (got === undefined) throw notFound(id);
      return publicMeta(got.stored);
    });
  }

  list(query?: KeyListQuery): Promise<KeyMetadata[]> {
    return this.#guard(() => this.#list(query));
  }

  async #list(query?: KeyListQuery): Promise<KeyMetadata[]> {
    const plan = listPlan(query);
    return this.#op(async () => {
      let start = this.#k.orderPrefix;
      if (plan.after !== undefined) {
        const cursor = await this.#getMeta(plan.after);
        if (cursor === undefined) throw unknownCursor(plan.after);
        start = `${this.#k.order(cursor.stored.ord)}\0`;
      }
      const end = EtcdRange.prefix(this.#k.orderPrefix).end;
      const out: KeyMetadata[] = [];
      while (out.length < plan.limit) {
        const res = await this.#client
          .getAll()
          .inRange({ start, end })
          .sort('Key', 'Ascend')
          .limit(LIST_CHUNK)
          .exec();
        if (res.kvs.length === 0) break;
        const ids = res.kvs.map((kv) => kv.value.toString('utf8'));
        const metas = await Promise.all(ids.map((id) => this.#getMeta(id)));
        for (const m of metas) {
          if (m !== undefined && matchesQuery(m.stored, plan)) out.push(publicMeta(m.stored));
          if (out.length >= plan.limit) break;
        }
        start = `${res.kvs[res.kvs.length - 1]!.key.toString('utf8')}\0`;
        if (res.kvs.length < LIST_CHUNK) break;
      }
      return out;
    });
  }

  delete(id: string): Promise<void> {
    return this.#guard(async () => {
      checkKeyId(id);
      await this.#locks.run(id, () =>
        this.#op(async () => {
          for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
            const got = await this.#getMeta(id);
            if (got === undefined) throw notFound(id);
            const { stored, rev } = got;
            const c = this.#client;
            const ops = [
              c.delete().key(this.#k.meta(id)),
              c.delete().key(this.#k.mat(id)),
              c.delete().key(this.#k.order(stored.ord)),
              c.delete().key(this.#k.st(stored.state, id)),
            ];
            ops.push(c.delete().key(this.#k.held(id)));
            if (stored.closedAt !== undefined) ops.push(c.delete().key(this.#k.closed(stored)));
            if (stored.expires !== null) ops.push(c.delete().key(this.#k.exp(stored)));
            const res = await c
              .if(this.#k.meta(id), 'Mod', '==', rev)
              .then(...ops)
              .commit();
            if (res.succeeded) return;
          }
          throw contended(id);
        }),
      );
    });
  }

  sweepExpired(now: Date = new Date(), options: SweepOptions = {}): Promise<number> {
    return this.#guard(async () => {
      checkNow(now);
      await this.#sweepHeld(now);
      const due = await this.#op(async () => {
        const res = await this.#client
          .getAll()
          .inRange({ start: this.#k.expPrefix, end: `${this.#k.expPrefix}${now.toISOString()}\x7f` })
          .exec();
        return res.kvs.map((kv) => kv.value.toString('utf8'));
      });
      let n = 0;
      for (const id of due) {
        const closed = await this.#locks.run(id, () =>
          this.#op(async () => {
            for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
              const got = await this.#getMeta(id);
              if (got === undefined || !isDue(got.stored, now)) return false;
              if (await this.#close(got.stored, got.rev, 'expired', now)) return true;
            }
            throw contended(id);
          }),
        );
        if (closed) {
          n++;
          // One compare-and-swap per key on etcd: each is its own durable write.
          options.onExpired?.([id]);
        }
      }
      return n;
    });
  }

  purgeClosed(before: Date, limit = 1000): Promise<number> {
    return this.#guard(async () => {
      checkNow(before);
      checkPurgeLimit(limit, 1000);
      // Oldest first from the closing-time index; '\x7f' sorts after the space and any id.
      const due = await this.#op(async () => {
        const res = await this.#client
          .getAll()
          .inRange({ start: this.#k.closedPrefix, end: `${this.#k.closedPrefix}${before.toISOString()}\x7f` })
          .sort('Key', 'Ascend')
          .limit(limit)
          .exec();
        return res.kvs.map((kv) => kv.value.toString('utf8'));
      });
      let n = 0;
      for (const id of due) {
        const removed = await this.#locks.run(id, () =>
          this.#op(async () => {
            for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
              const got = await this.#getMeta(id);
              if (got === undefined) return false;
              const { stored, rev } = got;
              if (stored.state === 'active' || stored.closedAt === undefined) return false;
              if (Date.parse(stored.closedAt) > before.getTime()) return false;
              const c = this.#client;
              const res = await c
                .if(this.#k.meta(id), 'Mod', '==', rev)
                .then(
                  c.delete().key(this.#k.meta(id)),
                  c.delete().key(this.#k.order(stored.ord)),
                  c.delete().key(this.#k.st(stored.state, id)),
                  c.delete().key(this.#k.held(id)),
                  c.delete().key(this.#k.closed(stored)),
                )
                .commit();
              if (res.succeeded) return true;
            }
            throw contended(id);
          }),
        );
        if (removed) n++;
      }
      return n;
    });
  }

  /** Destroys held material past its `until` (few records: holds last minutes). */
  async #sweepHeld(now: Date): Promise<void> {
    const res = await this.#op(() => this.#client.getAll().prefix(this.#k.heldPrefix).exec());
    for (const kv of res.kvs) {
      const held = JSON.parse(kv.value.toString('utf8')) as HeldRecord;
      if (Date.parse(held.until) > now.getTime()) continue;
      const key = kv.key.toString('utf8');
      // Guarded by the revision read: a concurrent redelivery's delete wins, and that is fine.
      await this.#op(() =>
        this.#client.if(key, 'Mod', '==', kv.mod_revision).then(this.#client.delete().key(key)).commit(),
      );
    }
  }

  counts(): Promise<Record<KeyState, number>> {
    return this.#guard(() =>
      this.#op(async () => {
        const counts = emptyCounts();
        const n = await Promise.all(
          KEY_STATES.map((s) => this.#client.getAll().prefix(this.#k.stPrefix(s)).count()),
        );
        KEY_STATES.forEach((s, i) => {
          counts[s] = n[i]!;
        });
        return counts;
      }),
    );
  }

  /** Refuses new operations, lets admitted ones finish, then wipes the data key. The backend closes the client. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
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
        for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
          const got = await this.#getMeta(id);
          if (got === undefined) throw notFound(id);
          const { stored, rev } = got;
          if (accessDecision(stored, now) === 'expire') {
            if (await this.#close(stored, rev, 'expired', now)) throw expired(id);
            continue;
          }
          const sealed = await this.#client.get(this.#k.mat(id)).buffer();
          if (sealed === null) {
            // Closed between our two reads? Then the metadata moved on: read it again.
            const again = await this.#getMeta(id);
            if (again !== undefined && again.rev !== rev) continue;
            throw new StoreIntegrityError(`key ${id} is active but its stored material is missing`, id);
          }
          const material = this.#open(sealed, stored);
          if (!consume) return { meta: publicMeta(stored), material };
          let ok: boolean;
          const held: HeldRecord | undefined = options.hold && {
            sealed: sealed.toString('base64'),
            digest: holdDigest(options.hold.token),
            until: options.hold.until.toISOString(),
          };
          // Last moment to notice the requester is gone: after the transaction there is no undo.
          if (options.signal?.aborted) {
            material.fill(0);
            throw aborted(id);
          }
          try {
            ok = await this.#close(stored, rev, 'taken', now, held);
          } catch (err) {
            material.fill(0);
            throw err;
          }
          if (ok) return { meta: publicMeta(closedStored(stored, 'taken', now)), material };
          material.fill(0);
        }
        throw contended(id);
      }),
    );
  }

  /**
   * Closes an active key in one transaction guarded by its metadata revision. Resolves false if
   * the key changed since `rev` (someone else closed or replaced it) — unless the change is our
   * own write, committed by a retried request, which counts as success.
   */
  async #close(
    stored: StoredMeta,
    rev: string,
    state: 'taken' | 'expired',
    now: Date,
    held?: HeldRecord,
  ): Promise<boolean> {
    const c = this.#client;
    const token = randomUUID();
    const next: StoredMeta = { ...closedStored(stored, state, now), c: token };
    const ops: IRequestOp[] = await Promise.all([
      c.put(this.#k.meta(stored.id)).value(JSON.stringify(next)).op(),
      c.delete().key(this.#k.mat(stored.id)).op(),
      c.delete().key(this.#k.st(stored.state, stored.id)).op(),
      c.put(this.#k.st(state, stored.id)).value('').op(),
      c.put(this.#k.closed(next)).value(stored.id).op(),
    ]);
    if (stored.expires !== null) ops.push(await c.delete().key(this.#k.exp(stored)).op());
    if (held !== undefined) ops.push(await c.put(this.#k.held(stored.id)).value(JSON.stringify(held)).op());
    const res = await c
      .if(this.#k.meta(stored.id), 'Mod', '==', rev)
      .then(...ops)
      .commit();
    if (res.succeeded) return true;
    const after = await this.#getMeta(stored.id);
    return after?.stored.c === token;
  }

  async #getMeta(id: string): Promise<{ stored: StoredMeta; rev: string } | undefined> {
    const res = await this.#client.get(this.#k.meta(id)).exec();
    const kv = res.kvs[0];
    if (kv === undefined) return undefined;
    return { stored: JSON.parse(kv.value.toString('utf8')) as StoredMeta, rev: kv.mod_revision };
  }

  #nextOrd(): string {
    const us = Date.now() * 1000;
    this.#lastOrd = Math.max(this.#lastOrd + 1, us);
    return `${this.#lastOrd.toString(16).padStart(16, '0')}-${this.#writer}`;
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

  #op<T>(fn: () => Promise<T>): Promise<T> {
    return etcdOp(this.#endpoints, fn);
  }

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

function closedStored(stored: StoredMeta, state: 'taken' | 'expired', now: Date): StoredMeta {
  return closedMetadata(stored, state, now) as StoredMeta;
}

function contended(id: string): QkmError {
  return new QkmError('STORE_UNAVAILABLE', `key ${id} kept changing under concurrent writers; retry`, {
    details: { id, reason: 'contended' },
  });
}

function publicMeta(stored: StoredMeta): KeyMetadata {
  const { ord: _o, w: _w, c: _c, ...meta } = stored;
  return meta;
}
