import { randomBytes, randomUUID } from 'node:crypto';
import { QkmError } from '../../src/core/errors.js';
import type { Provenance } from '../../src/core/provenance.js';
import type {
  EntropyProvider,
  EntropyRequest,
  EntropyResult,
  EntropyStatus,
} from '../../src/entropy/types.js';
import type { KeyServiceApi } from '../../src/api/routes/keys.js';
import type { KeyListQuery, KeyMetadata } from '../../src/keys/interface.js';

/** A controllable EntropyProvider: `quantum` toggles whether a healthy quantum source exists. */
export class FakeEntropy implements EntropyProvider {
  quantum = true;
  served = 0;

  provenance(degraded: boolean): Provenance {
    return {
      seedOrigin: degraded ? 'os' : 'quantum',
      sources: [
        {
          id: 'fake-qrng',
          driver: 'fake',
          kind: 'quantum',
          simulated: true,
          state: degraded ? 'quarantined' : 'healthy',
          claimedMinEntropy: 7.5,
        },
      ],
      entropyCredited: 256,
      drbg: {
        name: 'CTR_DRBG(AES-256, df)',
        instance: 'x',
        reseedCounter: 1,
        seededAt: new Date().toISOString(),
        predictionResistance: false,
      },
      degraded,
      ...(degraded ? { reason: 'no healthy quantum source: fake-qrng quarantined (RCT failure)' } : {}),
      at: new Date().toISOString(),
    };
  }

  async getEntropy(n: number, request: EntropyRequest = {}): Promise<EntropyResult> {
    if (!this.quantum && request.require === 'quantum') {
      throw new QkmError('QUANTUM_ENTROPY_UNAVAILABLE', 'no healthy quantum entropy source');
    }
    this.served += n;
    return { bytes: new Uint8Array(randomBytes(n)), provenance: this.provenance(!this.quantum) };
  }

  status(): EntropyStatus {
    const p = this.provenance(!this.quantum);
    return {
      quantumAvailable: this.quantum,
      degraded: !this.quantum,
      ...(p.reason ? { reason: p.reason } : {}),
      sources: p.sources,
      drbg: {
        name: p.drbg.name,
        seedOrigin: p.seedOrigin,
        reseedCounter: 1,
        seededAt: p.drbg.seededAt,
        bytesSinceReseed: 0,
      },
      counters: {
        bytesServed: this.served,
        bytesServedDegraded: 0,
        reseeds: 1,
        healthFailures: 0,
        requestsRejected: 0,
      },
    };
  }
}

/** Minimal in-memory key service with the real single-use semantics, for route tests. */
export class FakeKeys implements KeyServiceApi {
  private readonly keys = new Map<string, { meta: KeyMetadata; material: Uint8Array }>();
  constructor(private readonly entropy: EntropyProvider) {}

  async create(o: {
    size: number;
    ttlSeconds?: number;
    owner?: string;
    label?: string;
    require?: 'quantum' | 'any';
  }) {
    const { bytes, provenance } = await this.entropy.getEntropy(o.size, { require: o.require ?? 'any' });
    const meta: KeyMetadata = {
      id: randomUUID(),
      size: o.size,
      purpose: 'symmetric',
      created: new Date().toISOString(),
      expires: null,
      state: 'active',
      ...(o.owner ? { owner: o.owner } : {}),
      ...(o.label ? { label: o.label } : {}),
      provenance,
    };
    this.keys.set(meta.id, { meta, material: bytes });
    return meta;
  }

  async take(id: string, owner?: string) {
    const k = this.keys.get(id);
    if (!k || (owner && k.meta.owner !== owner)) throw new QkmError('KEY_NOT_FOUND');
    if (k.meta.state === 'taken') throw new QkmError('KEY_ALREADY_TAKEN');
    k.meta = { ...k.meta, state: 'taken' };
    const material = k.material;
    k.material = new Uint8Array(0);
    return { meta: k.meta, material };
  }

  async list(q: KeyListQuery) {
    return [...this.keys.values()]
      .map((k) => k.meta)
      .filter((m) => (!q.owner || m.owner === q.owner) && (!q.state || m.state === q.state));
  }
}

/** A Map-backed RecordStore for tests that do not exercise storage. */
export class MapRecords<T> {
  private readonly m = new Map<string, T>();
  async get(k: string) {
    return this.m.get(k);
  }
  async put(k: string, v: T) {
    this.m.set(k, v);
  }
  async putIfAbsent(k: string, v: T) {
    if (this.m.has(k)) return false;
    this.m.set(k, v);
    return true;
  }
  async del(k: string) {
    this.m.delete(k);
  }
  async take(k: string) {
    const v = this.m.get(k);
    this.m.delete(k);
    return v;
  }
  async update(k: string, fn: (current: T | undefined) => T) {
    const v = fn(this.m.get(k));
    this.m.set(k, v);
    return v;
  }
  async entries(prefix = '') {
    return [...this.m.entries()].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1));
  }
}
