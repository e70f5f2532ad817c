import { describe, expect, it, vi } from 'vitest';
import type { RecordStore, StorageBackend } from '../../src/store/interface.js';
import { FakeQkdLink } from './fakes.js';
import { makePair } from './harness.js';

/**
 * Issue #11 item 8: K is wiped when the session records cannot be persisted, and QKD keys a KME
 * released for a session that never completed are counted. The KDF is wrapped (same bytes) so
 * the test can see the K the service derived.
 */
const derived: Uint8Array[] = [];
vi.mock('../../src/session/transcript.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../../src/session/transcript.js')>();
  return {
    ...orig,
    deriveKeys: (...args: Parameters<typeof orig.deriveKeys>) => {
      const keys = orig.deriveKeys(...args);
      derived.push(keys.key);
      return keys;
    },
  };
});

/** The same store, except that writes to the `sessions` namespace fail. */
function failingSessions(store: StorageBackend): StorageBackend {
  return {
    keys: store.keys,
    close: () => store.close(),
    records<T>(ns: string): RecordStore<T> {
      const rs = store.records<T>(ns);
      if (ns !== 'sessions') return rs;
      return new Proxy(rs, {
        get(target, prop, receiver) {
          if (prop === 'put') return () => Promise.reject(new Error('disk full'));
          const v = Reflect.get(target, prop, receiver);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
    },
  };
}

const zero = (k: Uint8Array) => k.every((b) => b === 0);

describe('key handling gaps (issue #11 item 8)', () => {
  it('initiator: K is wiped when its session record cannot be written, and the QKD key is counted as wasted', async () => {
    const link = new FakeQkdLink();
    const { a, b } = await makePair({ link });
    a.restart({ store: failingSessions(a.store) });
    derived.length = 0;
    await expect(
      a.sessions.initiate({
        agent: 'alice',
        responderAgent: 'bob',
        peer: b.identity.nodeId,
        minPosture: 'QKD+PQC+QRNG',
      }),
    ).rejects.toThrow(/disk full/);
    expect(derived).toHaveLength(1);
    expect(zero(derived[0]!)).toBe(true);
    expect(a.sessions.counters().qkdKeysWasted).toBe(1);
  });

  it('responder: K is wiped when its session record cannot be written (keepKeys path too)', async () => {
    for (const keepKeys of [undefined, { ttlSeconds: 60 }]) {
      const { a, b } = await makePair();
      b.restart({ store: failingSessions(b.store), ...(keepKeys ? { keepKeys } : {}) });
      const i = await a.sessions.initiate({ agent: 'alice', responderAgent: 'bob', peer: b.identity.nodeId });
      derived.length = 0;
      await expect(b.sessions.accept({ agent: 'bob', handshake: i.handshake })).rejects.toThrow(/disk full/);
      expect(derived).toHaveLength(1);
      expect(zero(derived[0]!)).toBe(true);
    }
  });

  it('responder: a QKD handshake it can never accept counts its key as wasted; a wrong agent or a replay does not', async () => {
    const link = new FakeQkdLink();
    const { a, b, clock } = await makePair({ link });
    const initiate = () =>
      a.sessions.initiate({
        agent: 'alice',
        responderAgent: 'bob',
        peer: b.identity.nodeId,
        minPosture: 'QKD+PQC+QRNG',
      });
    const i = await initiate();
    await expect(b.sessions.accept({ agent: 'carol', handshake: i.handshake })).rejects.toMatchObject({
      code: 'HANDSHAKE_WRONG_AGENT',
    });
    await b.sessions.accept({ agent: 'bob', handshake: i.handshake });
    await expect(b.sessions.accept({ agent: 'bob', handshake: i.handshake })).rejects.toMatchObject({
      code: 'HANDSHAKE_REPLAYED',
    });
    expect(b.sessions.counters().qkdKeysWasted).toBe(0);
    const late = await initiate();
    clock.now += 10 * 60_000;
    await expect(b.sessions.accept({ agent: 'bob', handshake: late.handshake })).rejects.toMatchObject({
      code: 'HANDSHAKE_STALE',
    });
    expect(b.sessions.counters().qkdKeysWasted).toBe(1);
  });
});
