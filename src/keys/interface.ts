import type { Provenance } from '../core/provenance.js';

/**
 * The key-store family: types only. Implementations: `LevelKeyStore` (LevelDB, the embedded
 * default) and `MemoryKeyStore` (tests). One conformance suite runs against both
 * (`test/keys/keystore-conformance.test.ts`).
 *
 * Storage is untrusted: implementations keep key material encrypted (AES-256-GCM under the
 * key-encryption key, with the key id and metadata bound as associated data) and never write
 * plaintext key bytes to their backend. Errors are `QkmError`s with codes KEY_NOT_FOUND,
 * KEY_ALREADY_TAKEN, KEY_EXPIRED, KEY_EXISTS, STORE_UNAVAILABLE.
 */

export type KeyState = 'active' | 'taken' | 'expired';

/**
 * `session`: a hybrid session key; `symmetric`: a key made by `POST /v1/keys`;
 * `identity`: a node's long-term secret (kept, never taken); `qkd`: QKD material held for a peer.
 */
export type KeyPurpose = 'symmetric' | 'session' | 'identity' | 'qkd';

export interface KeyMetadata {
  /** UUID v4. */
  id: string;
  /** Length of the key material in bytes. */
  size: number;
  purpose: KeyPurpose;
  /** ISO-8601. */
  created: string;
  /** ISO-8601, or null for keys that do not expire. */
  expires: string | null;
  state: KeyState;
  /** When the key was taken or expired, ISO-8601. */
  closedAt?: string;
  /** Agent that created it (token name), if any. */
  owner?: string;
  label?: string;
  provenance: Provenance;
}

export interface NewKey {
  meta: Omit<KeyMetadata, 'state' | 'closedAt'>;
  material: Uint8Array;
}

export interface KeyListQuery {
  state?: KeyState;
  purpose?: KeyPurpose;
  owner?: string;
  /** Page size, default 100, at most 1000. */
  limit?: number;
  /** Return ids strictly after this one (ids are listed in creation order). */
  after?: string;
  // Cost: a page with `state` set reads O(limit) entries however many keys are in other states
  // (the LevelDB store keeps a creation-order index per state); `purpose`/`owner` filter within it.
}

/** Options of `KeyStore.take`. */
export interface TakeOptions {
  /**
   * Checked under the key's lock right before the take commits: if it has aborted (the
   * requester's connection is gone), the take rejects REQUEST_ABORTED and the key stays active.
   */
  signal?: AbortSignal;
  /**
   * Keep the sealed material after the take, in the same atomic write, so that the same
   * requester (`token`, an opaque string) can have it once more with `redeliver` before
   * `until` — for a take whose answer was lost. Stores without `redeliver` ignore it.
   */
  hold?: { token: string; until: Date };
}

/** Options of `KeyStore.sweepExpired`. */
export interface SweepOptions {
  /**
   * Called with the ids of the keys expired by each atomic write, once it is durable, before the
   * sweep resolves (so the caller can audit them; a sweep that rejects half way has still
   * reported the ids it committed). Must not throw.
   */
  onExpired?(ids: readonly string[]): void;
}

export interface KeyStore {
  /** Stores a new active key. Rejects KEY_EXISTS if the id is taken. Durable when it resolves. */
  put(key: NewKey): Promise<KeyMetadata>;
  /**
   * Single-use retrieval: atomically marks the key taken, destroys its stored material and
   * returns it. Exactly one of any number of concurrent `take(id)` calls (in any process
   * sharing the store) succeeds; the others reject KEY_ALREADY_TAKEN. An expired key rejects
   * KEY_EXPIRED (and is destroyed). Durable (synced) before it resolves, so a crash after a
   * successful take can never hand the key out again, and a crash before it loses nothing.
   */
  take(id: string, now?: Date, options?: TakeOptions): Promise<{ meta: KeyMetadata; material: Uint8Array }>;
  /**
   * The material of a key taken with `hold` (see TakeOptions), handed out once more and then
   * destroyed. Rejects KEY_ALREADY_TAKEN (details `delivered: true`) when the token does not
   * match, the hold has already been redelivered, or `until` has passed; KEY_NOT_FOUND for an
   * unknown id. Durable before it resolves. Optional: a store without it does not hold takes.
   */
  redeliver?(id: string, token: string, now?: Date): Promise<{ meta: KeyMetadata; material: Uint8Array }>;
  /**
   * Non-consuming read, for keys the appliance itself keeps using (purpose `identity`).
   * Rejects KEY_NOT_FOUND / KEY_ALREADY_TAKEN / KEY_EXPIRED like `take`.
   */
  read(id: string, now?: Date): Promise<{ meta: KeyMetadata; material: Uint8Array }>;
  /** Metadata only; never material. Rejects KEY_NOT_FOUND. */
  meta(id: string): Promise<KeyMetadata>;
  list(query?: KeyListQuery): Promise<KeyMetadata[]>;
  /** Destroys the material and removes the key and its metadata. Rejects KEY_NOT_FOUND. */
  delete(id: string): Promise<void>;
  /**
   * Marks every active key with `expires <= now` expired and destroys its material, and
   * destroys held material (TakeOptions.hold) past its `until`. Returns how many keys expired.
   * The expired keys' `closedAt` is `now` exactly (crash reconciliation finds a sweep's keys by it).
   */
  sweepExpired(now?: Date, options?: SweepOptions): Promise<number>;
  /**
   * Retention of closed keys: removes the metadata (and any held material) of at most `limit`
   * taken or expired keys whose `closedAt` is at or before `before`, oldest first, in one atomic
   * durable batch, and returns how many it removed (fewer than `limit`: nothing older is left).
   * Active keys are never touched. A purged id is unknown afterwards (KEY_NOT_FOUND, and may be
   * reused); the audit log keeps the key's history. `limit` is an integer from 1 to 1000
   * (default 1000), else INVALID_PARAMETER; `before` must be a valid Date.
   *
   * Cost: O(limit), whatever the number of keys (implementations keep an index by closing time).
   * Optional, so that a store added before it still compiles; `KeyService.sweep` purges only
   * when the store has it. Conformance: `test/keys/keystore-conformance.test.ts` ("purgeClosed").
   */
  purgeClosed?(before: Date, limit?: number): Promise<number>;
  /** Counts by state, for status and metrics. */
  counts(): Promise<Record<KeyState, number>>;
  close(): Promise<void>;
}
