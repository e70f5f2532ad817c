import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isQkmError } from '../../src/core/errors.js';
import { type PqcBackendName, pqcBackend, pqcInfo, usePqcBackend } from '../../src/pqc/index.js';
import { decodeFields, encodeFields, fromBase64url, toBase64url } from '../../src/session/encoding.js';
import type { Posture } from '../../src/session/posture.js';
import {
  type HandshakeBody,
  decodeBody,
  decodeMessage,
  encodeBody,
  encodeMessage,
  signBody,
} from '../../src/session/transcript.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { FakeQkdLink } from './fakes.js';
import { makeNode, makePair } from './harness.js';

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeDefined();
  expect(isQkmError(err) ? err.code : String(err)).toBe(code);
}

/** Re-encodes a handshake with one body field changed, keeping the original signature. */
function withBody(handshake: string, edit: (b: HandshakeBody) => void): string {
  const { body, signature } = decodeMessage(handshake);
  const b = decodeBody(body);
  edit(b);
  return encodeMessage(encodeBody(b), signature);
}

/** The pair's peer.pinned records (written by the registries when makePair pins) are not under test here. */
const notPeer = (r: { type: string }) => !r.type.startsWith('peer.');

describe('hybrid handshake', () => {
  it.each<Posture>(['PQC', 'PQC+QRNG', 'QKD+PQC+QRNG'])(
    'both sides derive the same K under %s',
    async (posture) => {
      const link = new FakeQkdLink();
      const { a, b } = await makePair({ link });
      const init = await a.sessions.initiate({
        agent: 'alice',
        responderAgent: 'bob',
        peer: b.identity.nodeId,
        minPosture: posture,
        context: 'job-42',
      });
      // With everything healthy the policy picks the strongest; force the posture by the minimum
      // and by switching sources off for the weaker ones.
      if (posture !== 'QKD+PQC+QRNG') expect(init.posture).toBe('QKD+PQC+QRNG');
      const run = async () => {
        if (posture === 'PQC') a.entropy.quantum = false;
        if (posture === 'PQC+QRNG') link.up = false;
        const i = await a.sessions.initiate({
          agent: 'alice',
          responderAgent: 'bob',
          peer: b.identity.nodeId,
          context: 'job-42',
        });
        link.up = true;
        return i;
      };
      const i = posture === 'QKD+PQC+QRNG' ? init : await run();
      expect(i.posture).toBe(posture);
      const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
      expect(acc.session_id).toBe(i.session_id);
      expect(acc.key).toHaveLength(32);
      expect(Buffer.from(acc.key).equals(Buffer.from(i.key))).toBe(true);
      expect(acc.posture).toBe(posture);
      expect(acc.peer).toBe(a.identity.nodeId);
      expect(acc.context).toBe('job-42');
      await expect(a.sessions.confirm(i.session_id, acc.confirm, 'alice')).resolves.toEqual({
        session_id: i.session_id,
        confirmed: true,
      });
      expect(i.provenance.qkd.used).toBe(posture === 'QKD+PQC+QRNG');
      expect(acc.provenance.qkd.keyIds).toEqual(i.provenance.qkd.keyIds);
      expect(i.provenance.qrng.used).toBe(posture !== 'PQC');
      expect(i.provenance.pqc.randomness).toBe(posture === 'PQC' ? 'os' : 'quantum');
    },
  );

  it('PQC draws its randomness from the OS and says so', async () => {
    const { a, b } = await makePair();
    a.entropy.quantum = false;
    a.entropy.calls.length = 0;
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(i.posture).toBe('PQC');
    expect(a.entropy.calls.filter((c) => c.require === 'quantum')).toEqual([]);
    expect(i.provenance.pqc.randomness).toBe('os');
    expect(i.provenance.qrng).toMatchObject({ used: false, degraded: true });
    expect(i.provenance.degraded).toBe(true);
    expect(i.provenance.reason).toMatch(/quantum entropy/);
  });

  it('QRNG postures require quantum entropy for m, r and the nonce', async () => {
    const { a, b } = await makePair();
    a.entropy.calls.length = 0;
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(i.posture).toBe('PQC+QRNG');
    // One draw of m ‖ r ‖ nonce (80 bytes), quantum only; the audit log's id draws are `any`.
    expect(a.entropy.calls.filter((c) => c.require === 'quantum')).toEqual([{ n: 80, require: 'quantum' }]);
    // QKD is compliant EU↔EU but not configured on this node: a fallback, not a degradation.
    expect(i.provenance).toMatchObject({ fallback: true, degraded: false });
    expect(i.provenance.qkd.reason).toMatch(/no QKD key source/);
  });

  it('QKD link down → falls back to PQC+QRNG with the reason', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    link.up = false;
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(i.posture).toBe('PQC+QRNG');
    expect(i.provenance.fallback).toBe(true);
    expect(i.provenance.degraded).toBe(true);
    expect(i.provenance.reason).toMatch(/QKD\+PQC\+QRNG not admissible: KME status failed \(unavailable\)/);
    expect(link.calls.getKeys).toBe(0);
  });

  it('getKeys failing after the PQ steps falls back too, and the responder agrees', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    const orig = a.qkd!.getKeys.bind(a.qkd);
    a.qkd!.getKeys = async () => {
      throw Object.assign(new Error('x'), { kind: 'gateway-timeout' });
    };
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    a.qkd!.getKeys = orig;
    expect(i.posture).toBe('PQC+QRNG');
    expect(i.provenance.reason).toMatch(/gateway-timeout/);
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    expect(Buffer.from(acc.key).equals(Buffer.from(i.key))).toBe(true);
  });

  it('enc_keys: no retry and the short deadline when a fallback is permitted; both in full when the minimum needs QKD', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(link.lastGetKeysOptions).toEqual({ retries: 0, timeoutMs: 1000 });
    await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
      minPosture: 'QKD+PQC+QRNG',
    });
    expect(link.lastGetKeysOptions).toEqual({ timeoutMs: 5000 });

    a.restart({ qkdTimeoutMs: 3000, qkdFallbackTimeoutMs: 250 });
    await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(link.lastGetKeysOptions).toEqual({ retries: 0, timeoutMs: 250 });
    await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
      minPosture: 'QKD+PQC+QRNG',
    });
    expect(link.lastGetKeysOptions).toEqual({ timeoutMs: 3000 });
    // The fallback deadline never exceeds the full one.
    a.restart({ qkdTimeoutMs: 400, qkdFallbackTimeoutMs: 2000 });
    await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(link.lastGetKeysOptions).toEqual({ retries: 0, timeoutMs: 400 });
  });

  it('counts what the sessions came to: postures, degraded fallbacks, refusals, rejections, abandons', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    const q = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    await b.sessions.accept({ agent: 'bob', handshake: q.handshake });
    link.up = false;
    const fallback = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
    });
    expect(fallback.provenance.degraded).toBe(true);
    await expectCode(
      a.sessions.initiate({
        agent: 'alice',
        responderAgent: 'bob',
        peer: b.identity.nodeId,
        minPosture: 'QKD+PQC+QRNG',
      }),
      'POSTURE_UNAVAILABLE',
    );
    await b.sessions.accept({ agent: 'bob', handshake: fallback.handshake });
    await expectCode(
      b.sessions.accept({ agent: 'bob', handshake: fallback.handshake }),
      'HANDSHAKE_REPLAYED',
    );
    link.up = true;
    const lost = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
      minPosture: 'QKD+PQC+QRNG',
    });
    link.up = false;
    await expectCode(b.sessions.accept({ agent: 'bob', handshake: lost.handshake }), 'QKD_UNAVAILABLE');
    expect(a.sessions.counters()).toMatchObject({
      initiated: { 'QKD+PQC+QRNG': 2, 'PQC+QRNG': 1, PQC: 0 },
      initiatedDegraded: { 'QKD+PQC+QRNG': 0, 'PQC+QRNG': 1, PQC: 0 },
      refused: 1,
    });
    expect(b.sessions.counters()).toMatchObject({
      accepted: { 'QKD+PQC+QRNG': 1, 'PQC+QRNG': 1, PQC: 0 },
      rejected: { HANDSHAKE_REPLAYED: 1 },
      abandoned: { QKD_UNAVAILABLE: 1 },
    });
  });

  it('dec_keys failing on the responder abandons the session, visibly, and the nonce stays spent', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(i.posture).toBe('QKD+PQC+QRNG');
    link.up = false;
    await expectCode(b.sessions.accept({ agent: 'bob', handshake: i.handshake }), 'QKD_UNAVAILABLE');
    // The records written while dec_keys ran are taken back: no session, and the audit trail
    // says the accepted session was abandoned and why (not a bounded `session.rejected`).
    expect(await b.sessions.get(i.session_id)).toEqual([]);
    const recs = (await b.audit.records()).filter(notPeer);
    expect(recs.slice(-2).map((r) => [r.type, r.details.session_id])).toEqual([
      ['session.accepted', i.session_id],
      ['session.abandoned', i.session_id],
    ]);
    expect(recs.at(-1)?.details).toMatchObject({ code: 'QKD_UNAVAILABLE' });
    expect(recs.some((r) => r.type === 'session.rejected')).toBe(false);
    // The KME has released the key id; the handshake cannot be retried.
    link.up = true;
    await expectCode(b.sessions.accept({ agent: 'bob', handshake: i.handshake }), 'HANDSHAKE_REPLAYED');
  });

  it('minimum above what is available → POSTURE_UNAVAILABLE', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    link.up = false;
    await expectCode(
      a.sessions.initiate({
        agent: 'alice',
        responderAgent: 'bob',
        peer: b.identity.nodeId,
        minPosture: 'QKD+PQC+QRNG',
      }),
      'POSTURE_UNAVAILABLE',
    );
    a.entropy.quantum = false;
    await expectCode(
      a.sessions.initiate({
        agent: 'alice',
        responderAgent: 'bob',
        peer: b.identity.nodeId,
        minPosture: 'PQC+QRNG',
      }),
      'POSTURE_UNAVAILABLE',
    );
    // A quantum draw failing mid-handshake with a QRNG minimum fails closed too.
    a.entropy.quantum = true;
    a.entropy.failQuantumDraws = true;
    await expectCode(
      a.sessions.initiate({
        agent: 'alice',
        responderAgent: 'bob',
        peer: b.identity.nodeId,
        minPosture: 'PQC+QRNG',
      }),
      'POSTURE_UNAVAILABLE',
    );
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(i.posture).toBe('PQC');
    expect(i.provenance.qrng.reason).toMatch(/during the handshake/);
  });

  it('unknown peer on initiate → PEER_NOT_FOUND; confirm mismatch and unknown session', async () => {
    const { a, b } = await makePair();
    await expectCode(
      a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: 'f'.repeat(32) }),
      'PEER_NOT_FOUND',
    );
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    await expectCode(
      a.sessions.confirm(i.session_id, toBase64url(new Uint8Array(32)), 'alice'),
      'CONFIRM_MISMATCH',
    );
    await expectCode(a.sessions.confirm('0'.repeat(32), 'AAAA', 'alice'), 'SESSION_NOT_FOUND');
  });

  it('writes the session events to a verifiable audit log, without key bytes', async () => {
    const { a, b } = await makePair();
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    await a.sessions.confirm(i.session_id, acc.confirm, 'alice');
    await a.audit.flush();
    const recs = (await a.audit.records()).filter(notPeer);
    expect(recs.map((r) => r.type)).toEqual(['session.initiated', 'session.confirmed', 'audit.seal']);
    expect(recs[0]!.details).toMatchObject({
      session_id: i.session_id,
      posture: 'PQC+QRNG',
      degraded: false,
    });
    const text = await a.audit.exportJsonLines();
    expect(text).not.toContain(toBase64url(i.key));
    expect(text).not.toContain(Buffer.from(i.key).toString('hex'));
    expect(verifyAuditLog(await a.audit.records(), a.identity.signing.publicKey)).toMatchObject({
      ok: true,
      unsealed: 0,
    });
    const brecs = (await b.audit.records()).filter(notPeer);
    expect(brecs.map((r) => r.type)).toEqual(['session.accepted']);
  });
});

describe('sessions are bound to agents (issue #11 item 4)', () => {
  it('only the responder agent named in the signed handshake may accept; a wrong one burns nothing', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    const i = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
      minPosture: 'QKD+PQC+QRNG',
    });
    await expectCode(b.sessions.accept({ agent: 'carol', handshake: i.handshake }), 'HANDSHAKE_WRONG_AGENT');
    expect(link.calls.getKeysById).toBe(0);
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    expect(Buffer.from(acc.key).equals(Buffer.from(i.key))).toBe(true);
    expect(acc.peer_agent).toBe('alice');
    expect(await b.sessions.get(i.session_id)).toMatchObject([{ agent: 'bob', peer_agent: 'alice' }]);
  });

  it('only the initiating agent may confirm; to any other the session does not exist', async () => {
    const { a, b } = await makePair();
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    await expectCode(a.sessions.confirm(i.session_id, acc.confirm, 'mallory'), 'SESSION_NOT_FOUND');
    expect((await a.sessions.get(i.session_id))[0]!.confirmed).toBe(false);
    await expect(a.sessions.confirm(i.session_id, acc.confirm, 'alice')).resolves.toMatchObject({
      confirmed: true,
    });
  });

  it('names the agents as the actors of the audit records', async () => {
    const { a, b } = await makePair();
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    await a.sessions.confirm(i.session_id, acc.confirm, 'alice');
    const recs = (await a.audit.records()).filter((r) => r.type.startsWith('session.'));
    expect(recs.map((r) => [r.type, r.actor])).toEqual([
      ['session.initiated', 'alice'],
      ['session.confirmed', 'alice'],
    ]);
    expect(recs[0]!.details).toMatchObject({ agent: 'alice', peer_agent: 'bob', node: a.identity.nodeId });
    const brecs = (await b.audit.records()).filter(notPeer);
    expect(brecs.map((r) => [r.type, r.actor])).toEqual([['session.accepted', 'bob']]);
    expect(brecs[0]!.details).toMatchObject({ agent: 'bob', peer_agent: 'alice', peer: a.identity.nodeId });
  });
});

describe('require_confirm keeps K unusable until the responder is confirmed (issue #11 item 7)', () => {
  it('initiate returns no key; a matching confirm returns it once; a wrong tag or agent gets none', async () => {
    const { a, b } = await makePair();
    const i = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
      requireConfirm: true,
    });
    expect(i.key_pending).toBe(true);
    expect(i.key).toHaveLength(0);
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    await expectCode(
      a.sessions.confirm(i.session_id, toBase64url(new Uint8Array(32)), 'alice'),
      'CONFIRM_MISMATCH',
    );
    await expectCode(a.sessions.confirm(i.session_id, acc.confirm, 'mallory'), 'SESSION_NOT_FOUND');
    const c = await a.sessions.confirm(i.session_id, acc.confirm, 'alice');
    expect(c.confirmed).toBe(true);
    expect(Buffer.from(c.key!).equals(Buffer.from(acc.key))).toBe(true);
    // Take-once: confirming again says confirmed, with no key.
    const again = await a.sessions.confirm(i.session_id, acc.confirm, 'alice');
    expect(again).toEqual({ session_id: i.session_id, confirmed: true });
    expect((await a.sessions.get(i.session_id))[0]).not.toHaveProperty('pending_key_id');
  });
});

describe("the initiator's degraded / fallback / randomness reach the responder signed (item 6)", () => {
  it('a fallback for a quantum-entropy outage is reported by the responder as degraded, os randomness', async () => {
    const { a, b } = await makePair();
    a.entropy.quantum = false;
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(i.posture).toBe('PQC');
    expect(i.provenance).toMatchObject({ degraded: true, fallback: true });
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    expect(acc.provenance).toMatchObject({
      degraded: true,
      fallback: true,
      pqc: { randomness: 'os', randomnessOrigin: 'initiator' },
    });
    const [rec] = (await b.audit.records()).filter(notPeer);
    expect(rec!.details).toMatchObject({ degraded: true, randomness: 'os' });
  });

  it('a healthy session is reported as such, quantum randomness by the initiator', async () => {
    const { a, b } = await makePair();
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    expect(acc.provenance).toMatchObject({
      degraded: false,
      fallback: i.provenance.fallback,
      pqc: { randomness: 'quantum', randomnessOrigin: 'initiator', backend: pqcBackend().name },
    });
    expect(i.provenance.pqc).toMatchObject({ backend: pqcBackend().name, kemEncaps: pqcInfo().kemEncaps });
  });
});

describe.each([['liboqs-wasm' as const], ['noble' as const]])(
  'responder rejections, PQC backend %s (no QKD key is consumed)',
  (backend) => {
    let previous: PqcBackendName;
    beforeAll(async () => {
      previous = pqcBackend().name;
      await usePqcBackend(backend);
    });
    afterAll(() => usePqcBackend(previous));

    async function qkdPair() {
      const link = new FakeQkdLink();
      const pair = await makePair({ link });
      const i = await pair.a.sessions.initiate({
        agent: 'alice',
        responderAgent: 'bob',
        peer: pair.b.identity.nodeId,
        context: 'ctx',
      });
      expect(i.posture).toBe('QKD+PQC+QRNG');
      return { ...pair, link, i };
    }

    const fieldEdits: Array<[string, string, (b: HandshakeBody) => void]> = [
      [
        'version',
        'HANDSHAKE_VERSION',
        (b) => {
          b.version = 2; // a pre-v3 (FIPS 204 context-string) handshake is refused by its version
        },
      ],
      [
        'posture',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.posture = 'PQC+QRNG';
          b.qkdKeyIds = [];
          b.initiatorKmeId = b.responderKmeId = b.initiatorSaeId = b.responderSaeId = '';
        },
      ],
      [
        'initiator node id',
        'HANDSHAKE_UNKNOWN_PEER',
        (b) => {
          b.initiatorNodeId = 'a'.repeat(32);
        },
      ],
      [
        'responder node id',
        'HANDSHAKE_WRONG_RECIPIENT',
        (b) => {
          b.responderNodeId = 'b'.repeat(32);
        },
      ],
      [
        'KEM ciphertext',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.kemCiphertext[100]! ^= 1;
        },
      ],
      [
        'QKD key ids',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.qkdKeyIds = ['00000000-0000-4000-8000-000000000000'];
        },
      ],
      [
        'initiator KME id',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.initiatorKmeId = 'kme-x';
        },
      ],
      [
        'responder KME id',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.responderKmeId = 'kme-x';
        },
      ],
      [
        'initiator SAE id',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.initiatorSaeId = 'sae-x';
        },
      ],
      [
        'responder SAE id',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.responderSaeId = 'sae-x';
        },
      ],
      [
        'r',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.r[0]! ^= 0x80;
        },
      ],
      [
        'timestamp',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.timestamp += 1;
        },
      ],
      [
        'nonce',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.nonce[15]! ^= 1;
        },
      ],
      [
        'context',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.context = new TextEncoder().encode('ctY');
        },
      ],
      [
        'initiator agent',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.initiatorAgent = 'mallory';
        },
      ],
      [
        'responder agent (re-addressed to another agent)',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.responderAgent = 'mallory';
        },
      ],
      [
        'degraded flag (cleared by a downgrader)',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.degraded = !b.degraded;
        },
      ],
      [
        'fallback flag',
        'HANDSHAKE_BAD_SIGNATURE',
        (b) => {
          b.fallback = !b.fallback;
        },
      ],
    ];

    it.each(fieldEdits)('tampered %s → %s', async (_name, code, edit) => {
      const { b, link, i } = await qkdPair();
      await expectCode(b.sessions.accept({ agent: 'bob', handshake: withBody(i.handshake, edit) }), code);
      expect(link.calls.getKeysById).toBe(0);
      // The untouched handshake still works afterwards (the rejection did not burn its nonce or key).
      await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
      expect(link.calls.getKeysById).toBe(1);
    });

    it('tampered magic, signature and framing bytes are rejected', async () => {
      const { b, link, i } = await qkdPair();
      const raw = fromBase64url(i.handshake);
      const [body, sig] = decodeFields(raw, 2) as [Uint8Array, Uint8Array];
      const magic = body.slice();
      magic[4]! ^= 1; // first byte of "QKMH" (after its 4-byte length)
      await expectCode(
        b.sessions.accept({ agent: 'bob', handshake: encodeMessage(magic, sig) }),
        'HANDSHAKE_MALFORMED',
      );
      const badSig = sig.slice();
      badSig[1234]! ^= 4;
      await expectCode(
        b.sessions.accept({ agent: 'bob', handshake: encodeMessage(body, badSig) }),
        'HANDSHAKE_BAD_SIGNATURE',
      );
      await expectCode(
        b.sessions.accept({ agent: 'bob', handshake: toBase64url(encodeFields([body])) }),
        'HANDSHAKE_MALFORMED',
      );
      await expectCode(
        b.sessions.accept({ agent: 'bob', handshake: `${i.handshake}A` }),
        'HANDSHAKE_MALFORMED',
      );
      await expectCode(
        b.sessions.accept({ agent: 'bob', handshake: i.handshake.replace(/.$/, '=') }),
        'HANDSHAKE_MALFORMED',
      );
      await expectCode(
        b.sessions.accept({ agent: 'bob', handshake: 42 as unknown as string }),
        'HANDSHAKE_MALFORMED',
      );
      expect(link.calls.getKeysById).toBe(0);
    });

    it('random single-byte flips anywhere never reach dec_keys unless harmless', async () => {
      const { b, link, i } = await qkdPair();
      const raw = fromBase64url(i.handshake);
      for (let k = 0; k < 40; k++) {
        const m = raw.slice();
        const pos = (k * 2654435761) % m.length;
        m[pos]! ^= 1 << (k % 8);
        const err = await b.sessions.accept({ agent: 'bob', handshake: toBase64url(m) }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isQkmError(err) && err.status >= 400 && err.status < 500).toBe(true);
      }
      expect(link.calls.getKeysById).toBe(0);
    });

    it('wrong signer → HANDSHAKE_BAD_SIGNATURE', async () => {
      const { a, b, link, i } = await qkdPair();
      const mallory = await makeNode('m', { region: 'EU' });
      await b.peers.add(mallory.identity.bundle); // even a pinned node cannot sign as another
      const { body } = decodeMessage(i.handshake);
      const forged = encodeMessage(body, signBody(body, mallory.identity.signing.secretKey));
      await expectCode(b.sessions.accept({ agent: 'bob', handshake: forged }), 'HANDSHAKE_BAD_SIGNATURE');
      expect(ml_dsa65.verify(decodeMessage(forged).signature, body, a.identity.signing.publicKey)).toBe(
        false,
      );
      expect(link.calls.getKeysById).toBe(0);
    });

    it('stale or future timestamps → HANDSHAKE_STALE', async () => {
      const { b, link, i, clock } = await qkdPair();
      clock.now += 120_001;
      await expectCode(b.sessions.accept({ agent: 'bob', handshake: i.handshake }), 'HANDSHAKE_STALE');
      clock.now -= 2 * 120_001;
      await expectCode(b.sessions.accept({ agent: 'bob', handshake: i.handshake }), 'HANDSHAKE_STALE');
      clock.now += 120_001 + 120_000; // exactly at the window edge: accepted
      await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
      expect(link.calls.getKeysById).toBe(1);
    });

    it('replayed nonce → HANDSHAKE_REPLAYED, also after a restart over the same store', async () => {
      const { b, link, i } = await qkdPair();
      await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
      expect(link.calls.getKeysById).toBe(1);
      await expectCode(b.sessions.accept({ agent: 'bob', handshake: i.handshake }), 'HANDSHAKE_REPLAYED');
      b.restart();
      await expectCode(b.sessions.accept({ agent: 'bob', handshake: i.handshake }), 'HANDSHAKE_REPLAYED');
      // Concurrent duplicates: exactly one wins.
      const { a: a2, b: b2, link: l2, i: i2 } = await qkdPair();
      void a2;
      const results = await Promise.allSettled(
        [1, 2, 3].map(() => b2.sessions.accept({ agent: 'bob', handshake: i2.handshake })),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(l2.calls.getKeysById).toBe(1);
      expect(link.calls.getKeysById).toBe(1);
    });

    it('unknown initiator → HANDSHAKE_UNKNOWN_PEER', async () => {
      const { a, b, link, i } = await qkdPair();
      await b.peers.remove(a.identity.nodeId);
      await expectCode(b.sessions.accept({ agent: 'bob', handshake: i.handshake }), 'HANDSHAKE_UNKNOWN_PEER');
      expect(link.calls.getKeysById).toBe(0);
    });

    it('posture below the responder minimum → POSTURE_BELOW_MINIMUM', async () => {
      const link = new FakeQkdLink();
      const { a, b } = await makePair({ link });
      b.rebuildPolicy({ peers: { [a.identity.nodeId]: { minPosture: 'QKD+PQC+QRNG' } } });
      link.up = false;
      const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
      expect(i.posture).toBe('PQC+QRNG');
      link.up = true;
      await expectCode(b.sessions.accept({ agent: 'bob', handshake: i.handshake }), 'POSTURE_BELOW_MINIMUM');
      expect(link.calls.getKeysById).toBe(0);
      const recs = (await b.audit.records()).filter(notPeer);
      expect(recs.at(-1)).toMatchObject({
        type: 'session.rejected',
        details: { code: 'POSTURE_BELOW_MINIMUM' },
      });
    });

    it("QKD the responder's own jurisdiction rules forbid → POSTURE_NOT_PERMITTED, no KME call", async () => {
      const link = new FakeQkdLink();
      const { a, b } = await makePair({ link });
      // The initiator's rules allow QKD within the EU; the responder has an agreement forbidding it.
      b.rebuildPolicy({ pairs: [{ a: 'EU', b: 'EU', qkd: false, note: 'national rule' }] });
      const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
      expect(i.posture).toBe('QKD+PQC+QRNG');
      await expectCode(b.sessions.accept({ agent: 'bob', handshake: i.handshake }), 'POSTURE_NOT_PERMITTED');
      expect(link.calls.getKeysById).toBe(0);
      const recs = (await b.audit.records()).filter(notPeer);
      expect(recs.at(-1)).toMatchObject({
        type: 'session.rejected',
        details: { code: 'POSTURE_NOT_PERMITTED' },
      });
      // Not a replay afterwards: once the rule allows it, the same handshake is accepted.
      b.rebuildPolicy({});
      await expect(b.sessions.accept({ agent: 'bob', handshake: i.handshake })).resolves.toMatchObject({
        posture: 'QKD+PQC+QRNG',
      });
    });

    it('handshake for another node → HANDSHAKE_WRONG_RECIPIENT', async () => {
      const { a, link, i } = await qkdPair();
      const c = await makeNode('c', { region: 'EU', link, sae: 'sae-c', kme: 'kme-c' });
      await c.peers.add(a.identity.bundle);
      await expectCode(
        c.sessions.accept({ agent: 'bob', handshake: i.handshake }),
        'HANDSHAKE_WRONG_RECIPIENT',
      );
      expect(link.calls.getKeysById).toBe(0);
    });
  },
);

describe('kept session keys', () => {
  it('keepKeys stores K take-once in the KeyStore with a TTL; records never hold K', async () => {
    const { a, b } = await makePair();
    a.restart({ keepKeys: { ttlSeconds: 60 } });
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    expect(i.key_id).toBeDefined();
    const meta = await a.store.keys.meta(i.key_id!);
    expect(meta).toMatchObject({ purpose: 'session', size: 32, state: 'active' });
    expect(Date.parse(meta.expires!) - Date.parse(meta.created)).toBe(60_000);
    const { material } = await a.store.keys.take(i.key_id!, new Date(a.clock.now));
    expect(Buffer.from(material).equals(Buffer.from(i.key))).toBe(true);
    const [rec] = await a.sessions.get(i.session_id);
    expect(rec).toMatchObject({
      role: 'initiator',
      peer: b.identity.nodeId,
      key_id: i.key_id,
      confirmed: false,
    });
    expect(JSON.stringify(rec)).not.toContain(Buffer.from(i.key).toString('hex'));
    expect(JSON.stringify(rec)).not.toContain(Buffer.from(i.key).toString('base64url'));
  });
});
