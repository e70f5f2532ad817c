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
