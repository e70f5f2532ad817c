import { describe, expect, it } from 'vitest';
import { QkmError, isQkmError } from '../../src/core/errors.js';
import type { VerifiedBundle } from '../../src/session/identity.js';
import type { Peer, PeerRegistry } from '../../src/session/peers.js';
import { type NodeVoucher, VouchedPeers, initiatorPeer } from '../../src/session/vouched.js';

/**
 * The responder's cache of Provider-vouched initiator nodes (src/session/vouched.ts): TTL (the
 * bound on how long a node removed at the Provider is still accepted), no caching of refusals or
 * outages, one Provider request for concurrent asks, bounded size, pinned peers first.
 */

const id = (n: number) => n.toString(16).padStart(32, '0');
const bundleOf = (nodeId: string) => ({ nodeId, region: 'EU' }) as unknown as VerifiedBundle;

/** A Provider with a set of enrolled nodes; counts the requests. */
function provider() {
  const enrolled = new Set<string>();
  let down = false;
  let asked = 0;
  const voucher: NodeVoucher = {
    async node(nodeId) {
      asked++;
      await Promise.resolve();
      if (down) throw new QkmError('PROVIDER_UNAVAILABLE', 'down');
      if (!enrolled.has(nodeId)) throw new QkmError('HANDSHAKE_UNKNOWN_PEER', 'unknown');
      return bundleOf(nodeId);
    },
  };
  return {
    voucher,
    enrolled,
    setDown: (v: boolean) => {
      down = v;
    },
    asked: () => asked,
  };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isQkmError(err) ? err.code : String(err);
  }
}

describe('VouchedPeers', () => {
  it('caches a vouched node for the TTL, then asks again: a removal takes effect after the TTL', async () => {
    const p = provider();
    let now = 1_000_000;
    const v = new VouchedPeers({ voucher: p.voucher, ttlMs: 60_000, clock: () => now });
    p.enrolled.add(id(1));
    expect(await v.get(id(1))).toMatchObject({ nodeId: id(1), trust: 'provider' });
    p.enrolled.delete(id(1)); // removed at the Provider
    now += 59_999;
    expect((await v.get(id(1))).nodeId).toBe(id(1));
    expect(p.asked()).toBe(1);
    expect(v.size()).toBe(1);
    now += 1;
    expect(v.size()).toBe(0);
    expect(await codeOf(v.get(id(1)))).toBe('HANDSHAKE_UNKNOWN_PEER');
    expect(p.asked()).toBe(2);
  });

  it('does not cache refusals or outages: the next handshake asks again', async () => {
    const p = provider();
    const v = new VouchedPeers({ voucher: p.voucher });
    expect(await codeOf(v.get(id(2)))).toBe('HANDSHAKE_UNKNOWN_PEER');
    p.enrolled.add(id(2));
    p.setDown(true);
    expect(await codeOf(v.get(id(2)))).toBe('PROVIDER_UNAVAILABLE');
    p.setDown(false);
    expect((await v.get(id(2))).nodeId).toBe(id(2));
    expect(p.asked()).toBe(3);
  });

  it('a voucher that fails with something else is PROVIDER_UNAVAILABLE (fail closed)', async () => {
    const v = new VouchedPeers({
      voucher: {
        node: async () => {
          throw new TypeError('fetch failed');
        },
      },
    });
    expect(await codeOf(v.get(id(3)))).toBe('PROVIDER_UNAVAILABLE');
  });

  it('concurrent asks for one node share one Provider request; malformed ids are refused unasked', async () => {
    const p = provider();
    p.enrolled.add(id(4));
    const v = new VouchedPeers({ voucher: p.voucher });
    const got = await Promise.all([v.get(id(4)), v.get(id(4)), v.get(id(4))]);
    expect(got.map((g) => g.nodeId)).toEqual([id(4), id(4), id(4)]);
    expect(p.asked()).toBe(1);
    expect(await codeOf(v.get('not-a-node-id'))).toBe('HANDSHAKE_UNKNOWN_PEER');
    expect(p.asked()).toBe(1);
  });

  it('is bounded: the oldest entry goes first', async () => {
    const p = provider();
    for (let i = 10; i < 13; i++) p.enrolled.add(id(i));
    const v = new VouchedPeers({ voucher: p.voucher, max: 2 });
    await v.get(id(10));
    await v.get(id(11));
    await v.get(id(12));
    expect(v.size()).toBe(2);
    await v.get(id(11));
    expect(p.asked()).toBe(3);
    await v.get(id(10));
    expect(p.asked()).toBe(4);
  });
});

describe('initiatorPeer', () => {
  const pinnedPeer = { ...bundleOf(id(5)), pinnedAt: '2026-01-01T00:00:00.000Z' } as Peer;
  const registry = {
    get: async (nodeId: string) => (nodeId === id(5) ? pinnedPeer : undefined),
  } as unknown as PeerRegistry;

  it('a pinned peer wins and the Provider is not asked', async () => {
    const p = provider();
    p.enrolled.add(id(5));
    const got = await initiatorPeer(registry, new VouchedPeers({ voucher: p.voucher }), id(5));
    expect(got.trust).toBeUndefined();
    expect(p.asked()).toBe(0);
  });

  it('without a Provider (or for a plain qkm/v1 handshake) an unpinned node is HANDSHAKE_UNKNOWN_PEER', async () => {
    expect(await codeOf(initiatorPeer(registry, undefined, id(6)))).toBe('HANDSHAKE_UNKNOWN_PEER');
  });

  it('an unpinned node the Provider vouches for is a provider-trusted peer', async () => {
    const p = provider();
    p.enrolled.add(id(7));
    const got = await initiatorPeer(registry, new VouchedPeers({ voucher: p.voucher }), id(7));
    expect(got).toMatchObject({ nodeId: id(7), trust: 'provider' });
  });
});
