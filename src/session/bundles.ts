import type { SignedPrekey } from '../governance/prekeys.js';
import type { Peer } from './peers.js';

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
  /** The node id the caller named, if any (a pinned peer). */
  peer?: string;
}

export interface ResponderBundle {
  prekey: SignedPrekey;
  lastResort: boolean;
  /** The responder's node, when the source vouches for it; otherwise the pinned peer is used. */
  peer?: Peer;
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
