import { createHash, createHmac, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import { usePqcBackend } from '../../src/pqc/index.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { fromBase64url, fromHex } from '../../src/session/encoding.js';
import { SessionService } from '../../src/session/handshake.js';
import { verifyBundle } from '../../src/session/identity.js';
import { PeerRegistry } from '../../src/session/peers.js';
import { PosturePolicy } from '../../src/session/policy.js';
import { FakeEntropy, FakeQkdLink } from './fakes.js';
import { type KatVector, computeKat, katIdentity } from './kat.js';

const file = JSON.parse(readFileSync(new URL('../vectors/handshake-kat.json', import.meta.url), 'utf8')) as {
  version: number;
  vectors: KatVector[];
};

const buf = (hex: string) => Buffer.from(hex, 'hex');

describe('handshake known-answer vectors (test/vectors/handshake-kat.json)', () => {
  it('covers every posture', () => {
    expect(file.vectors.map((v) => v.posture)).toEqual(['PQC', 'PQC+QRNG', 'QKD+PQC+QRNG']);
  });

  it('HKDF-SHA-256 matches RFC 5869 Appendix A.1 (node:crypto, the cross-check below)', () => {
    const okm = hkdfSync(
      'sha256',
      buf('0b'.repeat(22)),
      buf('000102030405060708090a0b0c'),
      buf('f0f1f2f3f4f5f6f7f8f9'),
      42,
    );
    expect(Buffer.from(okm).toString('hex')).toBe(
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
    );
  });

  describe.each(file.vectors)('$posture', (v) => {
    it('recomputes every expected value from the inputs', () => {
      expect(computeKat(v.posture, v.inputs)).toEqual(v.expected);
    });

    it('agrees with an independent derivation (node:crypto SHA3, HKDF, HMAC) and FIPS 204 verification', () => {
      const e = v.expected;
      expect(createHash('sha3-256').update(buf(e.body)).digest('hex')).toBe(e.transcript_hash);
      const th = buf(e.transcript_hash);
      const ikm = Buffer.concat([buf(e.ss_mlkem), ...v.inputs.qkd_keys.map((k) => buf(k.key))]);
      const k = hkdfSync('sha256', ikm, buf(v.inputs.r), Buffer.concat([Buffer.from('qkm/v1'), th]), 32);
      expect(Buffer.from(k).toString('hex')).toBe(e.key);
      const kc = hkdfSync(
        'sha256',
        ikm,
        buf(v.inputs.r),
        Buffer.concat([Buffer.from('qkm/v1 confirm-key'), th]),
        32,
      );
      expect(Buffer.from(kc).toString('hex')).toBe(e.confirm_key);
      const tag = createHmac('sha256', Buffer.from(kc))
        .update(Buffer.concat([Buffer.from('qkm/v1 confirm'), th]))
        .digest('hex');
      expect(tag).toBe(e.confirm_tag);
      expect(e.session_id).toBe(e.transcript_hash.slice(0, 32));
      const pk = fromBase64url(e.initiator_bundle.ml_dsa_65_public_key);
      // v3: empty FIPS 204 context over u8(len tag) ‖ tag ‖ body (src/pqc/domain.ts), computed here by hand.
      const dsaTag = new Uint8Array(Buffer.from('qkm/v1 handshake'));
      const tagged = Buffer.concat([Buffer.of(dsaTag.length), dsaTag, buf(e.body)]);
      expect(ml_dsa65.verify(buf(e.signature_deterministic), tagged, pk)).toBe(true);
      expect(ml_dsa65.verify(buf(e.signature_deterministic), buf(e.body), pk)).toBe(false); // the tag is bound
      // …and not the pre-v3 form (the tag as the FIPS 204 context): the two forms are disjoint.
      expect(ml_dsa65.verify(buf(e.signature_deterministic), buf(e.body), pk, { context: dsaTag })).toBe(
        false,
      );
      expect(verifyBundle(e.initiator_bundle).nodeId).toBe(e.initiator_node_id);
      expect(verifyBundle(e.responder_bundle).nodeId).toBe(e.responder_node_id);
      const b = katIdentity(v.inputs.responder);
      expect(Buffer.from(ml_kem768.decapsulate(buf(e.kem_ciphertext), b.kem.secretKey)).toString('hex')).toBe(
        e.ss_mlkem,
      );
    });

    it.each(['liboqs-wasm', 'noble'] as const)(
      '%s: the responder service accepts the vector handshake and derives the expected K and tag',
      async (backend) => {
        await usePqcBackend(backend);
        onTestFinished(() => usePqcBackend('noble').then(() => undefined));
        const store = createMemoryBackend();
        const entropy = new FakeEntropy();
        const identity = katIdentity(v.inputs.responder);
        const peers = new PeerRegistry({ store, audit: new AuditLog({ store }) });
        await peers.add(v.expected.initiator_bundle);
        const link = new FakeQkdLink();
        for (const q of v.inputs.qkd_keys) {
          link.pool.set(q.key_id, {
            master: v.inputs.initiator.sae_id!,
            slave: identity.saeId!,
            key: fromHex(q.key),
          });
        }
        const sessions = new SessionService({
          identity,
          peers,
          policy: new PosturePolicy({ region: identity.region, entropy }),
          entropy,
          qkd: link.endpoint(identity.saeId!, identity.kmeId!),
          store,
          audit: new AuditLog({ store }),
          clock: () => v.inputs.timestamp_ms + 1000,
        });
        const acc = await sessions.accept({
          handshake: v.expected.handshake,
          agent: v.inputs.responder_agent,
        });
        expect(Buffer.from(acc.key).toString('hex')).toBe(v.expected.key);
        expect(Buffer.from(fromBase64url(acc.confirm)).toString('hex')).toBe(v.expected.confirm_tag);
        expect(acc.session_id).toBe(v.expected.session_id);
        expect(acc.context).toBe(v.inputs.context_utf8);
        // v2: the agents and the initiator's degraded / fallback / randomness travel signed.
        expect(acc.peer_agent).toBe(v.inputs.initiator_agent);
        expect(acc.provenance.degraded).toBe(v.inputs.degraded);
        expect(acc.provenance.fallback).toBe(v.inputs.fallback);
        expect(acc.provenance.pqc.randomness).toBe(v.inputs.randomness);
        expect(acc.provenance.pqc.backend).toBe(backend);
        expect(link.calls.getKeysById).toBe(v.inputs.qkd_keys.length ? 1 : 0);
      },
    );
  });
});
