import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QkmClient } from '../../src/client/client.js';
import type { SignedPrekey } from '../../src/governance/prekeys.js';
import { loadOrCreateKek } from '../../src/keys/kek.js';
import { IdentityManager } from '../../src/session/identity.js';
import {
  decodeBody,
  decodeMessage,
  deriveGovernedKeys,
  deriveKeys,
  transcriptHash,
} from '../../src/session/transcript.js';
import { openLevelBackend } from '../../src/store/level.js';
import { FakeEntropy } from '../session/fakes.js';
import { BOB, type GovernedPair, startGovernedPair } from './fixtures/governed-nodes.js';

/**
 * Forward secrecy of governed sessions (issue #12): after a session, an attacker who gets the
 * responder's WHOLE data dir and its KEK (so every key the store holds, the node's long-term
 * ML-KEM key included) cannot recompute the recorded session key, because the one-time prekey's
 * secret was destroyed when the session used it. The control: an ungoverned (qkm/v1) session
 * recorded the same way IS recomputed by the same attacker — the node key alone protects it.
 */

let pair: GovernedPair;

beforeAll(async () => {
  pair = await startGovernedPair();
  await pair.b.admin.contacts.set(BOB, [{ pattern: '*@example.com:*', budget: 5 }]);
}, 60_000);

afterAll(async () => {
  await pair?.stop();
});

describe('forward secrecy against the responder data dir and KEK', () => {
  it('a governed session key cannot be recomputed; an ungoverned one can (control)', async () => {
    const alice = pair.a.agents.alice!;
    // Recorded governed session: the handshake on the wire and the key both ends used.
    const [otk, spare] = await pair.b.admin.prekeys.publish<SignedPrekey>(BOB, 2);
    const gov = await alice.sessions.initiate({ peer: pair.b.nodeId, responderAid: BOB, prekey: otk! });
    const govAcc = await pair.b.agents.bob!.sessions.accept(gov.handshake);
    expect(Buffer.from(govAcc.key).equals(Buffer.from(gov.key))).toBe(true);
    // Recorded ungoverned session with B's built-in agent.
    const v1 = await alice.sessions.initiate({ peer: pair.b.nodeId, responderAgent: 'default' });
    const defaultAgent = new QkmClient({
      url: pair.b.appliance.url,
      token: (await readFile(pair.b.appliance.tokenFiles.default!, 'utf8')).trim(),
    });
    const v1Acc = await defaultAgent.sessions.accept(v1.handshake);
    expect(Buffer.from(v1Acc.key).equals(Buffer.from(v1.key))).toBe(true);
    await pair.b.appliance.close();

    // The attacker: B's data dir, its KEK, every key in the store.
    const kek = await loadOrCreateKek(pair.b.dataDir);
    const store = await openLevelBackend({ path: join(pair.b.dataDir, 'db'), kek });
    try {
      const identity = (await new IdentityManager({ store, entropy: new FakeEntropy() }).load())!;
      const material: Uint8Array[] = [];
      for (const meta of await store.keys.list({ limit: 1000 })) {
        try {
          material.push((await store.keys.read(meta.id)).material);
        } catch {
          // taken or expired: gone
        }
      }
      // Every 64-byte value is tried as an ML-KEM key-generation seed, every 2400-byte one as a
      // decapsulation key (the node's own KEM key is in `identity`).
      const kemSecrets = [
        identity.kem.secretKey,
        ...material.filter((m) => m.length === 64).map((seed) => ml_kem768.keygen(seed).secretKey),
        ...material.filter((m) => m.length === ml_kem768.lengths.secretKey),
      ];
      // The search is real: the unused spare OTK's seed is among what the store gives up.
      const sparePk = Buffer.from(spare!.ml_kem_768_public_key, 'base64url');
      expect(
        material.some((m) => m.length === 64 && sparePk.equals(Buffer.from(ml_kem768.keygen(m).publicKey))),
      ).toBe(true);

      const recompute = (handshake: string): Uint8Array[] => {
        const { body: bytes } = decodeMessage(handshake);
        const body = decodeBody(bytes);
        const th = transcriptHash(bytes);
        const ssNode = ml_kem768.decapsulate(body.kemCiphertext, identity.kem.secretKey);
        if (!body.governed) return [deriveKeys(ssNode, [], body.r, th).key];
        return kemSecrets.map(
          (sk) =>
            deriveGovernedKeys(
              ssNode,
              ml_kem768.decapsulate(body.governed!.prekeyCiphertext, sk),
              [],
              body.r,
              th,
            ).key,
        );
      };
      const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));
      // Control: the v1 session falls to the node key alone.
      expect(recompute(v1.handshake).some((k) => same(k, v1.key))).toBe(true);
      // The governed one does not: no key the store holds opens its prekey ciphertext.
      expect(recompute(gov.handshake).some((k) => same(k, gov.key))).toBe(false);
    } finally {
      await store.close();
      kek.fill(0);
      // Back up for afterAll's stop().
      await pair.restartB();
    }
  }, 60_000);
});
