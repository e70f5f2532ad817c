import { QkmError } from '../core/errors.js';
import type { VerifiedBundle } from './identity.js';
import type { Peer, PeerRegistry } from './peers.js';

/**
 * Peers the Provider vouches for (issue #12: nodes pin the Provider's key, not every peer).
 *
 * A responder that gets a governed handshake from a node it has not pinned asks the Provider
 * for that node's enrolled identity (GET /v1/nodes/:id, answer signed by the pinned Provider key
 * and bound to the request's nonce) and, once verified, treats it as a peer with no per-peer
 * settings: the node's default posture policy applies. Answers are kept for `ttlMs`, so a node
 * removed at the Provider keeps being accepted for at most that long here (README, "Provider").
 * Refusals and failures are not cached: a node enrolled a moment ago is vouched for at its first
 * handshake, and an outage ends when the Provider answers again. (A negative cache would not
 * stop junk anyway — junk can name a fresh node id each time; the accept route's per-agent rate
 * limit bounds how often the Provider is asked, and concurrent asks for one node share a request.)
 */

/** What answers for a node: the Provider client (`ProviderClient.node`). */
export interface NodeVoucher {
  /**
   * The verified identity of an enrolled node. Throws HANDSHAKE_UNKNOWN_PEER (not enrolled),
   * PROVIDER_UNAVAILABLE (cannot be asked), PROVIDER_RESPONSE_INVALID (answer fails verification).
   */
  node(nodeId: string): Promise<VerifiedBundle>;
}

export interface VouchedPeersOptions {
  voucher: NodeVoucher;
  /** How long a vouched identity is used without asking again, ms (default 300 000). */
  ttlMs?: number;
  /** Entries kept (default 1024); the oldest goes first. */
  max?: number;
  clock?: () => number;
}

export const DEFAULT_VOUCH_TTL_MS = 300_000;

type Entry = { until: number; peer: Peer };

export class VouchedPeers {
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<Peer>>();
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly clock: () => number;

  constructor(private readonly o: VouchedPeersOptions) {
    this.ttlMs = o.ttlMs ?? DEFAULT_VOUCH_TTL_MS;
    this.max = o.max ?? 1024;
    this.clock = o.clock ?? Date.now;
  }

  /** The vouched peer, asking the Provider when nothing fresh is cached (concurrent asks share one). */
  async get(nodeId: string): Promise<Peer> {
    if (!/^[0-9a-f]{32}$/.test(nodeId))
      throw new QkmError('HANDSHAKE_UNKNOWN_PEER', 'the initiator node id is malformed');
    const now = this.clock();
    const hit = this.cache.get(nodeId);
    if (hit && hit.until > now) return { ...hit.peer };
    if (hit) this.cache.delete(nodeId);
    let pending = this.inflight.get(nodeId);
    if (!pending) {
      pending = this.ask(nodeId).finally(() => this.inflight.delete(nodeId));
      this.inflight.set(nodeId, pending);
    }
    return { ...(await pending) };
  }

  /** Vouched peers currently cached (for the status view). */
  size(): number {
    const now = this.clock();
    let n = 0;
    for (const e of this.cache.values()) if (e.until > now) n++;
    return n;
  }

  private async ask(nodeId: string): Promise<Peer> {
    try {
      const v = await this.o.voucher.node(nodeId);
      const peer: Peer = { ...v, pinnedAt: 'provider', trust: 'provider' };
      this.put(nodeId, { until: this.clock() + this.ttlMs, peer });
      return peer;
    } catch (err) {
      if (err instanceof QkmError) throw err;
      throw new QkmError('PROVIDER_UNAVAILABLE', 'the Provider could not be asked about the peer', {
        cause: err,
      });
    }
  }

  private put(nodeId: string, e: Entry): void {
    this.cache.delete(nodeId);
    if (this.cache.size >= this.max) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(nodeId, e);
  }
}

/**
 * The initiator node of a handshake as this responder knows it: pinned first (a pinned peer
 * always wins, with its per-peer settings), else vouched for by the Provider when `vouched` is
 * given (governed handshakes only), else HANDSHAKE_UNKNOWN_PEER.
 */
export async function initiatorPeer(
  peers: PeerRegistry,
  vouched: VouchedPeers | undefined,
  nodeId: string,
): Promise<Peer> {
  const pinned = await peers.get(nodeId);
  if (pinned) return pinned;
  if (!vouched) throw new QkmError('HANDSHAKE_UNKNOWN_PEER', `initiator ${nodeId} is not pinned`);
  return vouched.get(nodeId);
}
