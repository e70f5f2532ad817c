import type { SignedPrekey } from '../governance/prekeys.js';
import { QkmError } from '../core/errors.js';
import { verifyBundle } from './identity.js';
import type { Peer, PeerRegistry } from './peers.js';

/**
 * Where an initiator's node gets the responder agent's prekey for a governed (qkm/v2) handshake.
 * Types only, plus the trivial source; the Provider's client is another implementation.
 *
 * Contract:
 * - `bundle` returns ONE signed prekey of `responderAid` — a one-time prekey, or, when the
 *   source has none left, the agent's last-resort prekey with `lastResort: true`. A source that
 *   allocates (the Provider) counts it against the responder's contact policy and never hands
 *   the same one-time prekey out twice; it refuses with the responder's CONTACT_* code, or
 *   PREKEYS_EXHAUSTED, consuming nothing then.
 * - The initiator does not trust the source: the prekey's signature is verified against the
 *   responder node's identity key (pinned, or `peer` when the source vouches for the node, as
 *   the Provider does for nodes it enrolled), its binding to `responderAid`, and its expiry.
 * - The responder enforces its contact policy again when it accepts, and destroys the
 *   one-time prekey's secret on first use: a source that cheats gets a refusal, not a session.
 */
export interface BundleSource {
  bundle(query: BundleQuery): Promise<ResponderBundle>;
}

export interface BundleQuery {
  /** Canonical governed id of the responder agent. */
  responderAid: string;
  /** Canonical governed id of the initiating agent (the one whose budget is spent). */
  initiatorAid: string;
  /** The node id the caller named, if any (it must then be the responder agent's node). */
  peer?: string | undefined;
}

export interface ResponderBundle {
  prekey: SignedPrekey;
  lastResort: boolean;
  /** The responder's node, when the source vouches for it; otherwise the pinned peer is used. */
  peer?: Peer;
  /** Where the responder agent's node is reached (its API), when the source knows. */
  endpoint?: string;
}

/**
 * The direct path: a prekey the initiator obtained from the responder's node itself (its admin
 * hands out `GET /v1/prekeys/:aid` entries, the way identity bundles are exchanged). Nothing is
 * allocated here; the responder's accept is the only gate.
 */
export function givenBundle(prekey: SignedPrekey): BundleSource {
  return {
    bundle: async () => ({ prekey, lastResort: prekey?.kind === 'last-resort' }),
  };
}

/** What the Provider's client hands out (src/provider/directory.ts `Bundle`, the fields used here). */
export interface DirectoryBundle {
  agent?: { endpoint?: string };
  node: { node_id: string; identity: unknown };
  prekey: SignedPrekey;
  lastResort: boolean;
}

/**
 * The Provider path: `directory.bundle(responder, initiator)` (the Provider client, which checks
 * the Provider's signature and the responder node's). The node is the pinned peer when this
 * node pins it (its pinned keys must be the ones the Provider vouches for: HANDSHAKE_UNKNOWN_PEER
 * otherwise), else the node identity the Provider vouched for, so nodes need pin only the Provider.
 */
export function directoryBundles(
  directory: { bundle(responder: string, initiator: string): Promise<DirectoryBundle> },
  peers: PeerRegistry,
): BundleSource {
  return {
    async bundle(q) {
      const b = await directory.bundle(q.responderAid, q.initiatorAid);
      // The caller's `peer` is a claim about where the agent lives: the Provider's word must agree.
      if (q.peer !== undefined && q.peer !== b.node.node_id)
        throw new QkmError(
          'INVALID_PARAMETER',
          `the Provider places ${q.responderAid} on node ${b.node.node_id}, not on ${q.peer}`,
        );
      const vouched = verifyBundle(b.node.identity);
      const pinned = await peers.get(b.node.node_id);
      if (pinned && pinned.bundle.ml_dsa_65_public_key !== vouched.bundle.ml_dsa_65_public_key)
        throw new QkmError(
          'HANDSHAKE_UNKNOWN_PEER',
          'the Provider vouches for other keys than this node pinned for the responder node',
        );
      return {
        prekey: b.prekey,
        lastResort: b.lastResort,
        peer: pinned ?? { ...vouched, pinnedAt: 'provider', trust: 'provider' },
        ...(typeof b.agent?.endpoint === 'string' ? { endpoint: b.agent.endpoint } : {}),
      };
    },
  };
}
