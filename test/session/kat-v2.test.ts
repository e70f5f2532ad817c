import { createCipheriv, createHash, createHmac, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import {
  type BudgetRecord,
  ContactPolicies,
  type StoredContactPolicy,
} from '../../src/governance/contacts.js';
import {
  type PrekeyIndexEntry,
  type PrekeyRecord,
  PrekeyStore,
  verifyPrekey,
} from '../../src/governance/prekeys.js';
import { TokenIssuer, type TokenRecord, openTokenBody } from '../../src/governance/resumption.js';
import { fromBase64url, fromHex } from '../../src/session/encoding.js';
import { SessionService } from '../../src/session/handshake.js';
import { PeerRegistry } from '../../src/session/peers.js';
import { PosturePolicy } from '../../src/session/policy.js';
import { decodeAnswer, decodeResume } from '../../src/session/resume.js';
import { decodeBody, decodeMessage, encodeBody } from '../../src/session/transcript.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { FakeEntropy, fakeProvenance } from './fakes.js';
import { katIdentity } from './kat.js';
import { type GovernedKatExpected, type GovernedKatInputs, computeGovernedKat } from './kat-v2.js';

const file = JSON.parse(readFileSync(new URL('../vectors/governed-kat.json', import.meta.url), 'utf8')) as {
  version: number;
  vectors: Array<{ inputs: GovernedKatInputs; expected: GovernedKatExpected }>;
};
const buf = (hex: string) => Buffer.from(hex, 'hex');
const utf8 = (s: string) => Buffer.from(s, 'utf8');
const hkdf = (ikm: Buffer, salt: Buffer, info: Buffer) =>
  Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));
/** The length-prefixed field encoding (README, "Session protocol (qkm/v1)" §4), written out. */
const fields = (...parts: Buffer[]) =>
  Buffer.concat(
    parts.flatMap((p) => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(p.length);
      return [len, p];
    }),
  );

describe('qkm/v2 known-answer vectors (test/vectors/governed-kat.json)', () => {
  describe.each(file.vectors)('governed handshake and resumption', (v) => {
    const e = v.expected;
    const i = v.inputs;

    it('recomputes every expected value from the inputs', () => {
      expect(computeGovernedKat(i)).toEqual(e);
    });

    it('the body decodes strictly and re-encodes to the same bytes', () => {
      const body = decodeBody(buf(e.body));
      expect(body.version).toBe(4); // governed body, domain-tagged signature (#13)
      expect(body.governed).toMatchObject({
        initiatorAid: i.initiator_aid,
        responderAid: i.responder_aid,
        prekeyId: i.prekey.id,
        prekeyKind: 'otk',
      });
      expect(Buffer.from(encodeBody(body)).toString('hex')).toBe(e.body);
      expect(Buffer.from(decodeMessage(e.handshake).body).toString('hex')).toBe(e.body);
    });

    it('agrees with an independent derivation (node:crypto SHA3, HKDF, HMAC, AES-GCM) and FIPS 203/204', () => {
      expect(createHash('sha3-256').update(buf(e.body)).digest('hex')).toBe(e.transcript_hash);
      const th = buf(e.transcript_hash);
      const ikm = Buffer.concat([buf(e.ss_node), buf(e.ss_prekey)]);
      expect(hkdf(ikm, buf(i.r), Buffer.concat([utf8('qkm/v2'), th])).toString('hex')).toBe(e.key);
      const kc = hkdf(ikm, buf(i.r), Buffer.concat([utf8('qkm/v2 confirm-key'), th]));
      expect(kc.toString('hex')).toBe(e.confirm_key);
      expect(
        createHmac('sha256', kc)
          .update(Buffer.concat([utf8('qkm/v2 confirm'), th]))
          .digest('hex'),
      ).toBe(e.confirm_tag);
      // Both ML-KEM secrets, from the responder's side.
      const b = katIdentity(i.responder);
      expect(Buffer.from(ml_kem768.decapsulate(buf(e.kem_ciphertext), b.kem.secretKey)).toString('hex')).toBe(
        e.ss_node,
      );
      const otk = ml_kem768.keygen(buf(i.prekey.seed));
      expect(
        Buffer.from(ml_kem768.decapsulate(buf(e.prekey_ciphertext), otk.secretKey)).toString('hex'),
      ).toBe(e.ss_prekey);
      // Signatures: the handshake by the initiator node, the prekey by the responder node.
      const a = katIdentity(i.initiator);
      // Domain-tagged (issue #13): empty FIPS 204 context over u8(len tag) ‖ tag ‖ body, by hand.
      const tag = utf8('qkm/v1 handshake');
      expect(
        ml_dsa65.verify(
          buf(e.signature_deterministic),
          Buffer.concat([Buffer.of(tag.length), tag, buf(e.body)]),
          a.signing.publicKey,
        ),
      ).toBe(true);
      expect(
        verifyPrekey(e.prekey, b.signing.publicKey, { aid: i.responder_aid, nodeId: b.nodeId }, 0).prekey,
      ).toEqual(e.prekey);
      // Token keys, the agent key hash and the sealed token body.
      const k = buf(e.key);
      expect(hkdf(k, th, utf8('qkm/v2 resumption secret')).toString('hex')).toBe(e.resumption_secret);
      expect(hkdf(k, th, utf8('qkm/v2 access token key')).toString('hex')).toBe(e.token_key);
      expect(
        createHash('sha256')
          .update(fields(utf8('qkm/v2 agent key'), Buffer.from(a.signing.publicKey), utf8(i.initiator_agent)))
          .digest('hex'),
      ).toBe(e.initiator_key_hash);
      const c = createCipheriv('aes-256-gcm', buf(e.token_key), buf(i.token.iv));
      c.setAAD(utf8(i.token.id));
      const sealed = Buffer.concat([
        buf(i.token.iv),
        c.update(JSON.stringify(e.token_body), 'utf8'),
        c.final(),
        c.getAuthTag(),
      ]);
      expect(sealed.toString('base64url')).toBe(e.token_sealed);
      expect(openTokenBody(buf(e.token_key), i.token.id, e.token_sealed)).toEqual(e.token_body);
      // Resumption: proof, transcript', K' and the confirmation tag.
      const rs = buf(e.resumption_secret);
      expect(
        createHmac('sha256', rs)
          .update(
            fields(
              utf8('qkm/v2 resume proof'),
              utf8(i.token.id),
              utf8(e.initiator_key_hash),
              buf(i.resume.nonce),
            ),
          )
          .digest('hex'),
      ).toBe(e.resume_proof);
      const use = Buffer.alloc(8);
      use.writeBigUInt64BE(BigInt(i.resume.use));
      const transcript = fields(
        utf8('qkm/v2 resume'),
        utf8(i.token.id),
        utf8(e.initiator_key_hash),
        utf8(i.responder_aid),
        buf(i.resume.nonce),
        buf(i.resume.salt),
        use,
      );
      expect(transcript.toString('hex')).toBe(e.resume_transcript);
      const k2 = hkdf(rs, buf(i.resume.salt), createHash('sha256').update(transcript).digest());
      expect(k2.toString('hex')).toBe(e.resumed_key);
      expect(createHmac('sha256', k2).update(utf8('qkm/v2 resume confirm')).digest('hex')).toBe(
        e.resume_confirm,
      );
      expect(e.resumed_session_id).toBe(createHash('sha256').update(transcript).digest('hex').slice(0, 32));
      // The two resumption messages decode to their parts.
      expect(decodeResume(e.resume_message)).toMatchObject({
        tokenId: i.token.id,
        initiatorAgent: i.initiator_agent,
        initiatorNodeId: e.initiator_node_id,
        responderNodeId: e.responder_node_id,
      });
      expect(decodeAnswer(e.resume_answer)).toMatchObject({ tokenId: i.token.id, use: i.resume.use });
    });

    it('the responder service accepts the vector handshake, derives K and tag, and destroys the OTK', async () => {
      const store = createMemoryBackend();
      const entropy = new FakeEntropy();
      const identity = katIdentity(i.responder);
      const audit = new AuditLog({ store });
      const peers = new PeerRegistry({ store, audit });
      await peers.add(katIdentity(i.initiator).bundle);
      // The vector's prekey, stored the way PrekeyStore stores its own (record, id index, seed).
      const seedId = '5d6e7f80-1a2b-4c3d-8e4f-5a6b7c8d9e0f';
      await store.keys.put({
        meta: {
          id: seedId,
          size: 64,
          purpose: 'session',
          created: i.prekey.created,
          expires: i.prekey.expires,
          label: 'vector prekey',
          provenance: fakeProvenance(true),
        },
        material: fromHex(i.prekey.seed),
      });
      const recordKey = `otk ${i.responder_aid} ${i.prekey.id}`;
      await store.records<PrekeyIndexEntry>('prekey-ids').put(i.prekey.id, { key: recordKey });
      await store.records<PrekeyRecord>('prekeys').put(recordKey, { prekey: e.prekey, seedId });
      const now = () => i.timestamp_ms + 1000;
      const prekeys = new PrekeyStore({
        signer: identity,
        keys: store.keys,
        records: store.records<PrekeyRecord>('prekeys'),
        index: store.records<PrekeyIndexEntry>('prekey-ids'),
        seed: async () => {
          throw new Error('not used');
        },
        now,
      });
      const contacts = new ContactPolicies({
        policies: store.records<StoredContactPolicy>('contact-policies'),
        budgets: store.records<BudgetRecord>('contact-budgets'),
        isLocalAid: async (aid) => aid === i.responder_aid,
        now,
      });
      await contacts.set(i.responder_aid, [{ pattern: '*@example.com:*', budget: 1 }]);
      const tokens = new TokenIssuer({
        tokens: store.records<TokenRecord>('access-tokens'),
        nonces: store.records<{ at: string }>('access-token-nonces'),
        keys: store.keys,
        salt: async (n) => ({ data: new Uint8Array(n), provenance: fakeProvenance(true) }),
        now,
      });
      const sessions = new SessionService({
        identity,
        peers,
        policy: new PosturePolicy({ region: identity.region, entropy }),
        entropy,
        store,
        audit,
        clock: now,
        governance: { prekeys, contacts, tokens, tokenMaxUses: 3, tokenTtlSeconds: 3600 },
      });
      const acc = await sessions.accept({
        handshake: e.handshake,
        agent: 'bob',
        agentAid: i.responder_aid,
      });
      expect(Buffer.from(acc.key).toString('hex')).toBe(e.key);
      expect(Buffer.from(fromBase64url(acc.confirm)).toString('hex')).toBe(e.confirm_tag);
      expect(acc.session_id).toBe(e.session_id);
      expect(acc.provenance.governance).toEqual({
        protocol: 'qkm/v2',
        initiatorAid: i.initiator_aid,
        responderAid: i.responder_aid,
        prekeyId: i.prekey.id,
        lastResort: false,
        // The vector's initiator node is pinned here (not Provider-vouched).
        peerTrust: 'pinned',
      });
      // The token opens under the vector's token key and is bound to the vector's initiator.
      const body = openTokenBody(buf(e.token_key), acc.token!.id, acc.token!.sealed);
      expect(body).toMatchObject({ initiator: e.initiator_key_hash, responder: i.responder_aid, maxUses: 3 });
      // The OTK's seed is gone; the budget unit is spent.
      expect((await prekeys.state(i.prekey.id))?.used).toBe(true);
      await expect(store.keys.read(seedId)).rejects.toThrow();
      expect((await contacts.explain(i.responder_aid, i.initiator_aid)).used).toBe(1);
    });
  });
});
