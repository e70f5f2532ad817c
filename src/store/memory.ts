import { MemoryKeyStore } from '../keys/memory-store.js';
import { QkmError } from '../core/errors.js';
import type { EntriesOptions, RecordStore, StorageBackend } from './interface.js';
import { checkLimit, checkNamespace, checkRecordKey, compareUtf8, toJson } from './records.js';

/**
 * In-memory storage backend for tests and demos: a `MemoryKeyStore` plus JSON record stores.
 * Same semantics as the LevelDB backend (values round-trip through JSON, entries in UTF-8 byte
 * order, operations after `close()` reject STORE_UNAVAILABLE), without durability.
 */
export function createMemoryBackend(): StorageBackend {
  return new MemoryBackend();
}

class MemoryBackend implements StorageBackend {
  readonly keys = new MemoryKeyStore();
  readonly #records = new Map<string, MemoryRecordStore<unknown>>();
  readonly #state = { closed: false };

  records<T>(namespace: string): RecordStore<T> {
    checkNamespace(namespace);
    let store = this.#records.get(namespace);
    if (!store) {
      store = new MemoryRecordStore<unknown>(this.#state);
      this.#records.set(namespace, store);
    }
    return store as RecordStore<T>;
  }

  async close(): Promise<void> {
    this.#state.closed = true;
    await this.keys.close();
  }
}

class MemoryRecordStore<T> implements RecordStore<T> {
  readonly #data = new Map<string, string>();
  readonly #state: { closed: boolean };

  constructor(state: { closed: boolean }) {
    this.#state = state;
  }

  async get(key: string): Promise<T | undefined> {
    this.#assertOpen();
    checkRecordKey(key);
    const json = this.#data.get(key);
    return json === undefined ? undefined : (JSON.parse(json) as T);
  }

  async put(key: string, value: T): Promise<void> {
    this.#assertOpen();
    checkRecordKey(key);
    this.#data.set(key, toJson(value));
  }

  async putIfAbsent(key: string, value: T): Promise<boolean> {
    this.#assertOpen();
    checkRecordKey(key);
    const json = toJson(value);
    if (this.#data.has(key)) return false;
    this.#data.set(key, json);
    return true;
  }

  async del(key: string): Promise<void> {
    this.#assertOpen();
    checkRecordKey(key);
    this.#data.delete(key);
  }

  // No lock needed: each of these runs from its checks to its write without an await, and the
  // backend lives in one process, so nothing can interleave.
  async take(key: string): Promise<T | undefined> {
    this.#assertOpen();
    checkRecordKey(key);
    const json = this.#data.get(key);
    if (json === undefined) return undefined;
    this.#data.delete(key);
    return JSON.parse(json) as T;
  }

  async update(key: string, fn: (current: T | undefined) => T): Promise<T> {
    this.#assertOpen();
    checkRecordKey(key);
    const json = this.#data.get(key);
    const next = toJson(fn(json === undefined ? undefined : (JSON.parse(json) as T)));
    this.#data.set(key, next);
    return JSON.parse(next) as T;
  }

  async entries(prefix = '', options: EntriesOptions = {}): Promise<Array<[string, T]>> {
    this.#assertOpen();
    const limit = checkLimit(options.limit);
    return [...this.#data.keys()]
      .filter((k) => k.startsWith(prefix))
      .sort(compareUtf8)
      .slice(0, limit)
      .map((k) => [k, JSON.parse(this.#data.get(k)!) as T]);
  }

  #assertOpen(): void {
    if (this.#state.closed) throw new QkmError('STORE_UNAVAILABLE', 'The storage backend is closed');
  }
}
