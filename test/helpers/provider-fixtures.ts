import { randomBytes } from 'node:crypto';
import type { Provenance } from '../../src/core/provenance.js';
import { type PrekeyIndexEntry, type PrekeyRecord, PrekeyStore } from '../../src/governance/prekeys.js';
import { identityFromSeed } from '../../src/session/identity.js';
import { createMemoryBackend } from '../../src/store/memory.js';

/** Provenance for test material (the tests do not judge it). */
export const TEST_PROVENANCE: Provenance = {
  seedOrigin: 'quantum',
  sources: [],
  entropyCredited: 512,
  drbg: {
    name: 'test',
    instance: 'test',
    reseedCounter: 1,
    seededAt: '2026-01-01T00:00:00.000Z',
    predictionResistance: false,
  },
  degraded: false,
  at: '2026-01-01T00:00:00.000Z',
};

/**
 * A node as the Provider sees it: a deterministic identity (from `fill`) and its own prekey
 * store in memory, to enrol, publish and sign requests with.
 */
export function testNode(fill: number, created = '2026-01-01T00:00:00.000Z') {
  const identity = identityFromSeed(
    new Uint8Array(96).fill(fill),
    { region: 'EU', created },
    TEST_PROVENANCE,
  );
  const store = createMemoryBackend();
  const prekeys = new PrekeyStore({
    signer: identity,
    keys: store.keys,
    records: store.records<PrekeyRecord>('prekeys'),
    index: store.records<PrekeyIndexEntry>('prekey-ids'),
    seed: async (n) => ({ data: new Uint8Array(randomBytes(n)), provenance: TEST_PROVENANCE }),
  });
  return { identity, prekeys };
}
