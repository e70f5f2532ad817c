import { createHash } from 'node:crypto';
import { QkmError } from '../core/errors.js';
import type { KeyListQuery, KeyMetadata, KeyPurpose, KeyState, NewKey } from './interface.js';

/**
 * The KeyStore semantics both backends share: argument checks, state transitions, list filtering.
 * Keeping them here means the memory and LevelDB stores differ only in how they persist.
 */

export const KEY_STATES: readonly KeyState[] = ['active', 'taken', 'expired'];
export const KEY_PURPOSES: readonly KeyPurpose[] = ['symmetric', 'session', 'identity', 'qkd'];
export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;

/**
 * Key ids: UUIDs in practice; the store accepts any 1–128 character id of letters, digits and
 * `._:-` (so QKD key ids fit) and refuses anything else, which keeps ids safe as database keys,
 * file-free and log-safe.
 */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const MAX_TEXT = 256;

export function invalid(message: string): QkmError {
  return new QkmError('INVALID_PARAMETER', message);
}
export function notFound(id: string): QkmError {
  return new QkmError('KEY_NOT_FOUND', `No key with id ${id}`, { details: { id } });
}
export function alreadyTaken(id: string): QkmError {
  return new QkmError('KEY_ALREADY_TAKEN', `Key ${id} was already taken; keys are single-use`, {
    details: { id },
  });
}
/** A redelivery that cannot happen: the key was taken and its one redelivery is spent or lapsed. */
export function alreadyDelivered(id: string): QkmError {
  return new QkmError('KEY_ALREADY_TAKEN', `Key ${id} was already taken and delivered`, {
    details: { id, delivered: true },
  });
}
export function aborted(id: string): QkmError {
  return new QkmError('REQUEST_ABORTED', `the take of key ${id} was not committed: the connection closed`, {
    details: { id },
  });
}
/** Held tokens are stored hashed: the store never keeps what a requester could replay. */
export function holdDigest(token: string): string {
  return createHash('sha256').update(`qkm/v1 take-hold\0${token}`).digest('hex');
}
export function checkHold(hold: { token: string; until: Date } | undefined): void {
  if (hold === undefined) return;
  if (typeof hold.token !== 'string' || hold.token.length === 0)
    throw invalid('hold.token must be a non-empty string');
  checkNow(hold.until);
}
export function expired(id: string): QkmError {
  return new QkmError('KEY_EXPIRED', `Key ${id} has expired`, { details: { id } });
}
export function keyExists(id: string): QkmError {
  return new QkmError('KEY_EXISTS', `A key with id ${id} already exists`, { details: { id } });
}
export function storeClosed(): QkmError {
  return new QkmError('STORE_UNAVAILABLE', 'The key store is closed');
}

export function isValidKeyId(id: unknown): id is string {
  return typeof id === 'string' && ID_PATTERN.test(id);
}

export function checkKeyId(id: unknown): string {
  if (!isValidKeyId(id)) throw invalid('key id must be 1-128 characters of letters, digits and ._:-');
  return id;
}

/**
 * Validates a new key and returns its metadata as it will be persisted: state `active`, plain
 * JSON (a round trip drops undefined fields, so both backends store and bind the same thing).
 */
export function activeMetadata(key: NewKey): KeyMetadata {
  if (key === null || typeof key !== 'object' || key.meta === null || typeof key.meta !== 'object') {
    throw invalid('a new key needs meta and material');
  }
  const { meta, material } = key;
  checkKeyId(meta.id);
  if (!(material instanceof Uint8Array) || material.length === 0) {
    throw invalid('key material must be a non-empty Uint8Array');
  }
  if (!Number.isSafeInteger(meta.size) || meta.size !== material.length) {
    throw invalid(`key size ${String(meta.size)} does not match the material length ${material.length}`);
  }
  if (!KEY_PURPOSES.includes(meta.purpose)) throw invalid('unknown key purpose');
  checkIsoDate(meta.created, 'created');
  if (meta.expires !== null) checkIsoDate(meta.expires, 'expires');
  checkOptionalText(meta.owner, 'owner');
  checkOptionalText(meta.label, 'label');
  if (meta.provenance === null || typeof meta.provenance !== 'object')
    throw invalid('key provenance is required');
  // Only the documented fields are kept: a stray property (say, `material`) never reaches storage.
  const { id, size, purpose, created, expires, owner, label, provenance } = meta;
  const plain = JSON.parse(
    JSON.stringify({ id, size, purpose, created, expires, state: 'active', owner, label, provenance }),
  ) as KeyMetadata;
  return plain;
}

function checkIsoDate(value: unknown, name: string): void {
  // Year ≤ 9999 keeps `toISOString()` at its fixed 24-character form, which the LevelDB expiry
  // index relies on to sort by time.
  const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(ms) || new Date(ms).getUTCFullYear() > 9999 || ms < 0) {
    throw invalid(`${name} must be an ISO-8601 date between 1970 and 9999`);
  }
}

function checkOptionalText(value: unknown, name: string): void {
  if (value === undefined) return;
  if (typeof value !== 'string' || value.length > MAX_TEXT) {
    throw invalid(`${name} must be a string of at most ${MAX_TEXT} characters`);
  }
}

/** Normalised list query: filters checked, limit defaulted and bounded. */
export interface ListPlan {
  state?: KeyState;
  purpose?: KeyPurpose;
  owner?: string;
  limit: number;
  after?: string;
}

export function listPlan(query: KeyListQuery = {}): ListPlan {
  const limit = query.limit ?? DEFAULT_LIST_LIMIT;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw invalid(`limit must be an integer from 1 to ${MAX_LIST_LIMIT}`);
  }
  if (query.state !== undefined && !KEY_STATES.includes(query.state)) throw invalid('unknown key state');
  if (query.purpose !== undefined && !KEY_PURPOSES.includes(query.purpose))
    throw invalid('unknown key purpose');
  if (query.owner !== undefined && typeof query.owner !== 'string') throw invalid('owner must be a string');
  if (query.after !== undefined) checkKeyId(query.after);
  return { ...query, limit };
}

/** A list cursor naming a key that no longer exists cannot be placed in the creation order. */
export function unknownCursor(after: string): QkmError {
  return invalid(`list cursor "after" names no key in the store (${after}); restart the listing`);
}

export function matchesQuery(meta: KeyMetadata, plan: ListPlan): boolean {
  return (
    (plan.state === undefined || meta.state === plan.state) &&
    (plan.purpose === undefined || meta.purpose === plan.purpose) &&
    (plan.owner === undefined || meta.owner === plan.owner)
  );
}

/** True when an active key has reached its expiry (`expires <= now`). */
export function isDue(meta: KeyMetadata, now: Date): boolean {
  return meta.state === 'active' && meta.expires !== null && Date.parse(meta.expires) <= now.getTime();
}

/**
 * What `take`/`read` must do with a key: `serve` it, or `expire` it (then reject KEY_EXPIRED).
 * Throws KEY_ALREADY_TAKEN / KEY_EXPIRED for keys already closed.
 */
export function accessDecision(meta: KeyMetadata, now: Date): 'serve' | 'expire' {
  if (meta.state === 'taken') throw alreadyTaken(meta.id);
  if (meta.state === 'expired') throw expired(meta.id);
  return isDue(meta, now) ? 'expire' : 'serve';
}

export function closedMetadata(meta: KeyMetadata, state: 'taken' | 'expired', now: Date): KeyMetadata {
  return { ...meta, state, closedAt: now.toISOString() };
}

export function emptyCounts(): Record<KeyState, number> {
  return { active: 0, taken: 0, expired: 0 };
}

/** `purgeClosed`'s batch bound: an integer from 1 to the store's maximum. */
export function checkPurgeLimit(limit: unknown, max: number): number {
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1 || limit > max) {
    throw invalid(`purge limit must be an integer from 1 to ${max}`);
  }
  return limit;
}

export function checkNow(now: Date): Date {
  if (!(now instanceof Date) || !Number.isFinite(now.getTime())) throw invalid('now must be a valid Date');
  return now;
}
