import { randomUUID } from 'node:crypto';
import type { Provenance } from '../core/provenance.js';
import type { StorageBackend } from '../store/interface.js';
import type { SessionProvenance } from './records.js';
import { KEY_BYTES } from './transcript.js';

/** How long a `requireConfirm` key waits for its confirm (unless `keepKeys` says otherwise), s. */
export const DEFAULT_CONFIRM_HOLD_SECONDS = 600;

export interface SessionKeyHolderOptions {
  store: StorageBackend;
  clock: () => number;
  /** Keep K in the KeyStore (purpose `session`, take-once) for this long; default: not kept. */
  keepKeys?: { ttlSeconds: number } | undefined;
}

/**
 * Session keys that outlive the call that derived them: K held (encrypted, take-once) until a
 * `requireConfirm` session is confirmed, or kept for `keepKeys`.
 */
export class SessionKeyHolder {
  private readonly clock: () => number;

  constructor(private readonly o: SessionKeyHolderOptions) {
    this.clock = o.clock;
  }

  /** `requireConfirm`: K into the KeyStore (take-once) until the confirm hands it out. */
  async hold(key: Uint8Array, sessionId: string, provenance: SessionProvenance, at: string): Promise<string> {
    const id = randomUUID();
    const created = new Date(this.clock());
    const ttl = this.o.keepKeys?.ttlSeconds ?? DEFAULT_CONFIRM_HOLD_SECONDS;
    await this.o.store.keys.put({
      meta: {
        id,
        size: KEY_BYTES,
        purpose: 'session',
        created: created.toISOString(),
        expires: new Date(created.getTime() + ttl * 1000).toISOString(),
        label: `session ${sessionId} (initiator, until confirmed)`,
        provenance: keyProvenance(provenance, at),
      },
      material: key,
    });
    return id;
  }

  /** Secret material held (encrypted, take-once) for as long as a confirm may take. */
  async holdSecret(
    material: Uint8Array,
    label: string,
    provenance: SessionProvenance,
    at: string,
  ): Promise<string> {
    const id = randomUUID();
    const created = new Date(this.clock());
    const ttl = this.o.keepKeys?.ttlSeconds ?? DEFAULT_CONFIRM_HOLD_SECONDS;
    await this.o.store.keys.put({
      meta: {
        id,
        size: material.length,
        purpose: 'session',
        created: created.toISOString(),
        expires: new Date(created.getTime() + ttl * 1000).toISOString(),
        label,
        provenance: keyProvenance(provenance, at),
      },
      material,
    });
    return id;
  }

  async keep(
    key: Uint8Array,
    sessionId: string,
    role: string,
    provenance: SessionProvenance,
    at: string,
  ): Promise<string | undefined> {
    if (!this.o.keepKeys) return undefined;
    const id = randomUUID();
    const created = new Date(this.clock());
    await this.o.store.keys.put({
      meta: {
        id,
        size: KEY_BYTES,
        purpose: 'session',
        created: created.toISOString(),
        expires: new Date(created.getTime() + this.o.keepKeys.ttlSeconds * 1000).toISOString(),
        label: `session ${sessionId} (${role})`,
        provenance: keyProvenance(provenance, at),
      },
      material: key,
    });
    return id;
  }
}

/** A KeyStore Provenance for a kept session key (the store's type is entropy-shaped). */
export function keyProvenance(p: SessionProvenance, at: string): Provenance {
  const e = p.qrng.entropy;
  return {
    seedOrigin: p.pqc.randomness,
    sources: e?.sources ?? [],
    entropyCredited: e?.entropyCredited ?? 0,
    drbg: e?.drbg ?? {
      name: 'HKDF-SHA-256 (hybrid session key)',
      instance: 'session',
      reseedCounter: 0,
      seededAt: at,
      predictionResistance: false,
    },
    degraded: p.degraded,
    ...(p.reason ? { reason: p.reason } : {}),
    at,
  };
}
