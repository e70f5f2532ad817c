import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { afterAll, describe, expect, it } from 'vitest';
import { PqcWorker, PqcWorkerUnavailable } from '../../src/core/pqc-worker.js';
import { isQkmError } from '../../src/core/errors.js';
import { DSA_CONTEXT } from '../../src/session/identity.js';
import { FakeQkdLink } from '../session/fakes.js';
import { closeWorkers, makePair } from '../session/harness.js';

const keys = ml_dsa65.keygen(new Uint8Array(32).fill(3));
const message = new TextEncoder().encode('a message the size of nothing in particular');
const context = DSA_CONTEXT.handshake;

describe('PqcWorker', () => {
  const worker = new PqcWorker({ signingKey: keys.secretKey });
  afterAll(() => worker.close());

  it('signs with its key under the given context; the signature verifies here and there', async () => {
    expect(worker.queued).toBe(0);
    const pending = worker.sign(message, context);
    expect(worker.queued).toBe(1);
    const signature = await pending;
    expect(worker.queued).toBe(0);
    expect(ml_dsa65.verify(signature, message, keys.publicKey, { context })).toBe(true);
    expect(ml_dsa65.verify(signature, message, keys.publicKey, { context: DSA_CONTEXT.audit })).toBe(false);
    await expect(worker.verify(signature, message, keys.publicKey, context)).resolves.toBe(true);
  });

  it('verify: false for a wrong message, context, key or malformed input, as inline', async () => {
    const signature = ml_dsa65.sign(message, keys.secretKey, { context });
    const other = ml_dsa65.keygen(new Uint8Array(32).fill(4));
    const flipped = signature.slice();
    flipped[17]! ^= 1;
    const cases: Array<[Uint8Array, Uint8Array, Uint8Array, Uint8Array]> = [
      [flipped, message, keys.publicKey, context],
      [signature, message.subarray(1), keys.publicKey, context],
      [signature, message, keys.publicKey, DSA_CONTEXT.bundle],
      [signature, message, other.publicKey, context],
      [signature.subarray(0, 100), message, keys.publicKey, context],
      [signature, message, keys.publicKey.subarray(0, 31), context],
    ];
    for (const [sig, msg, pk, ctx] of cases) {
      await expect(worker.verify(sig, msg, pk, ctx)).resolves.toBe(false);
    }
  });

  it('a view into a larger buffer is sent as exactly its bytes', async () => {
    const big = new Uint8Array(100_000);
    big.set(message, 5000);
    const view = big.subarray(5000, 5000 + message.length);
    const signature = await worker.sign(view, context);
    expect(ml_dsa65.verify(signature, message, keys.publicKey, { context })).toBe(true);
  });

  it('without a signing key, sign fails with PqcWorkerUnavailable and verify still works', async () => {
    const verifier = new PqcWorker();
    try {
      await expect(verifier.sign(message, context)).rejects.toBeInstanceOf(PqcWorkerUnavailable);
      const signature = ml_dsa65.sign(message, keys.secretKey, { context });
      await expect(verifier.verify(signature, message, keys.publicKey, context)).resolves.toBe(true);
    } finally {
      await verifier.close();
    }
  });

  it('a worker that cannot load ML-DSA, or is closed, fails every call with PqcWorkerUnavailable', async () => {
    const broken = new PqcWorker({ signingKey: keys.secretKey, moduleUrl: 'file:///nonexistent/ml-dsa.js' });
    await expect(broken.sign(message, context)).rejects.toBeInstanceOf(PqcWorkerUnavailable);
    await broken.close();
    const closed = new PqcWorker({ signingKey: keys.secretKey });
    await closed.close();
    expect(closed.running).toBe(false);
    await expect(closed.sign(message, context)).rejects.toBeInstanceOf(PqcWorkerUnavailable);
    await expect(closed.verify(message, message, keys.publicKey, context)).rejects.toBeInstanceOf(
      PqcWorkerUnavailable,
    );
  });
});

describe('a PQC worker that dies', () => {
  it('with work pending: the pending call and later ones fail with PqcWorkerUnavailable', async () => {
    const doomed = new PqcWorker({ signingKey: keys.secretKey });
    const pending = doomed.sign(message, context);
    // What a crash of the thread looks like from here (white-box: the thread handle).
    await (doomed as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    await expect(pending).rejects.toBeInstanceOf(PqcWorkerUnavailable);
    expect(doomed.running).toBe(false);
    await expect(doomed.verify(message, message, keys.publicKey, context)).rejects.toBeInstanceOf(
      PqcWorkerUnavailable,
    );
  });

  it('mid-handshake: the initiator signs inline and the session completes', async () => {
    const { a, b } = await makePair();
    const w = new PqcWorker({ signingKey: a.identity.signing.secretKey });
    a.restart({ pqcWorker: w });
    const started = a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    // Kill it while the signature is (or is about to be) on it.
    setImmediate(
      () => void (w as unknown as { worker?: { terminate(): Promise<number> } }).worker?.terminate(),
    );
    const i = await started;
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    expect(Buffer.from(acc.key).equals(Buffer.from(i.key))).toBe(true);
    const next = await a.sessions.initiate({
      agent: 'alice',
      responderAgent: 'bob',
      peer: b.identity.nodeId,
    });
    await expect(b.sessions.accept({ agent: 'bob', handshake: next.handshake })).resolves.toMatchObject({
      session_id: next.session_id,
    });
    expect(a.sessions.counters().mldsa.inline).toBeGreaterThanOrEqual(1);
  });
});

describe('sessions with a PQC worker', () => {
  afterAll(closeWorkers);

  it('sign on the initiator and verify on the responder run on the worker; keys agree', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link, worker: true });
    for (let n = 0; n < 3; n++) {
      const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
      const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
      expect(Buffer.from(acc.key).equals(Buffer.from(i.key))).toBe(true);
      await expect(a.sessions.confirm(i.session_id, acc.confirm, 'alice')).resolves.toMatchObject({
        confirmed: true,
      });
    }
    expect(a.sessions.counters().mldsa).toEqual({ worker: 3, inline: 0 });
    expect(b.sessions.counters().mldsa).toEqual({ worker: 3, inline: 0 });
  });

  it('a long queue on the worker is not waited behind: the overflow verifies inline, every handshake is accepted once', async () => {
    const { a, b } = await makePair({ worker: true });
    const handshakes = [];
    for (let n = 0; n < 6; n++)
      handshakes.push(
        (await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId }))
          .handshake,
      );
    const results = await Promise.all(
      handshakes.map((handshake) => b.sessions.accept({ agent: 'bob', handshake })),
    );
    expect(new Set(results.map((r) => r.session_id)).size).toBe(6);
    const { worker, inline } = b.sessions.counters().mldsa;
    expect(worker + inline).toBe(6);
    expect(worker).toBeGreaterThanOrEqual(1);
    expect(worker).toBeLessThanOrEqual(4);
    expect(inline).toBeGreaterThanOrEqual(2);
  });

  it('a worker that fails mid-way: the work is done inline, sessions and rejections unchanged', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    const broken = () => new PqcWorker({ moduleUrl: 'file:///nonexistent/ml-dsa.js' });
    a.restart({ pqcWorker: broken() });
    b.restart({ pqcWorker: broken() });
    const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
    const forged = i.handshake.slice(0, -8) + (i.handshake.endsWith('AAAAAAAA') ? 'BBBBBBBB' : 'AAAAAAAA');
    const err = await b.sessions.accept({ agent: 'bob', handshake: forged }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isQkmError(err) ? err.code : err).toBe('HANDSHAKE_BAD_SIGNATURE');
    expect(link.calls.getKeysById).toBe(0);
    const acc = await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    expect(Buffer.from(acc.key).equals(Buffer.from(i.key))).toBe(true);
    expect(a.sessions.counters().mldsa.worker).toBe(0);
    expect(b.sessions.counters().mldsa.worker).toBe(0);
    expect(a.sessions.counters().mldsa.inline + b.sessions.counters().mldsa.inline).toBeGreaterThanOrEqual(3);
  });
});
