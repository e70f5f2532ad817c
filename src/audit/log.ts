import { randomBytes } from 'node:crypto';
import { QkmError } from '../core/errors.js';
import type { EntropyProvider } from '../entropy/types.js';
import { signTagged } from '../pqc/domain.js';
import type { RecordStore, StorageBackend } from '../store/interface.js';
import { fromBase64url, toBase64url, toHex } from '../session/encoding.js';
import { DSA_CONTEXT, type NodeIdentity } from '../session/identity.js';
import { sanitizeDetails } from './canonical.js';
import { type AuditEvent, type AuditRecord, type AuditSink, SEAL_TYPE, UNSEALED_TAIL_TYPE } from './types.js';
import { GENESIS_HASH, chainError, recordHash, sealMessage, toJsonLines, verifySeal } from './verify.js';

/**
 * Signs seals. `signerFromIdentity` makes one from the node identity. Seals are signed on the
 * event loop: with the liboqs backend a signature takes ≈ 0.3–0.8 ms, once per `sealEvery`
 * events (the PQC worker thread they used to run on was removed in issue #13; README, Benchmarks).
 */
export interface AuditSigner {
  nodeId: string;
  publicKey: Uint8Array;
  sign(message: Uint8Array): Uint8Array | Promise<Uint8Array>;
  /** Called by `AuditLog.close()` after the last seal. */
  close?(): Promise<void>;
}

/** What `GET /v1/status` shows of the audit log. */
export interface AuditStats {
  /** Records in the chain (seals included). */
  records: number;
  /** The last record a seal covers; records after it are chained but not yet signed. */
  sealedThrough: number;
  /**
   * Records found after the last valid seal when the log was opened (written before this start
   * and never signed: a crash, or someone with write access to the store). Flagged by an
   * `audit.unsealed_tail_found` record; later seals do not vouch for them.
   */
  unsealedTail?: UnsealedTail;
}

/** An unsealed tail found on open (see AuditStats.unsealedTail). */
export interface UnsealedTail {
  from_seq: number;
  through_seq: number;
  count: number;
  /** The tail's prev_hash links and hashes check out against the last valid seal. */
  chain_ok: boolean;
  reason?: string;
}

export function signerFromIdentity(identity: NodeIdentity): AuditSigner {
  return {
    nodeId: identity.nodeId,
    publicKey: identity.signing.publicKey,
    sign: (m) => signTagged(DSA_CONTEXT.audit, m, identity.signing.secretKey),
  };
}

export interface AuditLogOptions {
  store: StorageBackend;
  /** Source of event ids; without one (or when it fails) ids come from the OS (`id_source: 'os'`). */
  entropy?: EntropyProvider;
  /** Seal signer; may be set later with `setSigner` (the identity is created after the log opens). */
  signer?: AuditSigner;
  /** Seal after this many unsealed records (default 64). */
  sealEvery?: number;
  /** Epoch ms, default Date.now. */
  clock?: () => number;
}

interface Head {
  seq: number;
  hash: string;
  sealed_through: number;
}

const ID_BYTES = 16;
/** The stored `head` hint is refreshed at least this often (records); see `write`. */
const HEAD_EVERY = 64;
/** Event ids are drawn in batches so an append costs no entropy round trip most of the time. */
const ID_BATCH = 32;

/** Point reads issued at once by a paged `records` call. */
const PAGE_CHUNK = 64;
const recKey = (seq: number) => `r:${String(seq).padStart(12, '0')}`;

/**
 * The tamper-evident audit log (QSC Algorithm 9): hash-chained records (SHA3-256 over RFC 8785
 * canonical JSON), sealed every `sealEvery` records and on `flush`/`close` by a chained
 * `audit.seal` record carrying an ML-DSA-65 signature over the last hash. Appends are serialised
 * (one chain) and never sign; sealing runs on the same queue, ahead of appends not yet started
 * (a seal covers what was written before it, so it need not wait for what was queued after).
 * Storage: namespace `audit`, keys `r:<seq 12 digits>`, plus `head` (a start-up hint that may lag
 * the records; `loadHead` rolls forward over any records written after it).
 */
/**
 * The AuditLog that owns each store's chain: the one created last (a new instance over the same
 * store is how a restart, or a crash test, continues the chain). Older instances refuse to write,
 * so two writers can never fork the chain. Other processes cannot share a LevelDB store (its
 * lock), so this in-memory check replaces a read-before-write per record.
 */
const owners = new WeakMap<object, AuditLog>();

export class AuditLog implements AuditSink {
  private readonly rs: RecordStore<AuditRecord | Head>;
  private readonly clock: () => number;
  private readonly sealEvery: number;
  private signer: AuditSigner | undefined;
  private head: Head | undefined;
  /** Work on the chain, run one at a time in order (seals go first; see `enqueue`). */
  private readonly jobs: Array<() => Promise<void>> = [];
  private running = false;
  private ids: { bytes: Uint8Array; used: number; source: 'quantum' | 'os' } | undefined;
  private closed = false;
  private tail: UnsealedTail | undefined;
  /** The tail found on open still has to be flagged (first thing written). */
  private tailToFlag = false;
  /**
   * The seal queued or running, which a `flush` joins instead of queueing a signature of its own
   * (group commit): every append that resolved before the flush was called was written before
   * that seal starts (one queue), so the seal covers it. Many readers, one signature. The seal
   * is queued ahead of appends that have not started: those have not resolved, so no flush
   * caller is owed them, and a reader does not wait for a backlog of synced appends.
   */
  private sealInFlight: Promise<AuditRecord | undefined> | undefined;

  constructor(private readonly opts: AuditLogOptions) {
    this.rs = opts.store.records('audit');
    owners.set(opts.store, this);
    this.clock = opts.clock ?? Date.now;
    this.sealEvery = opts.sealEvery ?? 64;
    this.signer = opts.signer;
  }

  /** The log closes the signer it holds when it closes; a signer replaced here is the caller's to close. */
  setSigner(signer: AuditSigner | undefined): void {
    this.signer = signer;
  }

  /** Appends one event; resolves with the stored record. Rejects INVALID_PARAMETER for a reserved type. */
  append(event: AuditEvent): Promise<AuditRecord> {
    if (this.closed) return Promise.reject(new QkmError('STORE_UNAVAILABLE', 'the audit log is closed'));
    if (typeof event?.type !== 'string' || !event.type || event.type === SEAL_TYPE) {
      return Promise.reject(new QkmError('INVALID_PARAMETER', 'audit event type missing or reserved'));
    }
    const p = this.enqueue(() =>
      this.write(event.type, String(event.actor ?? 'system'), sanitizeDetails(event.details)),
    );
    p.then((rec) => {
      if (this.signer && rec.seq - this.head!.sealed_through >= this.sealEvery && !this.sealInFlight) {
        // Behind the caller: the appender does not wait for the signature.
        this.seal().catch(() => undefined);
      }
    }).catch(() => undefined);
    return p;
  }

  /** The chain's length and how far it is sealed, as of the last append (no store read). */
  stats(): AuditStats {
    const head = this.head;
    return {
      records: head?.seq ?? 0,
      sealedThrough: head?.sealed_through ?? 0,
      ...(this.tail ? { unsealedTail: { ...this.tail } } : {}),
    };
  }

  /**
   * Opens the chain now (the head is otherwise loaded by the first append), so an unsealed tail
   * left by the previous run is found, flagged and visible in `stats()` at start-up.
   */
  open(): Promise<AuditStats> {
    return this.enqueue(async () => {
      await this.loadHead();
      await this.flagTail();
      return this.stats();
    });
  }

  /**
   * Seals every record whose append resolved before this call (no-op without a signer or when
   * nothing is unsealed). Concurrent flushes share one seal (see `sealInFlight`); resolves with
   * the seal written, or undefined when none was needed.
   */
  flush(): Promise<AuditRecord | undefined> {
    return this.sealInFlight ?? this.seal();
  }

  private seal(): Promise<AuditRecord | undefined> {
    const p = this.enqueue(() => this.sealNow(), true);
    this.sealInFlight = p;
    const clear = () => {
      if (this.sealInFlight === p) this.sealInFlight = undefined;
    };
    p.then(clear, clear);
    return p;
  }

  /**
   * A page for a reader (`GET /v1/audit`): up to `limit` records from `fromSeq`, with every
   * record appended before the call sealed. A page inside the sealed part is read at once —
   * sealed records never change, so there is nothing to wait for; a page reaching the unsealed
   * tail waits for one (shared) seal, not for appends queued after the call.
   */
  async sealedPage(opts: { fromSeq: number; limit: number }): Promise<AuditRecord[]> {
    const from = Math.max(1, opts.fromSeq);
    const head = this.head;
    // A seal is needed only when the page reaches records that are written but not sealed.
    const unsealed =
      !head ||
      (head.seq > head.sealed_through && from <= head.seq && from + opts.limit - 1 > head.sealed_through);
    if (unsealed) await this.flush();
    // Every record whose append resolved is in the store (the put precedes the resolve), and a
    // page stops at the first missing seq: no need to wait for the queue.
    return this.page(from, opts.limit);
  }

  /** Flushes, then refuses further appends. Does not close the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Appends queued before the close are written first: a seal goes ahead of queued appends
    // (see `sealInFlight`), and a clean shutdown must not leave them as an unsealed tail.
    await this.idle();
    await this.flush().catch(() => undefined);
    this.closed = true;
    await this.enqueue(async () => {
      if (this.head) await this.rs.put('head', { ...this.head });
    }).catch(() => undefined);
    await this.signer?.close?.().catch(() => undefined);
  }

  /**
   * Records in seq order, optionally from `fromSeq` and at most `limit`. With a `limit` (a page,
   * as `GET /v1/audit` asks) it reads only that page: seqs have no gaps, so the page is fetched
   * by key, O(limit) however long the log. Without one it reads the whole log (export).
   */
  async records(opts: { fromSeq?: number; limit?: number } = {}): Promise<AuditRecord[]> {
    await this.idle();
    if (opts.limit !== undefined) return this.page(Math.max(1, opts.fromSeq ?? 1), opts.limit);
    const rows = await this.rs.entries('r:');
    let out = rows.map(([, r]) => r as AuditRecord);
    if (opts.fromSeq !== undefined) out = out.filter((r) => r.seq >= opts.fromSeq!);
    if (opts.limit !== undefined) out = out.slice(0, opts.limit);
    return out;
  }

  /** Up to `limit` records from `from` on, read by key in small parallel chunks; stops at the head. */
  private async page(from: number, limit: number): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    for (let s = from; out.length < limit; ) {
      const n = Math.min(PAGE_CHUNK, limit - out.length);
      const chunk = await Promise.all(
        Array.from({ length: n }, (_, i) => this.rs.get(recKey(s + i)) as Promise<AuditRecord | undefined>),
      );
      for (const rec of chunk) {
        if (!rec) return out;
        out.push(rec);
      }
      s += n;
    }
    return out;
  }

  /** Records with seq > `seq`, in order, read one by one (cheap when `seq` is near the head). */
  async recordsAfter(seq: number): Promise<AuditRecord[]> {
    await this.idle();
    const out: AuditRecord[] = [];
    for (let s = seq + 1; ; s++) {
      const rec = (await this.rs.get(recKey(s))) as AuditRecord | undefined;
      if (!rec) break;
      out.push(rec);
    }
    return out;
  }

  /** The whole log as JSON lines, for offline `verifyAuditLog`. */
  async exportJsonLines(): Promise<string> {
    return toJsonLines(await this.records());
  }

  /** Runs `fn` after the work queued before it (or, `first`, before every job not yet started). */
  private enqueue<T>(fn: () => Promise<T>, first = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const job = async () => {
        try {
          resolve(await fn());
        } catch (err) {
          reject(err);
        }
      };
      if (first) this.jobs.unshift(job);
      else this.jobs.push(job);
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let job = this.jobs.shift(); job; job = this.jobs.shift()) await job();
    } finally {
      this.running = false;
    }
  }

  /** Resolves once the work queued before the call is done (failed or not). */
  private idle(): Promise<void> {
    return this.enqueue(async () => undefined);
  }

  private async loadHead(): Promise<Head> {
    if (this.head) return this.head;
    const h = ((await this.rs.get('head')) as Head | undefined) ?? {
      seq: 0,
      hash: GENESIS_HASH,
      sealed_through: 0,
    };
    // The head lags its records (see `write`), and a crash may land between a record and its head.
    for (;;) {
      const next = (await this.rs.get(recKey(h.seq + 1))) as AuditRecord | undefined;
      if (!next) break;
      h.seq = next.seq;
      h.hash = next.hash;
    }
    // Storage is untrusted: the hint's sealed_through is not believed. The last valid seal is
    // found from the records (its signature checked when the signer is known); whatever follows
    // it was never signed and is flagged, never silently covered by the next seal.
    const tail: AuditRecord[] = [];
    let seal: AuditRecord | undefined;
    for (let seq = h.seq; seq >= 1; seq--) {
      const rec = (await this.rs.get(recKey(seq))) as AuditRecord | undefined;
      if (!rec) break;
      if (rec.type === SEAL_TYPE && this.validSeal(rec)) {
        seal = rec;
        break;
      }
      tail.unshift(rec);
    }
    h.sealed_through = seal?.seq ?? 0;
    if (tail.length) {
      const why = chainError(tail, seal?.hash ?? GENESIS_HASH, h.sealed_through + 1);
      this.tail = {
        from_seq: tail[0]!.seq,
        through_seq: tail.at(-1)!.seq,
        count: tail.length,
        chain_ok: why === undefined,
        ...(why ? { reason: why } : {}),
      };
      this.tailToFlag = true;
    }
    this.head = h;
    return h;
  }

  /** A seal whose coverage and (when the signer is known) signature check out. */
  private validSeal(rec: AuditRecord): boolean {
    const d = rec.details as Record<string, unknown>;
    if (d.through_seq !== rec.seq - 1 || typeof d.through_hash !== 'string') return false;
    if (rec.prev_hash !== d.through_hash || recordHash(rec) !== rec.hash) return false;
    const signer = this.signer;
    if (!signer || d.signer !== signer.nodeId) return signer === undefined;
    try {
      return verifySeal(
        fromBase64url(String(d.signature)),
        sealMessage(rec.seq - 1, d.through_hash),
        signer.publicKey,
      );
    } catch {
      return false;
    }
  }

  /** Writes the `audit.unsealed_tail_found` record once, before anything else this run writes. */
  private async flagTail(): Promise<void> {
    if (!this.tailToFlag || !this.tail) return;
    this.tailToFlag = false;
    await this.writeRecord(UNSEALED_TAIL_TYPE, 'system', { ...this.tail });
  }

  private async write(type: string, actor: string, details: AuditRecord['details']): Promise<AuditRecord> {
    await this.loadHead();
    await this.flagTail();
    return this.writeRecord(type, actor, details);
  }

  private async writeRecord(
    type: string,
    actor: string,
    details: AuditRecord['details'],
  ): Promise<AuditRecord> {
    const head = await this.loadHead();
    const { id, source } = await this.nextId();
    const unhashed: Omit<AuditRecord, 'hash'> = {
      v: 1,
      seq: head.seq + 1,
      id,
      id_source: source,
      at: new Date(this.clock()).toISOString(),
      type,
      actor,
      details,
      prev_hash: head.hash,
    };
    const rec: AuditRecord = { ...unhashed, hash: recordHash(unhashed) };
    if (owners.get(this.opts.store) !== this) {
      // A newer instance continues this store's chain; never fork it.
      this.head = undefined;
      throw new QkmError('INTERNAL', 'another audit log instance now writes this store');
    }
    await this.rs.put(recKey(rec.seq), rec);
    head.seq = rec.seq;
    head.hash = rec.hash;
    if (type === SEAL_TYPE) head.sealed_through = rec.seq;
    // The record above is the durable truth; `head` is only a hint that `loadHead` rolls forward
    // from. Writing it on seals and every HEAD_EVERY records (not on every append) saves one
    // synced write per event and bounds the roll-forward at start-up to HEAD_EVERY reads.
    if (type === SEAL_TYPE || rec.seq % HEAD_EVERY === 0) await this.rs.put('head', { ...head });
    return rec;
  }

  private async sealNow(): Promise<AuditRecord | undefined> {
    const head = await this.loadHead();
    await this.flagTail();
    const signer = this.signer;
    if (!signer || head.seq === 0 || head.sealed_through === head.seq) return undefined;
    // On the queue: no record can come between the one sealed and its seal.
    const sig = await signer.sign(sealMessage(head.seq, head.hash));
    return this.writeRecord(SEAL_TYPE, signer.nodeId, {
      through_seq: head.seq,
      through_hash: head.hash,
      signer: signer.nodeId,
      signature: toBase64url(sig),
    });
  }

  private async nextId(): Promise<{ id: string; source: 'quantum' | 'os' }> {
    if (!this.ids || this.ids.used + ID_BYTES > this.ids.bytes.length) {
      let bytes: Uint8Array;
      let source: 'quantum' | 'os' = 'os';
      try {
        if (!this.opts.entropy) throw new Error('no entropy provider');
        const e = await this.opts.entropy.getEntropy(ID_BYTES * ID_BATCH, { require: 'any' });
        bytes = e.bytes;
        source = e.provenance.seedOrigin === 'quantum' && !e.provenance.degraded ? 'quantum' : 'os';
      } catch {
        bytes = new Uint8Array(randomBytes(ID_BYTES * ID_BATCH));
      }
      this.ids = { bytes, used: 0, source };
    }
    const slice = this.ids.bytes.subarray(this.ids.used, this.ids.used + ID_BYTES);
    this.ids.used += ID_BYTES;
    const id = toHex(slice);
    slice.fill(0);
    return { id, source: this.ids.source };
  }
}
