/**
 * The KME pair's logic without HTTP: pool invariants and the primary/secondary allocation under
 * random interleavings (fast-check), and what happens when the peer KME is unreachable.
 */
import { randomUUID } from 'node:crypto';
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EtsiHttpError } from '../../simulators/kme/errors.js';
import { KmeCore, type PeerChannel } from '../../simulators/kme/kme-core.js';
import { composeKey, KeyPool } from '../../simulators/kme/pool.js';
import { ManualKeySupply, PairFeeder } from '../../simulators/kme/supply.js';
import type { EtsiKeyContainer, KmeLimits } from '../../simulators/kme/types.js';

const LIMITS: KmeLimits = {
  maxKeyCount: 40,
  maxKeyPerRequest: 8,
  minKeySize: 64,
  maxKeySize: 1024,
  maxSaeIdCount: 0,
};

/** Two cores wired directly (a JSON round trip stands in for the wire). */
function corePair(limits = LIMITS) {
  const a = new KmeCore({
    id: 'kme-a',
    saes: ['sae-a'],
    peerId: 'kme-b',
    peerSaes: ['sae-b'],
    role: 'primary',
    unitBits: 256,
    limits,
  });
  const b = new KmeCore({
    id: 'kme-b',
    saes: ['sae-b'],
    peerId: 'kme-a',
    peerSaes: ['sae-a'],
    role: 'secondary',
    unitBits: 256,
    limits,
  });
  const wire = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
  // Resolve on a later turn, like a network hop, so requests from both sides interleave.
  const hop = () => new Promise<void>((r) => setImmediate(r));
  a.connectPeer({
    assign: async (m) => {
      await hop();
      b.handleAssign(wire(m));
    },
    allocate: async () => {
      throw new Error('the primary never allocates through the secondary');
    },
  });
  b.connectPeer({
    assign: async () => {
      throw new Error('the secondary never assigns');
    },
    allocate: async (m) => {
      await hop();
      return wire(a.handleAllocate(wire(m)));
    },
  });
  const supply = new ManualKeySupply();
  const feeder = new PairFeeder(supply, [a.pool, b.pool]);
  return { a, b, supply, feeder };
}

const poolIdsOf = (pool: KeyPool) => {
  const units = pool.takeOldest(pool.storedCount)!;
  pool.putBack(units);
  return units.map((u) => u.id);
};

const poolIds = (core: KmeCore) => {
  const units = core.pool.takeOldest(core.pool.storedCount)!;
  core.pool.putBack(units);
  return units.map((u) => u.id);
};

describe('KeyPool', () => {
  it('takes all or nothing, oldest first', () => {
    const pool = new KeyPool(256, 10);
    const supply = new ManualKeySupply();
    const keys = supply.push(3);
    pool.accept(keys);
    expect(pool.takeOldest(4)).toBeUndefined();
    expect(pool.storedCount).toBe(3);
    expect(pool.takeOldest(2)!.map((u) => u.id)).toEqual([keys[0]!.keyId, keys[1]!.keyId]);
    expect(pool.takeByIds([keys[2]!.keyId, 'missing'])).toBeUndefined();
    expect(pool.storedCount).toBe(1);
  });

  it('refuses a block over capacity or a wrong key length, and skips IDs it already knows', () => {
    const pool = new KeyPool(256, 4);
    const supply = new ManualKeySupply();
    expect(() => pool.accept(supply.push(5))).toThrow(RangeError);
    expect(() => pool.accept([{ keyId: 'x', key: new Uint8Array(31) }])).toThrow(RangeError);
    const [k] = supply.push(1);
    expect(pool.accept([k!])).toEqual([]);
    expect(pool.accept([k!])).toEqual([k!.keyId]);
    const [j] = supply.push(1);
    expect(pool.accept([j!, j!])).toEqual([j!.keyId]);
    expect(pool.storedCount).toBe(2);
  });

  it('the feeder keeps both pools alike when one already knows an ID', () => {
    const a = new KeyPool(256, 10);
    const b = new KeyPool(256, 10);
    const supply = new ManualKeySupply();
    const feeder = new PairFeeder(supply, [a, b]);
    const [old] = supply.push(1);
    b.drop([old!.keyId]); // b lost it; a still has it
    const fresh = Array.from({ length: 2 }, () => ({ keyId: randomUUID(), key: new Uint8Array(32) }));
    supply.pushBlock([...fresh, old!]);
    expect(a.has(old!.keyId)).toBe(true);
    expect(b.has(old!.keyId)).toBe(false);
    // The repeated ID: a skipped it (it had it), b would have taken it anew and must drop it.
    expect(poolIdsOf(a).sort()).toEqual(poolIdsOf(b).concat(old!.keyId).sort());
    expect(feeder.stats.keysDroppedInvalid).toBe(1);
    feeder.detach();
  });

  it('composes keys: a whole unit keeps its ID, anything else gets a fresh UUID', () => {
    const units = [
      { id: 'u1', bytes: Buffer.alloc(32, 1) },
      { id: 'u2', bytes: Buffer.alloc(32, 2) },
    ];
    const whole = composeKey([{ id: 'u0', bytes: Buffer.alloc(32, 7) }], 256, 256);
    expect(whole.keyId).toBe('u0');
    const big = composeKey(units, 392, 256);
    expect(big.key).toEqual(Buffer.concat([Buffer.alloc(32, 1), Buffer.alloc(17, 2)]));
    expect(big.keyId).not.toMatch(/^u/);
    // The source units are wiped once used.
    expect(units.every((u) => u.bytes.every((b) => b === 0))).toBe(true);
  });

  it('keeps stored + reserved units + free room = capacity through any sequence of operations', () => {
    type Op =
      | { kind: 'push'; n: number }
      | { kind: 'take'; n: number; per: number }
      | { kind: 'claim'; i: number };
    const op = fc.oneof(
      fc.record({ kind: fc.constant('push' as const), n: fc.integer({ min: 0, max: 15 }) }),
      fc.record({
        kind: fc.constant('take' as const),
        n: fc.integer({ min: 1, max: 4 }),
        per: fc.integer({ min: 1, max: 3 }),
      }),
      fc.record({ kind: fc.constant('claim' as const), i: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op as fc.Arbitrary<Op>, { maxLength: 60 }), (ops) => {
        const pool = new KeyPool(256, 30);
        const supply = new ManualKeySupply();
        const pending: string[] = [];
        let reservedUnits = 0;
        const perKey = new Map<string, number>();
        for (const o of ops) {
          if (o.kind === 'push') {
            pool.accept(supply.push(Math.min(o.n, pool.freeCapacity)));
          } else if (o.kind === 'take') {
            const units = pool.takeOldest(o.n * o.per);
            if (units === undefined) continue;
            const keys = Array.from({ length: o.n }, (_, i) =>
              composeKey(units.slice(i * o.per, (i + 1) * o.per), o.per * 256, 256),
            );
            pool.reserve('m', ['s'], keys, o.per);
            for (const k of keys) {
              pending.push(k.keyId);
              perKey.set(k.keyId, o.per);
            }
            reservedUnits += o.n * o.per;
          } else if (pending.length > 0) {
            const id = pending.splice(o.i % pending.length, 1)[0]!;
            expect(pool.claim('x', 'm', [id])).toEqual({ ok: false, reason: 'unauthorized' });
            expect(pool.claim('s', 'm', [id]).ok).toBe(true);
            expect(pool.claim('s', 'm', [id])).toEqual({ ok: false, reason: 'not-found' });
            reservedUnits -= perKey.get(id)!;
          }
          expect(pool.storedCount + reservedUnits + pool.freeCapacity).toBe(30);
          expect(pool.reservedKeyCount).toBe(pending.length);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('KmeCore pair (primary allocates)', () => {
  it('under any interleaving of requests from both sides, pools stay equal and every key reaches its slave once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            side: fc.constantFrom('a' as const, 'b' as const),
            number: fc.integer({ min: 1, max: 4 }),
            size: fc.constantFrom(64, 256, 512, 1024),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        fc.integer({ min: 0, max: 40 }),
        async (requests, initial) => {
          const { a, b, supply } = corePair();
          supply.push(initial);
          const results = await Promise.allSettled(
            requests.map((r) =>
              r.side === 'a'
                ? a.encKeys('sae-a', 'sae-b', { number: r.number, size: r.size, additionalSlaves: [] })
                : b.encKeys('sae-b', 'sae-a', { number: r.number, size: r.size, additionalSlaves: [] }),
            ),
          );
          expect(poolIds(a)).toEqual(poolIds(b));
          const seen = new Set<string>();
          for (const [i, res] of results.entries()) {
            if (res.status === 'rejected') {
              expect(res.reason).toBeInstanceOf(EtsiHttpError);
              expect((res.reason as EtsiHttpError).status).toBe(503);
              continue;
            }
            const r = requests[i]!;
            const got: EtsiKeyContainer = res.value;
            expect(got.keys).toHaveLength(r.number);
            for (const k of got.keys) {
              expect(seen.has(k.key_ID)).toBe(false);
              seen.add(k.key_ID);
              expect(Buffer.from(k.key, 'base64').length).toBe(r.size / 8);
            }
            const ids = got.keys.map((k) => k.key_ID);
            const fetched =
              r.side === 'a' ? b.decKeys('sae-b', 'sae-a', ids) : a.decKeys('sae-a', 'sae-b', ids);
            expect(fetched).toEqual(got);
            expect(() =>
              r.side === 'a' ? b.decKeys('sae-b', 'sae-a', ids) : a.decKeys('sae-a', 'sae-b', ids),
            ).toThrow('one or more keys specified are not found on KME');
          }
          expect(a.pool.reservedKeyCount + b.pool.reservedKeyCount).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('an unreachable peer → 503, and the keys go back to the pool untouched', async () => {
    const { a, b, supply } = corePair();
    supply.push(4);
    const down: PeerChannel = {
      assign: async () => {
        throw new Error('ECONNREFUSED');
      },
      allocate: async () => {
        throw new Error('ECONNREFUSED');
      },
    };
    a.connectPeer(down);
    b.connectPeer(down);
    const before = poolIds(a);
    const request = { number: 2, size: 512, additionalSlaves: [] };
    await expect(a.encKeys('sae-a', 'sae-b', request)).rejects.toMatchObject({
      status: 503,
      message: 'peer KME unavailable',
    });
    await expect(b.encKeys('sae-b', 'sae-a', request)).rejects.toMatchObject({
      status: 503,
      message: 'peer KME unavailable',
    });
    expect(new Set(poolIds(a))).toEqual(new Set(before));
    expect(poolIds(b)).toEqual(before);
  });

  it('drops units the secondary reports missing (pools out of step) instead of offering them again', async () => {
    const { a, b, supply } = corePair();
    const link = supply.push(3);
    b.pool.takeByIds([link[0]!.keyId]); // as if an earlier assign had reached kme-b but its answer was lost
    const request = { number: 1, size: 256, additionalSlaves: [] };
    await expect(a.encKeys('sae-a', 'sae-b', request)).rejects.toMatchObject({ status: 503 });
    expect(poolIds(a)).toEqual(poolIds(b));
    const got = await a.encKeys('sae-a', 'sae-b', request);
    expect(got.keys[0]!.key_ID).toBe(link[1]!.keyId);
    expect(b.decKeys('sae-b', 'sae-a', [link[1]!.keyId])).toEqual(got);
  });

  it('the feeder pauses a pausable supply when either pool is full and resumes it when both have room', async () => {
    const a = new KeyPool(256, 4);
    const b = new KeyPool(256, 4);
    const supply = Object.assign(new ManualKeySupply(), {
      pause: () => calls.push('pause'),
      resume: () => calls.push('resume'),
    });
    const calls: string[] = [];
    const feeder = new PairFeeder(supply, [a, b]);
    supply.push(3);
    expect(calls).toEqual([]);
    supply.push(3);
    expect(calls).toEqual(['pause']);
    expect(feeder.stats).toMatchObject({ keysAccepted: 4, keysDroppedFull: 2 });
    const units = b.takeOldest(1)!;
    b.reserve('m', ['s'], [composeKey(units, 256, 256)], 1); // took and reserved: no room freed
    await Promise.resolve();
    expect(calls).toEqual(['pause']);
    a.takeOldest(1);
    expect(b.claim('s', 'm', [units[0]!.id]).ok).toBe(true);
    await Promise.resolve();
    expect(calls).toEqual(['pause', 'resume']);
    feeder.detach();
  });
});
