import { randomBytes, randomUUID } from 'node:crypto';
import type {
  QkdCallOptions,
  QkdKey,
  QkdKeyRequest,
  QkdKeySource,
  QkdLinkStatus,
} from '../../drivers/qkd/interface.js';
import { QkmError } from '../../src/core/errors.js';
import type { Provenance } from '../../src/core/provenance.js';
import type {
  EntropyProvider,
  EntropyRequest,
  EntropyResult,
  EntropyStatus,
} from '../../src/entropy/types.js';

/**
 * Test doubles for the session tests: an EntropyProvider whose quantum health is a switch, and a
 * pair of QKD key sources sharing one in-memory key pool (a KME pair in miniature) that count
 * every call, so tests can assert that rejected handshakes never reach dec_keys.
 */

export function fakeProvenance(quantum: boolean): Provenance {
  const at = new Date().toISOString();
  return {
    seedOrigin: quantum ? 'quantum' : 'os',
    sources: [],
    entropyCredited: quantum ? 256 : 0,
    drbg: { name: 'fake', instance: 'fake', reseedCounter: 1, seededAt: at, predictionResistance: false },
    degraded: !quantum,
    ...(quantum ? {} : { reason: 'fake: quantum source off' }),
    at,
  };
}

export class FakeEntropy implements EntropyProvider {
  /** What `status()` reports. */
  quantum = true;
  /** When true, quantum draws fail even though `status()` says healthy (a race). */
  failQuantumDraws = false;
  readonly calls: Array<{ n: number; require: 'quantum' | 'any' }> = [];

  async getEntropy(n: number, request?: EntropyRequest): Promise<EntropyResult> {
    const require = request?.require ?? 'any';
    this.calls.push({ n, require });
    const quantumNow = this.quantum && !this.failQuantumDraws;
    if (require === 'quantum' && !quantumNow) throw new QkmError('QUANTUM_ENTROPY_UNAVAILABLE');
    return { bytes: new Uint8Array(randomBytes(n)), provenance: fakeProvenance(quantumNow) };
  }

  status(): EntropyStatus {
    return {
      quantumAvailable: this.quantum,
      degraded: !this.quantum,
      ...(this.quantum ? {} : { reason: 'fake: quantum source off' }),
      sources: [],
      drbg: {
        name: 'fake',
        seedOrigin: this.quantum ? 'quantum' : 'os',
        reseedCounter: 1,
        seededAt: null,
        bytesSinceReseed: 0,
      },
      counters: {
        bytesServed: 0,
        bytesServedDegraded: 0,
        reseeds: 0,
        healthFailures: 0,
        requestsRejected: 0,
      },
    };
  }
}

class QkdError extends Error {
  constructor(
    readonly kind: 'unavailable' | 'not-found',
    readonly retryable: boolean,
  ) {
    super(`fake KME: ${kind}`);
  }
}

/** The shared state of a link between two KMEs. */
export class FakeQkdLink {
  up = true;
  /** keyId → { master, slave, key } */
  readonly pool = new Map<string, { master: string; slave: string; key: Uint8Array }>();
  readonly calls = { getKeys: 0, getKeysById: 0, status: 0 };
  /** The options of the latest getKeys call. */
  lastGetKeysOptions: QkdCallOptions | undefined;

  endpoint(saeId: string, kmeId: string): FakeQkdSource {
    return new FakeQkdSource(this, saeId, kmeId);
  }
}

export class FakeQkdSource implements QkdKeySource {
  constructor(
    private readonly link: FakeQkdLink,
    readonly saeId: string,
    readonly kmeId: string,
  ) {}

  async status(slaveSaeId: string): Promise<QkdLinkStatus> {
    this.link.calls.status++;
    if (!this.link.up) throw new QkdError('unavailable', true);
    return {
      sourceKmeId: this.kmeId,
      targetKmeId: 'peer-kme',
      masterSaeId: this.saeId,
      slaveSaeId,
      keySize: 256,
      storedKeyCount: 100,
      maxKeyCount: 1000,
      maxKeyPerRequest: 8,
      maxKeySize: 1024,
      minKeySize: 64,
      maxSaeIdCount: 0,
    };
  }

  async getKeys(slaveSaeId: string, request?: QkdKeyRequest, options?: QkdCallOptions): Promise<QkdKey[]> {
    this.link.calls.getKeys++;
    this.link.lastGetKeysOptions = options;
    if (!this.link.up) throw new QkdError('unavailable', true);
    const out: QkdKey[] = [];
    for (let i = 0; i < (request?.number ?? 1); i++) {
      const keyId = randomUUID();
      const key = new Uint8Array(randomBytes((request?.size ?? 256) / 8));
      this.link.pool.set(keyId, { master: this.saeId, slave: slaveSaeId, key: key.slice() });
      out.push({ keyId, key });
    }
    return out;
  }

  async getKeysById(masterSaeId: string, keyIds: string[]): Promise<QkdKey[]> {
    this.link.calls.getKeysById++;
    if (!this.link.up) throw new QkdError('unavailable', true);
    return keyIds.map((keyId) => {
      const e = this.link.pool.get(keyId);
      if (!e || e.master !== masterSaeId || e.slave !== this.saeId) throw new QkdError('not-found', false);
      this.link.pool.delete(keyId); // single use, as in ETSI 014
      return { keyId, key: e.key };
    });
  }

  async close(): Promise<void> {}
}
