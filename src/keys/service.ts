import { randomUUID } from 'node:crypto';
import { isQkmError, QkmError } from '../core/errors.js';
import type { EntropyProvider } from '../entropy/types.js';
import type { KeyListQuery, KeyMetadata, KeyPurpose, KeyState, KeyStore } from './interface.js';
import type { KeyAuditJournal, ReconcileCounts } from './audit-journal.js';
import { KEY_PURPOSES, unknownCursor } from './rules.js';

export const MIN_KEY_BYTES = 16;
export const MAX_KEY_BYTES = 1024;
export const DEFAULT_KEY_TTL_SECONDS = 3600;
/** Upper bound on a requested TTL: 30 days. Keys are meant to be taken soon, not parked. */
export const MAX_KEY_TTL_SECONDS = 30 * 24 * 3600;
const MAX_TEXT = 256;
/** A retried take (same request id) can fetch the material again for this long. */
export const DEFAULT_REDELIVERY_SECONDS = 300;
/** Closed keys' metadata is kept this long after they close (7 days), then purged by `sweep`. */
export const DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600;
/** Keys purged per store batch, and batches per sweep: a sweep never holds the store for long. */
export const PURGE_BATCH = 256;
export const PURGE_BATCHES_PER_SWEEP = 16;

export interface CreateKeyRequest {
  /** Key length in bytes, 16..1024. */
  size: number;
  /**
   * Lifetime in whole seconds, 1..`maxTtlSeconds`; omitted → the service default (3600 s).
   * `null` → the key never expires (for keys the appliance keeps, e.g. identities). `0` is
   * rejected INVALID_PARAMETER rather than read as "never": a zero lifetime is far more likely
   * a mistake than a request for an immortal key.
   */
  ttlSeconds?: number | null;
  /** Agent (token name) that owns the key; only it may take it (see `take`). */
  owner?: string;
  label?: string;
  /** Passed to the entropy provider: `quantum` fails with QUANTUM_ENTROPY_UNAVAILABLE rather than degrade. */
  require?: 'quantum' | 'any';
  /** Default `symmetric`. */
  purpose?: KeyPurpose;
}

/** Structured logger subset (pino-compatible). The service logs ids and sizes, never material. */
export interface KeyServiceLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface KeyServiceOptions {
  store: KeyStore;
  entropy: EntropyProvider;
  /** TTL when a request gives none (default 3600 s). */
  defaultTtlSeconds?: number;
  /** Largest TTL a request may ask for (default 30 days). */
  maxTtlSeconds?: number;
  /** Clock, injectable for tests. */
  now?: () => Date;
  /** How long a take with a request id keeps its material for one retry (default 300 s). */
  redeliveryWindowSeconds?: number;
  log?: KeyServiceLogger;
  /**
   * How long a taken or expired key's metadata stays listable after it closed (default 7 days;
   * 0 purges at the next sweep). The audit log keeps the history; see `KeyStore.purgeClosed`.
   */
  retentionSeconds?: number;
  /**
   * Records `key.created` and `key.taken` in the audit log through an intent journal, so that
   * audit and store agree after a crash (see audit-journal.ts). Without it the caller audits.
   */
  journal?: KeyAuditJournal;
}

/**
 * Creates keys from the entropy pipeline, stores them with the provenance of the bytes, and
 * hands them out once. The layer between the API/CLI and a `KeyStore`: it validates caller
 * input (INVALID_PARAMETER), applies ownership, and runs the expiry sweep.
 */
export class KeyService {
  readonly #store: KeyStore;
  readonly #entropy: EntropyProvider;
  readonly #defaultTtl: number;
  readonly #maxTtl: number;
  readonly #now: () => Date;
  readonly #log: KeyServiceLogger | undefined;
  readonly #redeliveryMs: number;
  readonly #journal: KeyAuditJournal | undefined;
  readonly #retentionMs: number;

  constructor(options: KeyServiceOptions) {
    this.#store = options.store;
    this.#entropy = options.entropy;
    this.#maxTtl = options.maxTtlSeconds ?? MAX_KEY_TTL_SECONDS;
    this.#defaultTtl = options.defaultTtlSeconds ?? DEFAULT_KEY_TTL_SECONDS;
    if (!Number.isSafeInteger(this.#maxTtl) || this.#maxTtl < 1)
      throw new RangeError('maxTtlSeconds must be ≥ 1');
    if (!Number.isSafeInteger(this.#defaultTtl) || this.#defaultTtl < 1 || this.#defaultTtl > this.#maxTtl) {
      throw new RangeError('defaultTtlSeconds must be an integer from 1 to maxTtlSeconds');
    }
    this.#now = options.now ?? (() => new Date());
    const retention = options.retentionSeconds ?? DEFAULT_RETENTION_SECONDS;
    if (!Number.isSafeInteger(retention) || retention < 0)
      throw new RangeError('retentionSeconds must be ≥ 0');
    this.#retentionMs = retention * 1000;
    this.#log = options.log;
    const window = options.redeliveryWindowSeconds ?? DEFAULT_REDELIVERY_SECONDS;
    if (!Number.isSafeInteger(window) || window < 1)
      throw new RangeError('redeliveryWindowSeconds must be ≥ 1');
    this.#redeliveryMs = window * 1000;
    this.#journal = options.journal;
  }

  /** True when this service writes key.created / key.taken itself (through its journal). */
  get audited(): boolean {
    return this.#journal !== undefined;
  }

  /** Settles audit intents a crash left behind; run once at start (see KeyAuditJournal). */
  async reconcileAudit(): Promise<ReconcileCounts> {
    if (!this.#journal) return { created: 0, taken: 0, dropped: 0, expired: 0 };
    const r = await this.#journal.reconcile(this.#store);
    if (r.created + r.taken + r.dropped + r.expired > 0)
      this.#log?.warn({ ...r }, 'audit reconciled with the key store after a crash');
    return r;
  }

  /**
   * Generates `size` bytes from the entropy provider and stores them as a new active key.
   * Rejects INVALID_PARAMETER for bad input, and whatever the provider rejects with (e.g.
   * QUANTUM_ENTROPY_UNAVAILABLE when `require: 'quantum'` cannot be met). Resolves with the
   * metadata only; the material is retrieved with `take`.
   */
  async create(request: CreateKeyRequest): Promise<KeyMetadata> {
    const { size, owner, label } = request;
    if (!Number.isSafeInteger(size) || size < MIN_KEY_BYTES || size > MAX_KEY_BYTES) {
      throw invalid(`size must be an integer from ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES} bytes`);
    }
    const ttl = request.ttlSeconds === undefined ? this.#defaultTtl : request.ttlSeconds;
    if (ttl !== null && (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > this.#maxTtl)) {
      throw invalid(`ttlSeconds must be an integer from 1 to ${this.#maxTtl} (or null for no expiry)`);
    }
    checkText(owner, 'owner');
    checkText(label, 'label');
    const purpose = request.purpose ?? 'symmetric';
    if (!KEY_PURPOSES.includes(purpose)) throw invalid('unknown key purpose');
    if (request.require !== undefined && request.require !== 'quantum' && request.require !== 'any') {
      throw invalid('require must be "quantum" or "any"');
    }

    const { bytes, provenance } = await this.#entropy.getEntropy(
      size,
      request.require === undefined ? {} : { require: request.require },
    );
    try {
      if (bytes.length !== size) {
        throw new QkmError('INTERNAL', `entropy provider returned ${bytes.length} bytes, ${size} requested`);
      }
      const created = this.#now();
      const id = randomUUID();
      const intent = await this.#journal?.begin('key.created', id, owner ?? 'system', {
        size,
        degraded: provenance.degraded,
        ...(provenance.reason ? { reason: provenance.reason } : {}),
      });
      const meta = await this.#store
        .put({
          meta: {
            id,
            size,
            purpose,
            created: created.toISOString(),
            expires: ttl === null ? null : new Date(created.getTime() + ttl * 1000).toISOString(),
            ...(owner === undefined ? {} : { owner }),
            ...(label === undefined ? {} : { label }),
            provenance,
          },
          material: bytes,
        })
        .catch(async (err: unknown) => {
          if (intent) await this.#journal!.abandon(intent);
          throw err;
        });
      if (intent) await this.#journal!.done(intent);
      this.#log?.info(
        { keyId: meta.id, size, purpose, owner, degraded: provenance.degraded, expires: meta.expires },
        'key created',
      );
      return meta;
    } finally {
      // The store keeps its own (sealed) copy; ours is wiped.
      bytes.fill(0);
    }
  }

  /**
   * Takes a key exactly once. With `owner` (the calling agent), a key owned by someone else is
   * reported KEY_NOT_FOUND — another agent's keys are not even confirmed to exist. Keys without
   * an owner can be taken by anyone. `identity` keys are never handed out: FORBIDDEN.
   *
   * `signal`: the requester's connection; if it has closed before the take commits, nothing is
   * committed (REQUEST_ABORTED). `requestId` (client-chosen, e.g. an Idempotency-Key header)
   * makes the take retryable: the store keeps the material, in the take's own atomic write,
   * for one retry by the same owner with the same id within the redelivery window; the retry
   * gets the same bytes (`redelivered: true`), later ones KEY_ALREADY_TAKEN `delivered: true`.
   */
  async take(
    id: string,
    owner?: string,
    options: { signal?: AbortSignal; requestId?: string } = {},
  ): Promise<{ meta: KeyMetadata; material: Uint8Array; redelivered?: boolean }> {
    const meta = await this.#store.meta(id);
    if (owner !== undefined && meta.owner !== undefined && meta.owner !== owner) {
      throw new QkmError('KEY_NOT_FOUND', `No key with id ${id}`, { details: { id } });
    }
    if (meta.purpose === 'identity') {
      throw new QkmError('FORBIDDEN', 'identity keys are kept by the appliance and cannot be taken');
    }
    const { signal, requestId } = options;
    const redeliver = this.#store.redeliver?.bind(this.#store);
    const token = requestId === undefined || !redeliver ? undefined : `${owner ?? ''}\0${requestId}`;
    const now = this.#now();
    if (token !== undefined && meta.state === 'taken') return this.#redeliver(redeliver!, id, token, now);
    const intent = await this.#journal?.begin(
      'key.taken',
      id,
      owner ?? 'system',
      token !== undefined ? { held: true } : {},
    );
    try {
      const taken = await this.#store.take(id, now, {
        ...(signal ? { signal } : {}),
        ...(token !== undefined
          ? { hold: { token, until: new Date(now.getTime() + this.#redeliveryMs) } }
          : {}),
      });
      if (intent) {
        // The take is committed: its audit record must not stop the key reaching its taker.
        await this.#journal!.done(intent).catch((err: unknown) => {
          this.#log?.warn(
            { keyId: id, err: err instanceof Error ? err.message : String(err) },
            'key.taken audit deferred to reconciliation',
          );
        });
      }
      this.#log?.info({ keyId: id, size: taken.meta.size, owner, held: token !== undefined }, 'key taken');
      return taken;
    } catch (err) {
      if (intent) await this.#journal!.abandon(intent);
      // This take found the key past its expiry and closed it (the store expires it on the spot):
      // its fate goes in the audit log like a swept key's, or the history would end at created.
      if (meta.state === 'active' && isQkmError(err, 'KEY_EXPIRED') && this.#journal) {
        await this.#journal.expiredOnTake(id, owner ?? 'system').catch((e: unknown) => {
          this.#log?.warn(
            { keyId: id, err: e instanceof Error ? e.message : String(e) },
            'key.expired audit failed',
          );
        });
      }
      // A concurrent request with the same id took it first: this is its retry.
      if (token !== undefined && isQkmError(err, 'KEY_ALREADY_TAKEN')) {
        return this.#redeliver(redeliver!, id, token, now);
      }
      throw err;
    }
  }

  async #redeliver(
    redeliver: NonNullable<KeyStore['redeliver']>,
    id: string,
    token: string,
    now: Date,
  ): Promise<{ meta: KeyMetadata; material: Uint8Array; redelivered: true }> {
    const got = await redeliver(id, token, now);
    this.#log?.info({ keyId: id, size: got.meta.size }, 'key redelivered to a retried take');
    return { ...got, redelivered: true };
  }

  /**
   * Metadata only, never material. With `owner`, a cursor (`after`) naming another owner's key
   * is refused exactly like one naming no key: the answer must not confirm that it exists.
   */
  async list(query?: KeyListQuery): Promise<KeyMetadata[]> {
    if (query?.owner !== undefined && query.after !== undefined) {
      const cursor = await this.#store.meta(query.after).catch(() => undefined);
      if (cursor !== undefined && cursor.owner !== undefined && cursor.owner !== query.owner) {
        throw unknownCursor(query.after);
      }
    }
    return this.#store.list(query);
  }

  counts(): Promise<Record<KeyState, number>> {
    return this.#store.counts();
  }

  /**
   * Expires every active key past its expiry now, records them in the audit log (`key.expired`,
   * up to EXPIRED_IDS_PER_RECORD ids per record: a mass expiry writes a few records, not one per
   * key), and purges closed keys past the retention. Resolves with how many keys expired.
   */
  async sweep(): Promise<number> {
    const now = this.#now();
    const n = await this.#expire(now);
    if (n > 0) this.#log?.info({ expired: n }, 'expired keys swept');
    const purged = await this.purgeClosed(now);
    if (purged > 0) this.#log?.info({ purged }, 'closed keys past retention purged');
    return n;
  }

  /** The sweep's expiry, journaled (see KeyAuditJournal.beginExpiry) when the service audits. */
  async #expire(now: Date): Promise<number> {
    const journal = this.#journal;
    if (!journal) return this.#store.sweepExpired(now);
    const intent = await journal.beginExpiry(now);
    const ids: string[] = [];
    try {
      return await this.#store.sweepExpired(now, { onExpired: (batch) => ids.push(...batch) });
    } finally {
      // Also after a failed sweep: the batches it committed are expired and must be recorded. If
      // the audit append fails the intent stays, and the next start's reconcile records them.
      await journal.expired(intent, ids);
    }
  }

  /**
   * Purges closed keys older than the retention, in batches of PURGE_BATCH and at most
   * PURGE_BATCHES_PER_SWEEP batches (a backlog drains over several sweeps). Returns how many.
   */
  async purgeClosed(now: Date = this.#now()): Promise<number> {
    if (!this.#store.purgeClosed) return 0;
    const before = new Date(now.getTime() - this.#retentionMs);
    let total = 0;
    for (let i = 0; i < PURGE_BATCHES_PER_SWEEP; i++) {
      const n = await this.#store.purgeClosed(before, PURGE_BATCH);
      total += n;
      if (n < PURGE_BATCH) break;
    }
    return total;
  }
}

function invalid(message: string): QkmError {
  return new QkmError('INVALID_PARAMETER', message);
}

/** C0 and C1 controls (NUL, ESC of ANSI sequences, DEL, …), and Unicode line/paragraph separators. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly what is refused
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkText(value: unknown, name: string): void {
  if (value === undefined) return;
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_TEXT) {
    throw invalid(`${name} must be a string of 1 to ${MAX_TEXT} characters`);
  }
  // Labels end up in logs, terminals (`qkm keys list`) and audit records: no control
  // characters (an ANSI escape could rewrite an operator's screen) and well-formed UTF-16
  // (a lone surrogate has no UTF-8 form and would be silently replaced on the way out).
  if (CONTROL.test(value)) throw invalid(`${name} must not contain control characters`);
  if (LONE_SURROGATE.test(value)) throw invalid(`${name} must be well-formed Unicode (no lone surrogates)`);
}
