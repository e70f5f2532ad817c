import type { AuditSink } from '../audit/types.js';
import { QkmError } from '../core/errors.js';
import type { RecordStore, StorageBackend } from '../store/interface.js';
import { type IdentityBundle, type VerifiedBundle, verifyBundle } from './identity.js';
import { type Posture, isPosture } from './posture.js';

/** A pinned peer as stored (namespace `peers`, key = node id). */
export interface PeerRecord {
  node_id: string;
  bundle: IdentityBundle;
  /** ISO-8601. */
  pinned_at: string;
  label?: string;
  /** Per-peer floor, combined (max) with the policy's own minimum. */
  min_posture?: Posture;
}

/** A pinned peer with its keys decoded; what the handshake works with. */
export interface Peer extends VerifiedBundle {
  pinnedAt: string;
  /** Absent: pinned here. `provider`: not pinned, the Provider vouched for it (src/session/vouched.ts). */
  trust?: 'provider';
  label?: string;
  minPosture?: Posture;
}

export interface PinOptions {
  label?: string;
  minPosture?: Posture;
  /** Who pins, for the audit record (default `system`). */
  actor?: string;
}

/**
 * The peer registry: sessions are only possible with pinned peers. Pinning verifies the
 * bundle's self-signature; a node id is bound to one set of keys for good (re-pinning the same
 * bundle is idempotent, different keys under the same id rejects PEER_EXISTS — remove first).
 */
export class PeerRegistry {
  private readonly records: RecordStore<PeerRecord>;
  private readonly clock: () => number;
  /** Verified bundles by their exact JSON, so a handshake does not pay a signature check per lookup. */
  private readonly verified = new Map<string, VerifiedBundle>();
  /**
   * Pinned peers by node id, decoded and verified, so a handshake pays no store read. Safe because
   * every change goes through `add`/`remove` on this instance (they drop the entry) and the store
   * is held open by this process alone (LevelDB's lock). Absent peers are not cached.
   */
  private readonly pinned = new Map<string, Peer>();
  /** Bumped by every add/remove, so a lookup that raced one does not cache what it read. */
  private generation = 0;

  /** Every pin and unpin is an audit record written here (not by the routes), so none goes unrecorded. */
  private readonly audit: AuditSink;

  constructor(opts: { store: StorageBackend; audit: AuditSink; clock?: () => number }) {
    this.records = opts.store.records<PeerRecord>('peers');
    this.audit = opts.audit;
    this.clock = opts.clock ?? Date.now;
  }

  /** Verifies and pins. Throws BUNDLE_INVALID, PEER_EXISTS, INVALID_PARAMETER. */
  async add(bundle: unknown, opts: PinOptions = {}): Promise<Peer> {
    const v = verifyBundle(bundle);
    this.forget(v.nodeId);
    if (opts.minPosture !== undefined && !isPosture(opts.minPosture)) {
      throw new QkmError('INVALID_PARAMETER', 'min_posture must be PQC, PQC+QRNG or QKD+PQC+QRNG');
    }
    const rec: PeerRecord = {
      node_id: v.nodeId,
      bundle: v.bundle,
      pinned_at: new Date(this.clock()).toISOString(),
      ...(opts.label === undefined ? {} : { label: opts.label }),
      ...(opts.minPosture === undefined ? {} : { min_posture: opts.minPosture }),
    };
    if (!(await this.records.putIfAbsent(v.nodeId, rec))) {
      const existing = await this.records.get(v.nodeId);
      // Re-pinning the same bundle changes nothing: no record.
      if (existing && sameKeys(existing.bundle, v.bundle))
        return toPeer(existing, verifyBundle(existing.bundle));
      throw new QkmError('PEER_EXISTS', `a different identity is already pinned as ${v.nodeId}`);
    }
    await this.audit.append({
      type: 'peer.pinned',
      actor: opts.actor ?? 'system',
      details: {
        node_id: v.nodeId,
        region: v.bundle.region,
        ...(opts.minPosture === undefined ? {} : { min_posture: opts.minPosture }),
      },
    });
    return toPeer(rec, v);
  }

  /**
   * The pinned peer, or undefined. A bundle read from the store is re-verified (storage is
   * untrusted) before it is used or cached; later lookups are served from memory.
   */
  async get(nodeId: string): Promise<Peer | undefined> {
    if (typeof nodeId !== 'string' || !/^[0-9a-f]{32}$/.test(nodeId)) return undefined;
    const hit = this.pinned.get(nodeId);
    if (hit) return { ...hit };
    const generation = this.generation;
    const rec = await this.records.get(nodeId);
    if (!rec) return undefined;
    const v = this.verifyCached(rec.bundle);
    if (v.nodeId !== nodeId) throw new QkmError('INTERNAL', 'peer record is filed under the wrong node id');
    const peer = toPeer(rec, v);
    // A concurrent add/remove may have run while we read: only cache when none did.
    if (generation === this.generation) this.pinned.set(nodeId, peer);
    return { ...peer };
  }

  /** Like `get` but throws PEER_NOT_FOUND. */
  async require(nodeId: string): Promise<Peer> {
    const p = await this.get(nodeId);
    if (!p) throw new QkmError('PEER_NOT_FOUND', `no pinned peer ${String(nodeId).slice(0, 64)}`);
    return p;
  }

  /** Stored records (bundles are public), in node-id order. */
  async list(): Promise<PeerRecord[]> {
    return (await this.records.entries()).map(([, r]) => r);
  }

  /** Throws PEER_NOT_FOUND if absent. */
  async remove(nodeId: string, actor = 'system'): Promise<void> {
    if ((await this.records.get(nodeId)) === undefined) {
      throw new QkmError('PEER_NOT_FOUND', `no pinned peer ${String(nodeId).slice(0, 64)}`);
    }
    this.forget(nodeId);
    await this.records.del(nodeId);
    this.forget(nodeId);
    await this.audit.append({ type: 'peer.removed', actor, details: { node_id: nodeId } });
  }

  private forget(nodeId: string): void {
    this.generation++;
    this.pinned.delete(nodeId);
  }

  private verifyCached(bundle: IdentityBundle): VerifiedBundle {
    const k = JSON.stringify(bundle);
    let v = this.verified.get(k);
    if (!v) {
      v = verifyBundle(bundle);
      if (this.verified.size > 1024) this.verified.clear();
      this.verified.set(k, v);
    }
    return v;
  }
}

function sameKeys(a: IdentityBundle, b: IdentityBundle): boolean {
  return (
    a.ml_dsa_65_public_key === b.ml_dsa_65_public_key &&
    a.ml_kem_768_public_key === b.ml_kem_768_public_key &&
    a.region === b.region &&
    a.sae_id === b.sae_id &&
    a.kme_id === b.kme_id
  );
}

function toPeer(rec: PeerRecord, v: VerifiedBundle): Peer {
  return {
    ...v,
    pinnedAt: rec.pinned_at,
    ...(rec.label === undefined ? {} : { label: rec.label }),
    ...(rec.min_posture === undefined ? {} : { minPosture: rec.min_posture }),
  };
}
