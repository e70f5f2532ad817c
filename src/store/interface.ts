import type { KeyStore } from '../keys/interface.js';

/**
 * Small JSON records that other subsystems persist next to the keys: agents (hashed tokens),
 * pinned peers, the handshake replay cache, audit records, identity metadata. One namespace
 * per subsystem. Values are JSON-serialisable and are NOT secret (secrets go in the KeyStore).
 */
export interface RecordStore<T> {
  get(key: string): Promise<T | undefined>;
  put(key: string, value: T): Promise<void>;
  /**
   * Atomically stores `value` only if `key` is absent; resolves true if it stored it.
   * Used for replay caches: of concurrent callers with the same key, exactly one gets true.
   * Durable (synced) before it resolves.
   */
  putIfAbsent(key: string, value: T): Promise<boolean>;
  del(key: string): Promise<void>;
  /**
   * Atomically deletes `key` and resolves with the value it held, or undefined if it was absent.
   * Of concurrent callers — in this process or in any other sharing the store — exactly one gets
   * the value: the take-once primitive (one-time prekeys). Durable before it resolves.
   */
  take(key: string): Promise<T | undefined>;
  /**
   * Compare-and-swap update: calls `fn` with the current value (undefined if absent) and stores
   * what it returns, but only if the record was not changed in between; if it was, `fn` is
   * called again on the newer value. So `fn` must be a pure function of its argument (it may
   * run several times). A throw from `fn` aborts: nothing is stored and the error propagates.
   * Resolves with the value stored (a copy). Concurrent updates of one key — across processes
   * on a shared store — all apply, each on the result of the one before (N increments add N).
   * Durable before it resolves; under endless contention it rejects STORE_UNAVAILABLE.
   */
  update(key: string, fn: (current: T | undefined) => T): Promise<T>;
  /**
   * All records in key order (optionally only keys starting with `prefix`), or only the first
   * `limit` of them: a page costs O(limit) reads, not a scan of the prefix.
   */
  entries(prefix?: string, options?: EntriesOptions): Promise<Array<[string, T]>>;
}

export interface EntriesOptions {
  /** At most this many records (a positive integer). */
  limit?: number;
}

/** One opened storage backend: the key store plus namespaced record stores, sharing one database. */
export interface StorageBackend {
  readonly keys: KeyStore;
  records<T>(namespace: string): RecordStore<T>;
  close(): Promise<void>;
}
