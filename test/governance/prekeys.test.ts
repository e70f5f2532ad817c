import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isQkmError } from '../../src/core/errors.js';
import type { Provenance } from '../../src/core/provenance.js';
import {
  type PrekeyIndexEntry,
  type PrekeyRecord,
  PrekeyStore,
  type SignedPrekey,
  verifyPrekey,
} from '../../src/governance/prekeys.js';
import type { StorageBackend } from '../../src/store/interface.js';
import { openLevelBackend } from '../../src/store/level.js';
import { createMemoryBackend } from '../../src/store/memory.js';

const PROVENANCE: Provenance = {
  seedOrigin: 'quantum',
  sources: [],
  entropyCredited: 512,
  drbg: {
    name: 'CTR_DRBG(AES-256, df)',
    instance: 'test',
    reseedCounter: 1,
    seededAt: '2026-01-01T00:00:00.000Z',
    predictionResistance: false,
  },
  degraded: false,
  at: '2026-01-01T00:00:00.000Z',
};
const BOB = 'bob@example.com:calendar';
const signing = ml_dsa65.keygen(new Uint8Array(32).fill(7));
const signer = { nodeId: 'ab'.repeat(16), signing };

function prekeys(store: StorageBackend, clock = { t: Date.now() }) {
  return new PrekeyStore({
    signer,
    keys: store.keys,
    records: store.records<PrekeyRecord>('prekeys'),
    index: store.records<PrekeyIndexEntry>('prekey-ids'),
    seed: async (n) => ({ data: new Uint8Array(randomBytes(n)), provenance: PROVENANCE }),
    now: () => clock.t,
  });
}

async function code(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
    return undefined;
  } catch (err) {
    return isQkmError(err) ? err.code : `not a QkmError: ${String(err)}`;
  }
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-prekeys-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ML-KEM-768 one-time prekeys', () => {
  it('are signed by the node, bound to the agent id, and verify only for it', async () => {
    const p = prekeys(createMemoryBackend());
    const batch = await p.publishBatch(BOB, 3);
    expect(batch).toHaveLength(3);
    expect(new Set(batch.map((k) => k.ml_kem_768_public_key)).size).toBe(3);
    for (const k of batch) {
      const { publicKey } = verifyPrekey(k, signing.publicKey, { aid: BOB, nodeId: signer.nodeId });
      expect(publicKey).toHaveLength(1184);
    }
    const k = batch[0] as SignedPrekey;
    const other = ml_dsa65.keygen(new Uint8Array(32).fill(8));
    expect(await code(() => verifyPrekey(k, other.publicKey, { aid: BOB, nodeId: signer.nodeId }))).toBe(
      'PREKEY_INVALID',
    );
    expect(
      await code(() =>
        verifyPrekey(k, signing.publicKey, { aid: 'eve@example.com:calendar', nodeId: signer.nodeId }),
      ),
    ).toBe('PREKEY_INVALID');
    // Re-binding the key to another agent breaks the signature.
    const rebound = { ...k, aid: 'eve@example.com:calendar' };
    expect(
      await code(() =>
        verifyPrekey(rebound, signing.publicKey, { aid: 'eve@example.com:calendar', nodeId: signer.nodeId }),
      ),
    ).toBe('PREKEY_INVALID');
    expect(
      await code(() =>
        verifyPrekey({ ...k, kind: 'last-resort' }, signing.publicKey, { aid: BOB, nodeId: signer.nodeId }),
      ),
    ).toBe('PREKEY_INVALID');
    for (const junk of [
      null,
      7,
      {},
      { ...k, v: 1 },
      { ...k, signature: 'x' },
      { ...k, ml_kem_768_public_key: 'AAAA' },
    ])
      expect(
        await code(() => verifyPrekey(junk, signing.publicKey, { aid: BOB, nodeId: signer.nodeId })),
      ).toBe('PREKEY_INVALID');
    expect(
      await code(() =>
        verifyPrekey(k, signing.publicKey, { aid: BOB, nodeId: signer.nodeId }, Date.parse(k.expires)),
      ),
    ).toBe('PREKEY_EXPIRED');
  });

  it('an OTK decapsulates exactly once; the last-resort prekey keeps serving, flagged', async () => {
    const p = prekeys(createMemoryBackend());
    const [otk] = await p.publishBatch(BOB, 1);
    const pk = verifyPrekey(otk, signing.publicKey, { aid: BOB, nodeId: signer.nodeId }).publicKey;
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(pk);
    const got = await p.decapsulate(otk!.id, cipherText);
    expect(got).toMatchObject({ lastResort: false, aid: BOB });
    expect(Buffer.from(got.sharedSecret).equals(Buffer.from(sharedSecret))).toBe(true);
    expect(await code(p.decapsulate(otk!.id, cipherText))).toBe('PREKEY_CONSUMED');
    expect(await p.unused(BOB)).toEqual([]);

    const lr = await p.lastResort(BOB);
    expect(lr.kind).toBe('last-resort');
    expect((await p.lastResort(BOB)).id).toBe(lr.id);
    const lpk = verifyPrekey(lr, signing.publicKey, { aid: BOB, nodeId: signer.nodeId }).publicKey;
    for (let i = 0; i < 2; i++) {
      const e = ml_kem768.encapsulate(lpk);
      const d = await p.decapsulate(lr.id, e.cipherText);
      expect(d.lastResort).toBe(true);
      expect(Buffer.from(d.sharedSecret).equals(Buffer.from(e.sharedSecret))).toBe(true);
    }
    expect(await code(p.decapsulate('nope', cipherText))).toBe('PREKEY_NOT_FOUND');
    expect(await code(p.publishBatch(BOB, 0))).toBe('INVALID_PARAMETER');
    expect(await code(p.publishBatch('bob', 1))).toBe('AID_INVALID');
  });

  it('concurrent uses of one OTK: exactly one decapsulates', async () => {
    const p = prekeys(createMemoryBackend());
    const [otk] = await p.publishBatch(BOB, 1);
    const pk = verifyPrekey(otk, signing.publicKey, { aid: BOB, nodeId: signer.nodeId }).publicKey;
    const ct = ml_kem768.encapsulate(pk).cipherText;
    const results = await Promise.all(Array.from({ length: 5 }, () => code(p.decapsulate(otk!.id, ct))));
    expect(results.filter((r) => r === undefined)).toHaveLength(1);
    expect(results.filter((r) => r === 'PREKEY_CONSUMED')).toHaveLength(4);
  });

  it('forward secrecy: with the whole data dir and the KEK, a used OTK secret cannot be recovered', async () => {
    const kek = new Uint8Array(randomBytes(32));
    const path = join(dir, 'db');
    let store = await openLevelBackend({ path, kek: new Uint8Array(kek) });
    const p = prekeys(store);
    const [otk, spare] = await p.publishBatch(BOB, 2);
    const pk = verifyPrekey(otk, signing.publicKey, { aid: BOB, nodeId: signer.nodeId }).publicKey;
    // The recorded session: the ciphertext on the wire and the key the session used.
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(pk);
    await p.decapsulate(otk!.id, cipherText);
    await store.close();

    // The attacker: the responder's whole store and its KEK. Every key the store still holds is
    // tried as an ML-KEM seed against the recorded ciphertext.
    store = await openLevelBackend({ path, kek: new Uint8Array(kek) });
    const candidates: Uint8Array[] = [];
    for (const meta of [...(await store.keys.list({ limit: 1000 }))]) {
      try {
        candidates.push((await store.keys.read(meta.id)).material);
      } catch {
        // taken or expired: the material is gone
      }
    }
    expect(candidates).toHaveLength(1); // only the unused spare OTK's seed remains
    for (const seed of candidates) {
      if (seed.length !== 64) continue;
      const guess = ml_kem768.decapsulate(cipherText, ml_kem768.keygen(seed).secretKey);
      expect(Buffer.from(guess).equals(Buffer.from(sharedSecret))).toBe(false);
    }
    // The records hold public data only.
    const records = JSON.stringify(await store.records('prekeys').entries());
    expect(records).toContain(spare!.id);
    expect((await prekeys(store).unused(BOB)).map((k) => k.id)).toEqual([spare!.id]);
    // And the node itself refuses to use the OTK again.
    expect(await code(prekeys(store).decapsulate(otk!.id, cipherText))).toBe('PREKEY_CONSUMED');
    await store.close();
  });
});
