import { QkmError } from '../core/errors.js';
import { mlKem768Decapsulate } from '../pqc/index.js';
import type { SessionContext } from './context.js';
import { toHex } from './encoding.js';
import type { Peer } from './peers.js';
import { initiatorPeer } from './vouched.js';
import { postureAtLeast, postureHasQkd } from './posture.js';
import {
  type GovernedFields,
  type HandshakeBody,
  HandshakeDecodeError,
  decodeBody,
  decodeMessage,
  verifyBody,
} from './transcript.js';

/**
 * The responder's checks on a peer's handshake, up to and including its admission by the replay
 * cache. Nothing a check guards (KME call, record) happens here.
 */

/** What checkHandshake hands to complete(): an authenticated, admitted handshake. */
export interface CheckedHandshake {
  body: HandshakeBody;
  bodyBytes: Uint8Array;
  peer: Peer;
  /** The replay entry's synced write. */
  admission: Promise<void>;
  /** The accepting agent (its name on this node, its governed id if it has one). */
  agent: string;
  agentAid?: string | undefined;
}

/** FIPS 203 implicit rejection: a forged ciphertext yields an unrelated secret, caught by confirm. */
export function tryDecapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array | undefined {
  try {
    return mlKem768Decapsulate(cipherText, secretKey);
  } catch {
    return undefined;
  }
}

export async function checkHandshake(
  ctx: SessionContext,
  text: string,
  agent: string,
  agentAid: string | undefined,
  seen: (initiator: string, qkdKeyCount: number) => void,
): Promise<CheckedHandshake> {
  const me = ctx.o.identity;
  let body: HandshakeBody;
  let bodyBytes: Uint8Array;
  let signature: Uint8Array;
  try {
    ({ body: bodyBytes, signature } = decodeMessage(text));
    body = decodeBody(bodyBytes);
  } catch (e) {
    if (e instanceof HandshakeDecodeError) throw new QkmError(e.code, e.message);
    throw e;
  }
  seen(body.initiatorNodeId, body.qkdKeyIds.length);
  if (body.responderNodeId !== me.nodeId) {
    throw new QkmError('HANDSHAKE_WRONG_RECIPIENT', 'the handshake is addressed to another node');
  }
  // Pinned, or — governed handshakes only — vouched for by the Provider (HANDSHAKE_UNKNOWN_PEER,
  // PROVIDER_UNAVAILABLE, PROVIDER_RESPONSE_INVALID otherwise: fail closed). A plain qkm/v1
  // handshake has no contact policy to govern it, so it still needs a pinned peer.
  const peer = await initiatorPeer(
    ctx.o.peers,
    body.governed ? ctx.o.vouched : undefined,
    body.initiatorNodeId,
  );
  // Verified before anything else is spent on the handshake. (With the PQC worker it ran
  // alongside a speculative decapsulation; with liboqs a verification takes ≈ 0.1–0.3 ms, src/pqc.)
  const verdict = verifyBody(signature, bodyBytes, peer.dsaPublicKey);
  const { durable } = await checkVerified(ctx, body, peer, verdict, agent, agentAid);
  return { body, bodyBytes, peer, admission: durable, agent, agentAid };
}

/** The checks after the signature's verdict; ends with the replay cache's admission. */
async function checkVerified(
  ctx: SessionContext,

  body: HandshakeBody,
  peer: Peer,
  signatureValid: boolean,
  agent: string,
  agentAid: string | undefined,
): Promise<{ durable: Promise<void> }> {
  const me = ctx.o.identity;
  if (!signatureValid) {
    throw new QkmError(
      'HANDSHAKE_BAD_SIGNATURE',
      'the handshake signature does not verify against the pinned peer',
    );
  }
  // Checked before the replay entry, so a wrong agent cannot burn the intended one's handshake.
  // A governed handshake names its responder by governed id (the unit policies speak about).
  if (body.governed) {
    if (!ctx.o.governance) {
      throw new QkmError('HANDSHAKE_VERSION', 'governed (qkm/v2) handshakes are not enabled on this node');
    }
    if (agentAid === undefined || body.governed.responderAid !== agentAid) {
      throw new QkmError(
        'HANDSHAKE_WRONG_AGENT',
        'the handshake names another governed agent as its responder',
      );
    }
  } else if (body.responderAgent !== agent) {
    throw new QkmError('HANDSHAKE_WRONG_AGENT', 'the handshake names another agent as its responder');
  }
  if (postureHasQkd(body.posture)) {
    if (body.initiatorSaeId !== peer.saeId || body.initiatorKmeId !== peer.kmeId) {
      throw new QkmError('HANDSHAKE_MALFORMED', "the initiator's SAE/KME ids differ from its pinned bundle");
    }
    if (body.responderSaeId !== me.saeId || body.responderKmeId !== me.kmeId) {
      throw new QkmError('HANDSHAKE_WRONG_RECIPIENT', "the responder's SAE/KME ids are not this node's");
    }
  }
  const now = ctx.clock();
  if (Math.abs(now - body.timestamp) > ctx.windowMs) {
    throw new QkmError('HANDSHAKE_STALE', `the handshake timestamp is outside ±${ctx.windowMs / 1000} s`);
  }
  const min = ctx.o.policy.minimumFor(peer);
  if (!postureAtLeast(body.posture, min)) {
    throw new QkmError(
      'POSTURE_BELOW_MINIMUM',
      `offered ${body.posture}, the minimum for this peer is ${min}`,
    );
  }
  if (postureHasQkd(body.posture)) {
    const c = ctx.o.policy.qkdCompliance(peer.region);
    if (!c.ok) throw new QkmError('POSTURE_NOT_PERMITTED', `offered ${body.posture}: ${c.why}`);
  }
  if (postureHasQkd(body.posture) && !ctx.o.qkd) {
    throw new QkmError('QKD_UNAVAILABLE', 'the handshake uses QKD but this node has no QKD key source');
  }
  // Governed: contact policy and prekey checked (consuming nothing) before the replay entry;
  // both are consumed in complete(), once the handshake is admitted.
  if (body.governed) await checkGoverned(ctx, body.governed);
  const admission = await ctx.replay.reserve(body.initiatorNodeId, toHex(body.nonce), body.timestamp, now);
  if (!admission.admitted) {
    throw new QkmError('HANDSHAKE_REPLAYED', 'this handshake was already accepted');
  }
  // Observed in complete(); this only keeps a failure from being reported as unhandled meanwhile.
  admission.durable.catch(() => undefined);
  return admission;
}

/**
 * The responder's contact policy admits the initiator now (CONTACT_NO_RULE, CONTACT_BLOCKED,
 * CONTACT_BUDGET_EXHAUSTED), and the prekey is this agent's, of the kind the body says, unused
 * and unexpired (PREKEY_NOT_FOUND, PREKEY_INVALID, PREKEY_CONSUMED, PREKEY_EXPIRED).
 */
async function checkGoverned(ctx: SessionContext, g: GovernedFields): Promise<void> {
  const gov = ctx.o.governance!;
  await gov.contacts.check(g.responderAid, g.initiatorAid);
  const state = await gov.prekeys.state(g.prekeyId);
  if (!state) throw new QkmError('PREKEY_NOT_FOUND', 'no such prekey on this node');
  if (state.aid !== g.responderAid || state.kind !== g.prekeyKind)
    throw new QkmError('PREKEY_INVALID', 'the prekey belongs to another agent or is of another kind');
  if (state.used) throw new QkmError('PREKEY_CONSUMED', 'the one-time prekey was already used');
  if (ctx.clock() >= Date.parse(state.expires))
    throw new QkmError('PREKEY_EXPIRED', `the prekey expired at ${state.expires}`);
}
