import { randomBytes } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { describe, expect, it } from 'vitest';
import { AgentRegistry } from '../../src/agents/registry.js';
import type { Provenance } from '../../src/core/provenance.js';
import { type PrekeyIndexEntry, type PrekeyRecord, PrekeyStore } from '../../src/governance/prekeys.js';
import { Directory } from '../../src/provider/directory.js';
import { fromBase64url } from '../../src/session/encoding.js';
import { identityFromSeed } from '../../src/session/identity.js';
import type { EntriesOptions, RecordStore, StorageBackend } from '../../src/store/interface.js';
import { createMemoryBackend } from '../../src/store/memory.js';

/**
 * The lookups on the request path are index reads, not scans: a bundle reads one OTK record
 * (`entries` with a limit), a decapsulation finds its prekey by id, an agent is found by its
 * governed id — however many records the store holds. Asserted by counting what the code asks
 * of the store.
 */

const PROVENANCE: Provenance = {
  seedOrigin: 'quantum',
  sources: [],
  entropyCredited: 512,
  drbg: {
    name: 't',
    instance: 't',
    reseedCounter: 1,
    seededAt: new Date(0).toISOString(),
    predictionResistance: false,
  },
  degraded: false,
  at: new Date(0).toISOString(),
};

/** A backend whose record stores log every `entries` call (namespace, limit). */
function counted(): { backend: StorageBackend; scans: Array<{ ns: string; limit?: number }> } {
  const inner = createMemoryBackend();
  const scans: Array<{ ns: string; limit?: number }> = [];
  return {
    scans,
    backend: {
      keys: inner.keys,
      close: () => inner.close(),
      records<T>(ns: string): RecordStore<T> {
        const r = inner.records<T>(ns);
        return {
          get: (k) => r.get(k),
          put: (k, v) => r.put(k, v),
          putIfAbsent: (k, v) => r.putIfAbsent(k, v),
          del: (k) => r.del(k),
          take: (k) => r.take(k),
          update: (k, fn) => r.update(k, fn),
          entries: (prefix?: string, o?: EntriesOptions) => {
            scans.push({ ns, ...(o?.limit === undefined ? {} : { limit: o.limit }) });
            return r.entries(prefix, o);
          },
        };
      },
    },
  };
}

const identity = identityFromSeed(
  new Uint8Array(96).fill(5),
  { region: 'EU', created: new Date(0).toISOString() },
  PROVENANCE,
);

describe('request-path lookups are index reads', () => {
  it('a bundle reads one OTK record, not the stock', async () => {
    const { backend, scans } = counted();
    const nodeStore = createMemoryBackend();
    const prekeys = new PrekeyStore({
      signer: identity,
      keys: nodeStore.keys,
      records: nodeStore.records<PrekeyRecord>('prekeys'),
      index: nodeStore.records<PrekeyIndexEntry>('prekey-ids'),
      seed: async (n) => ({ data: new Uint8Array(randomBytes(n)), provenance: PROVENANCE }),
    });
    const dir = new Directory({ store: backend });
    await dir.enroll(identity.bundle);
    const bob = 'bob@example.com:calendar';
    await dir.registerAgent(identity.nodeId, bob, 'http://127.0.0.1:1');
    await dir.registerAgent(identity.nodeId, 'alice@example.com:mail', 'http://127.0.0.1:1');
    await dir.setPolicy(identity.nodeId, bob, [{ pattern: '*', budget: 100 }]);
    const batch = await prekeys.publishBatch(bob, 30);
    await dir.uploadPrekeys(identity.nodeId, bob, batch);
    scans.length = 0;
    const b = await dir.bundle(bob, 'alice@example.com:mail', { requester: identity.nodeId });
    expect(scans).toEqual([{ ns: 'provider-otks', limit: 1 }]);
    // …and the node decapsulates with that OTK by id, without scanning its prekeys.
    const nodeScans = { scans: [] as Array<{ ns: string; limit?: number }> };
    const nodePrekeys = new PrekeyStore({
      signer: identity,
      keys: nodeStore.keys,
      records: wrap(nodeStore.records<PrekeyRecord>('prekeys'), nodeScans.scans),
      index: nodeStore.records<PrekeyIndexEntry>('prekey-ids'),
      seed: async () => {
        throw new Error('unused');
      },
    });
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(fromBase64url(b.prekey.ml_kem_768_public_key));
    const got = await nodePrekeys.decapsulate(b.prekey.id, cipherText);
    expect(Buffer.from(got.sharedSecret).equals(Buffer.from(sharedSecret))).toBe(true);
    expect(nodeScans.scans).toEqual([]);
  });

  it('an agent is found by its governed id without a scan', async () => {
    const { backend, scans } = counted();
    const audit = { append: async () => undefined };
    const registry = await AgentRegistry.open(backend.records('agents'), audit as never);
    for (let i = 0; i < 20; i++) await registry.add(`a${i}`, ['sessions'], 'system', `u${i}@example.com:x`);
    scans.length = 0;
    expect((await registry.byAid('u7@example.com:x'))?.name).toBe('a7');
    expect(await registry.byAid('nobody@example.com:x')).toBeUndefined();
    await registry.revoke('a7');
    expect(await registry.byAid('u7@example.com:x')).toBeUndefined();
    expect(scans.filter((s) => s.limit === undefined && s.ns === 'agents')).toHaveLength(0);
  });
});

function wrap<T>(r: RecordStore<T>, scans: Array<{ ns: string; limit?: number }>): RecordStore<T> {
  return {
    get: (k) => r.get(k),
    put: (k, v) => r.put(k, v),
    putIfAbsent: (k, v) => r.putIfAbsent(k, v),
    del: (k) => r.del(k),
    take: (k) => r.take(k),
    update: (k, fn) => r.update(k, fn),
    entries: (prefix?: string, o?: EntriesOptions) => {
      scans.push({ ns: 'prekeys', ...(o?.limit === undefined ? {} : { limit: o.limit }) });
      return r.entries(prefix, o);
    },
  };
}
