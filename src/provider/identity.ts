import { randomBytes, randomUUID } from 'node:crypto';
import { mlDsa65KeygenFromSeed } from '../pqc/index.js';
import type { Provenance } from '../core/provenance.js';
import { toBase64url } from '../session/encoding.js';
import { nodeIdOf } from '../session/identity.js';
import type { StorageBackend } from '../store/interface.js';

/**
 * The Provider's own ML-DSA-65 identity: the key its responses are signed with and nodes pin.
 * The 32-byte seed (FIPS 204 ξ) is the only secret; it lives in the store's KeyStore, sealed
 * under the Provider's KEK like any key, so a Provider restarted on the same store (LevelDB data
 * dir, or the etcd cluster with the same KEK file) has the same identity.
 */

export interface ProviderIdentity {
  /** First 16 bytes of SHA3-256(public key), hex (the same rule as node ids). */
  providerId: string;
  publicKey: Uint8Array;
  /** Never serialise, never log. */
  secretKey: Uint8Array;
  created: string;
}

interface IdentityRecord {
  key_id: string;
  provider_id: string;
  ml_dsa_65_public_key: string;
  created: string;
}

const META_KEY = 'current';
const SEED_BYTES = 32;

// The Provider runs no entropy pipeline: its one key is seeded from the OS CSPRNG, and its
// provenance says so (degraded: no quantum source stood behind it).
function osProvenance(at: string): Provenance {
  return {
    seedOrigin: 'os',
    sources: [],
    entropyCredited: SEED_BYTES * 8,
    drbg: { name: 'os', instance: 'provider', reseedCounter: 0, seededAt: at, predictionResistance: false },
    degraded: true,
    reason: 'the Provider identity is seeded from the OS CSPRNG (the Provider has no QRNG)',
    at,
  };
}

export async function loadOrCreateProviderIdentity(store: StorageBackend): Promise<ProviderIdentity> {
  const meta = store.records<IdentityRecord>('provider-identity');
  const existing = await meta.get(META_KEY);
  if (existing) return fromRecord(store, existing);
  const created = new Date().toISOString();
  const seed = new Uint8Array(randomBytes(SEED_BYTES));
  const keyId = randomUUID();
  try {
    const { publicKey, secretKey } = mlDsa65KeygenFromSeed(seed);
    await store.keys.put({
      meta: {
        id: keyId,
        size: SEED_BYTES,
        purpose: 'identity',
        created,
        expires: null,
        label: 'Provider ML-DSA-65 identity seed',
        provenance: osProvenance(created),
      },
      material: seed,
    });
    const rec: IdentityRecord = {
      key_id: keyId,
      provider_id: nodeIdOf(publicKey),
      ml_dsa_65_public_key: toBase64url(publicKey),
      created,
    };
    // Two Providers starting on one fresh etcd store: the first record wins, the other loads it.
    if (await meta.putIfAbsent(META_KEY, rec))
      return { providerId: rec.provider_id, publicKey, secretKey, created };
    secretKey.fill(0);
    await store.keys.delete(keyId).catch(() => undefined);
    return fromRecord(store, (await meta.get(META_KEY)) as IdentityRecord);
  } finally {
    seed.fill(0);
  }
}

async function fromRecord(store: StorageBackend, rec: IdentityRecord): Promise<ProviderIdentity> {
  const { material } = await store.keys.read(rec.key_id);
  try {
    const { publicKey, secretKey } = mlDsa65KeygenFromSeed(material);
    if (toBase64url(publicKey) !== rec.ml_dsa_65_public_key)
      throw new Error('the stored Provider identity seed does not match its public key (wrong KEK?)');
    return { providerId: rec.provider_id, publicKey, secretKey, created: rec.created };
  } finally {
    material.fill(0);
  }
}
