import { sha3_256 } from '@noble/hashes/sha3.js';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import { isQkmError } from '../../src/core/errors.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { fromBase64url, toBase64url } from '../../src/session/encoding.js';
import { usePqcBackend } from '../../src/pqc/index.js';
import {
  DSA_CONTEXT,
  IDENTITY_SEED_BYTES,
  IdentityManager,
  bundleSigningBytes,
  deriveIdentityKeys,
  makeBundle,
  nodeIdOf,
  verifyBundle,
} from '../../src/session/identity.js';
import { PeerRegistry } from '../../src/session/peers.js';
import { FakeEntropy } from './fakes.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isQkmError(e) ? e.code : String(e);
  }
  return undefined;
}

describe('node identity', () => {
  it('creates ML-DSA-65 + ML-KEM-768 keys from provider entropy, persists and reloads them', async () => {
    const store = createMemoryBackend();
    const entropy = new FakeEntropy();
    const mgr = new IdentityManager({ store, entropy });
    const id = await mgr.init({ region: 'EU', saeId: 'sae-1', kmeId: 'kme-1' });
    expect(entropy.calls[0]).toEqual({ n: 96, require: 'any' });
    expect(id.signing.publicKey).toHaveLength(1952);
    expect(id.kem.publicKey).toHaveLength(1184);
    expect(id.nodeId).toBe(Buffer.from(sha3_256(id.signing.publicKey).subarray(0, 16)).toString('hex'));
    expect(id.provenance.seedOrigin).toBe('quantum');
    const meta = await store.keys.meta(id.keyId);
    expect(meta).toMatchObject({ purpose: 'identity', size: 96, expires: null });

    const again = await new IdentityManager({ store, entropy }).load();
    expect(again?.nodeId).toBe(id.nodeId);
    expect(Buffer.from(again!.kem.secretKey).equals(Buffer.from(id.kem.secretKey))).toBe(true);
    await expect(mgr.init({ region: 'EU' })).rejects.toMatchObject({ code: 'KEY_EXISTS' });
  });

  it('requireQuantum refuses OS-seeded identities', async () => {
    const entropy = new FakeEntropy();
    entropy.quantum = false;
    const mgr = new IdentityManager({ store: createMemoryBackend(), entropy });
    await expect(mgr.init({ region: 'US', requireQuantum: true })).rejects.toMatchObject({
      code: 'QUANTUM_ENTROPY_UNAVAILABLE',
    });
    const id = await mgr.init({ region: 'US' });
    expect(id.provenance.degraded).toBe(true);
  });

  it.each(['liboqs-wasm', 'noble'] as const)(
    '%s: a v1 bundle (made before #13: FIPS 204 context "qkm/v1 identity-bundle") still verifies, in that form only',
    async (backend) => {
      await usePqcBackend(backend);
      onTestFinished(() => usePqcBackend('noble').then(() => undefined));
      const keys = deriveIdentityKeys(new Uint8Array(IDENTITY_SEED_BYTES).fill(5));
      const v2 = makeBundle(keys, { region: 'EU', created: '2026-01-01T00:00:00.000Z' });
      expect(v2.version).toBe(2);
      const { signature: _s, ...unsigned } = { ...v2, version: 1 as const };
      const legacy = ml_dsa65.sign(bundleSigningBytes(unsigned), keys.signing.secretKey, {
        context: DSA_CONTEXT.bundle,
      });
      const v1 = { ...unsigned, signature: toBase64url(legacy) };
      expect(verifyBundle(v1).nodeId).toBe(v2.node_id);
      // The version picks the form: the legacy signature relabelled v2, or v2's relabelled v1, fail.
      expect(codeOf(() => verifyBundle({ ...v1, version: 2 }))).toBe('BUNDLE_INVALID');
      expect(codeOf(() => verifyBundle({ ...v2, version: 1 }))).toBe('BUNDLE_INVALID');
    },
  );

  it('the bundle is self-signed and every field is covered', async () => {
    const mgr = new IdentityManager({ store: createMemoryBackend(), entropy: new FakeEntropy() });
    const { bundle } = await mgr.init({ region: 'JP', saeId: 'sae-1', kmeId: 'kme-1' });
    expect(verifyBundle(bundle).nodeId).toBe(bundle.node_id);
    expect(verifyBundle(JSON.stringify(bundle)).kmeId).toBe('kme-1');
    const edits: Array<Record<string, unknown>> = [
      { region: 'CN' },
      { sae_id: 'sae-2' },
      { kme_id: undefined },
      { created: '2020-01-01T00:00:00.000Z' },
      { version: 1 }, // a v2 (tagged) signature presented as v1 (context-string form)
      { version: 3 },
      { extra: 1 },
      { node_id: '0'.repeat(32) },
    ];
    for (const e of edits) {
      const b = JSON.parse(JSON.stringify({ ...bundle, ...e }));
      expect(codeOf(() => verifyBundle(b))).toBe('BUNDLE_INVALID');
    }
    const kem = fromBase64url(bundle.ml_kem_768_public_key);
    kem[10]! ^= 1;
    expect(codeOf(() => verifyBundle({ ...bundle, ml_kem_768_public_key: toBase64url(kem) }))).toBe(
      'BUNDLE_INVALID',
    );
    const sig = fromBase64url(bundle.signature);
    sig[0]! ^= 1;
    expect(codeOf(() => verifyBundle({ ...bundle, signature: toBase64url(sig) }))).toBe('BUNDLE_INVALID');
    for (const junk of [null, 1, 'x', [], {}, '{"version":1}']) {
      expect(codeOf(() => verifyBundle(junk))).toBe('BUNDLE_INVALID');
    }
  });

  it('rotation keeps the old public bundle and destroys the old seed', async () => {
    const store = createMemoryBackend();
    const mgr = new IdentityManager({ store, entropy: new FakeEntropy() });
    const old = await mgr.init({ region: 'EU' });
    const next = await mgr.rotate();
    expect(next.nodeId).not.toBe(old.nodeId);
    expect((await mgr.retired()).map((b) => b.node_id)).toEqual([old.nodeId]);
    await expect(store.keys.meta(old.keyId)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    expect(nodeIdOf(fromBase64url((await mgr.retired())[0]!.ml_dsa_65_public_key))).toBe(old.nodeId);
  });
});

describe('peer registry', () => {
  it('pins, lists, gets, removes; same id with other keys → PEER_EXISTS', async () => {
    const e = new FakeEntropy();
    const a = await new IdentityManager({ store: createMemoryBackend(), entropy: e }).init({ region: 'EU' });
    const b = await new IdentityManager({ store: createMemoryBackend(), entropy: e }).init({ region: 'US' });
    const store = createMemoryBackend();
    const audit = new AuditLog({ store });
    const reg = new PeerRegistry({ store, audit });
    const p = await reg.add(a.bundle, { label: 'alpha', minPosture: 'PQC+QRNG' });
    expect(p).toMatchObject({ nodeId: a.nodeId, region: 'EU', label: 'alpha', minPosture: 'PQC+QRNG' });
    await reg.add(a.bundle); // idempotent
    await reg.add(b.bundle);
    expect((await reg.list()).map((r) => r.node_id).sort()).toEqual([a.nodeId, b.nodeId].sort());
    // Same node id (same ML-DSA key), different KEM key, validly re-signed: refused.
    const resigned = await new IdentityManager({ store: createMemoryBackend(), entropy: e }).init({
      region: 'EU',
    });
    const clash = { ...resigned.bundle, node_id: a.nodeId };
    await expect(reg.add(clash)).rejects.toMatchObject({ code: 'BUNDLE_INVALID' });
    const otherRegion = rebundle(a, 'CN');
    await expect(reg.add(otherRegion)).rejects.toMatchObject({ code: 'PEER_EXISTS' });
    expect((await reg.get(a.nodeId))?.region).toBe('EU');
    await reg.remove(a.nodeId);
    expect(await reg.get(a.nodeId)).toBeUndefined();
    await expect(reg.remove(a.nodeId)).rejects.toMatchObject({ code: 'PEER_NOT_FOUND' });
    await expect(reg.require(a.nodeId)).rejects.toMatchObject({ code: 'PEER_NOT_FOUND' });
    await expect(reg.add(a.bundle, { minPosture: 'X' as never })).rejects.toMatchObject({
      code: 'INVALID_PARAMETER',
    });
    // The registry audits each change itself (idempotent re-pin and refusals write nothing).
    expect((await audit.records()).map((r) => [r.type, r.details.node_id])).toEqual([
      ['peer.pinned', a.nodeId],
      ['peer.pinned', b.nodeId],
      ['peer.removed', a.nodeId],
    ]);
  });
});

function rebundle(id: Awaited<ReturnType<IdentityManager['init']>>, region: string) {
  return makeBundle({ signing: id.signing, kem: id.kem }, { region, created: id.created });
}
