import { mkdir } from 'node:fs/promises';
import type { AbstractSublevel } from 'abstract-level';
import { ClassicLevel } from 'classic-level';
import { LevelKeyStore, type RootDb } from '../keys/level-store.js';
import type { EntriesOptions, RecordStore, StorageBackend } from './interface.js';
import { GroupCommit } from './group-commit.js';
import { KeyedMutex } from './keyed-mutex.js';
import { levelOp, toStoreError } from './level-errors.js';
import { checkLimit, checkNamespace, checkRecordKey, toJson } from './records.js';

export interface LevelBackendOptions {
  /** Directory of the LevelDB database (created, mode 0700, if missing). */
  path: string;
  /** The 32-byte key-encryption key (`loadOrCreateKek`). The backend does not keep a reference. */
  kek: Uint8Array;
  /** See `LevelKeyStore` — background compaction of destroyed material (default true). */
  compactOnDestroy?: boolean;
  /** See `LevelKeyStore` — how long destroyed ids are gathered per compaction (default 1 s). */
  compactDelayMs?: number;
  /** LevelDB block cache, bytes (default LEVEL_CACHE_BYTES). */
  cacheBytes?: number;
  /** LevelDB memtable, bytes (default LEVEL_WRITE_BUFFER_BYTES). */
  writeBufferBytes?: number;
  /** LevelDB's table cache: SST files kept open (default LEVEL_MAX_OPEN_FILES). */
  maxOpenFiles?: number;
}

/**
 * LevelDB's own memory, set explicitly rather than left to the library's defaults (the same
 * values today), because it is most of the appliance's memory outside the V8 heap: the block
 * cache fills up to `cacheBytes` as a long run reads its tables, and the memtable grows to
 * `writeBufferBytes` (two while one is written out) before each flush to disk. Both plateau:
 * a soak's RSS climbs while they fill during warm-up, then stays flat (#16).
 */
export const LEVEL_CACHE_BYTES = 8 * 2 ** 20;
export const LEVEL_WRITE_BUFFER_BYTES = 4 * 2 ** 20;
/**
 * LevelDB's table cache holds, per open SST file, its index block (and the file's mapping, read
 * pages of which count as file-backed RSS): memory that grows with the data dir up to this many
 * files, outside the block cache and not in `approximateMemoryUsage`. LevelDB's default (1000),
 * set explicitly; a smaller value bounds that memory at the cost of reopening tables.
 */
export const LEVEL_MAX_OPEN_FILES = 1000;

/**
 * Opens the LevelDB storage backend: one database holding the key store and one sublevel per
 * record namespace (`r.<namespace>`). Single-process: LevelDB locks the directory, and a second
 * opener (another qkm process, or this one twice) is refused with QkmError STORE_UNAVAILABLE
 * ("data dir in use by another qkm process?"). A wrong KEK rejects `KekError` (STORE_UNAVAILABLE).
 */
export async function openLevelBackend(options: LevelBackendOptions): Promise<StorageBackend> {
  const { path, kek } = options;
  if (!(kek instanceof Uint8Array) || kek.length !== 32) {
    throw new RangeError('kek must be a 32-byte Uint8Array');
  }
  await mkdir(path, { recursive: true, mode: 0o700 });
  const root: RootDb = new ClassicLevel<string, string>(path, {
    keyEncoding: 'utf8',
    valueEncoding: 'utf8',
    cacheSize: options.cacheBytes ?? LEVEL_CACHE_BYTES,
    writeBufferSize: options.writeBufferBytes ?? LEVEL_WRITE_BUFFER_BYTES,
    maxOpenFiles: options.maxOpenFiles ?? LEVEL_MAX_OPEN_FILES,
  });
  try {
    await root.open();
  } catch (err) {
    throw toStoreError(err, path);
  }
  try {
    const opts = {
      ...(options.compactOnDestroy === undefined ? {} : { compactOnDestroy: options.compactOnDestroy }),
      ...(options.compactDelayMs === undefined ? {} : { compactDelayMs: options.compactDelayMs }),
    };
    const keys = await LevelKeyStore.open(root, path, kek, opts);
    return new LevelBackend(root, path, keys);
  } catch (err) {
    await root.close().catch(() => undefined);
    throw err;
  }
}

class LevelBackend implements StorageBackend {
  readonly keys: LevelKeyStore;
  readonly #root: RootDb;
  readonly #path: string;
  readonly #records = new Map<string, LevelRecordStore<unknown>>();
  /** One for all namespaces: a request's writes to several of them share one fsync. */
  readonly #writes: GroupCommit<RecordOp>;
  #closing: Promise<void> | undefined;

  constructor(root: RootDb, path: string, keys: LevelKeyStore) {
    this.#root = root;
    this.#path = path;
    this.keys = keys;
    // Through the root so `sync` reaches classic-level: durable (fsync'd) when it resolves.
    this.#writes = new GroupCommit<RecordOp>((ops) =>
      levelOp(path, () => root.batch<string, string>(ops, { sync: true })),
    );
  }

  /**
   * Bytes LevelDB reports for its block cache and memtables (`leveldb.approximate-memory-usage`):
   * the part of the store's native memory bounded by LEVEL_CACHE_BYTES and
   * LEVEL_WRITE_BUFFER_BYTES. For the soak bench and diagnostics; 0 once closed.
   */
  approximateMemoryUsage(): number {
    if (this.#root.status !== 'open') return 0;
    return Number(
      (this.#root as ClassicLevel<string, string>).getProperty('leveldb.approximate-memory-usage'),
    );
  }

  records<T>(namespace: string): RecordStore<T> {
    checkNamespace(namespace);
    let store = this.#records.get(namespace);
    if (!store) {
      store = new LevelRecordStore<unknown>(this.#root, this.#path, namespace, this.#writes);
      this.#records.set(namespace, store);
    }
    return store as RecordStore<T>;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.keys.close();
      await levelOp(this.#path, () => this.#root.close());
    })();
    return this.#closing;
  }
}

type RecordSub = AbstractSublevel<RootDb, string | Buffer | Uint8Array, string, string>;
type RecordOp =
  | { type: 'put'; sublevel: RecordSub; key: string; value: string }
  | { type: 'del'; sublevel: RecordSub; key: string };

/** One namespace of JSON records. Every write is synced and serialised per key. */
class LevelRecordStore<T> implements RecordStore<T> {
  readonly #path: string;
  readonly #db: RecordSub;
  readonly #locks = new KeyedMutex();
  readonly #writes: GroupCommit<RecordOp>;

  constructor(root: RootDb, path: string, namespace: string, writes: GroupCommit<RecordOp>) {
    this.#path = path;
    this.#writes = writes;
    // Values are stored as JSON text (utf8), parsed on the way out, as in the memory backend.
    this.#db = root.sublevel<string, string>(`r.${namespace}`, { valueEncoding: 'utf8' });
  }

  async get(key: string): Promise<T | undefined> {
    checkRecordKey(key);
    const json = await levelOp(this.#path, () => this.#db.get(key));
    return json === undefined ? undefined : (JSON.parse(json) as T);
  }

  async put(key: string, value: T): Promise<void> {
    checkRecordKey(key);
    const json = toJson(value);
    await this.#locks.run(key, () => this.#write({ type: 'put', sublevel: this.#db, key, value: json }));
  }

  async putIfAbsent(key: string, value: T): Promise<boolean> {
    checkRecordKey(key);
    const json = toJson(value);
    return this.#locks.run(key, async () => {
      if ((await levelOp(this.#path, () => this.#db.get(key))) !== undefined) return false;
      await this.#write({ type: 'put', sublevel: this.#db, key, value: json });
      return true;
    });
  }

  async del(key: string): Promise<void> {
    checkRecordKey(key);
    await this.#locks.run(key, () => this.#write({ type: 'del', sublevel: this.#db, key }));
  }

  // take and update are atomic with the per-key lock alone: LevelDB's directory lock admits one
  // process, and within it every write of a key (put, del, putIfAbsent, take, update) holds
  // that key's lock, so nothing writes between the read and the write.
  async take(key: string): Promise<T | undefined> {
    checkRecordKey(key);
    return this.#locks.run(key, async () => {
      const json = await levelOp(this.#path, () => this.#db.get(key));
      if (json === undefined) return undefined;
      await this.#write({ type: 'del', sublevel: this.#db, key });
      return JSON.parse(json) as T;
    });
  }

  async update(key: string, fn: (current: T | undefined) => T): Promise<T> {
    checkRecordKey(key);
    return this.#locks.run(key, async () => {
      const json = await levelOp(this.#path, () => this.#db.get(key));
      const next = toJson(fn(json === undefined ? undefined : (JSON.parse(json) as T)));
      await this.#write({ type: 'put', sublevel: this.#db, key, value: next });
      return JSON.parse(next) as T;
    });
  }

  async entries(prefix = '', options: EntriesOptions = {}): Promise<Array<[string, T]>> {
    const limit = checkLimit(options.limit) ?? Number.POSITIVE_INFINITY;
    return levelOp(this.#path, async () => {
      const out: Array<[string, T]> = [];
      for await (const [key, json] of this.#db.iterator(prefix === '' ? {} : { gte: prefix })) {
        if (!key.startsWith(prefix) || out.length >= limit) break;
        out.push([key, JSON.parse(json) as T]);
      }
      return out;
    });
  }

  /** Durable (fsync'd) when it resolves; batched with the other writes of this turn (GroupCommit). */
  #write(op: RecordOp): Promise<void> {
    return this.#writes.write(op);
  }
}
