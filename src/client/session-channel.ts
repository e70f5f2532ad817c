import { randomBytes, timingSafeEqual } from 'node:crypto';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { CHANNEL_ID_BYTES, type Role, type SecureChannel, createSecureChannel } from './secure-message.js';

/**
 * Agent-held signing keys for secure messages over a qkm session.
 *
 * `seal` signs every message with an ML-DSA-65 key, but the node's identity key never leaves the
 * appliance (agents only hold bearer tokens), so each agent signs with its own ML-DSA-65 key pair.
 * The public keys have to reach the other agent authenticated, and the session gives two ways:
 *
 * - Announcement (both sides): `pub ‖ channel id ‖ HMAC-SHA-256(k_ann, label ‖ role ‖ session id
 *   ‖ pub ‖ channel id)`, the channel id being this end's 16 random bytes (secure-message.ts),
 *   k_ann = HKDF-SHA-256(IKM = K, salt = empty, info = "qkm/v1 agent-key", 32). Only the two
 *   agents know K (the nodes authenticated the handshake with their pinned ML-DSA identities and
 *   the responder's key-confirmation tag proves it derived the same K), so a valid tag binds the
 *   key to this session and to the role that sent it.
 * - Fingerprint in the handshake context (initiator): `agent-key=sha3-256:<base64url>`. The
 *   context is bound into the transcript the initiator node signs, so the responder agent learns
 *   the expected key before the announcement arrives. (ML-DSA-65 public keys are 1952 bytes, too
 *   big for the 1024-byte context, hence a fingerprint.)
 *
 * The announcement's own key is separate from the message keys (different HKDF info), so the
 * MAC never shares a key with AES-GCM.
 */

const enc = new TextEncoder();
const ANNOUNCE_INFO = enc.encode('qkm/v1 agent-key');
const ANNOUNCE_LABEL = enc.encode('qkm/v1 agent-key announce');
const TAG_BYTES = 32;
const CONTEXT_PREFIX = 'agent-key=sha3-256:';
/** FIPS 204 ML-DSA-65 public key length. */
const PUBLIC_KEY_BYTES = 1952;

export type SessionChannelErrorCode = 'AGENT_KEY_MALFORMED' | 'AGENT_KEY_BAD_TAG' | 'AGENT_KEY_MISMATCH';

/** Rejections of a peer's key announcement. Messages carry no key bytes. */
export class SessionChannelError extends Error {
  constructor(
    readonly code: SessionChannelErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SessionChannelError';
  }
}

export interface AgentSigningKeys {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

/** The session as the agent holds it after `initiate` or `accept`. */
export interface AgentSession {
  sessionId: string;
  /** 32-byte session key K. */
  key: Uint8Array;
  role: Role;
}

/**
 * A fresh ML-DSA-65 key pair for one agent. `seed` (32 bytes) lets the agent use quantum entropy
 * from its appliance (`client.entropy(32)`); default: the OS CSPRNG.
 */
export function generateAgentKeys(seed?: Uint8Array): AgentSigningKeys {
  if (seed !== undefined && seed.length !== 32) throw new RangeError('seed must be 32 bytes');
  const s = seed ?? new Uint8Array(randomBytes(32));
  const { publicKey, secretKey } = ml_dsa65.keygen(s);
  if (seed === undefined) s.fill(0);
  return { publicKey, secretKey };
}

/** base64url SHA3-256 of an agent public key. */
export function agentKeyFingerprint(publicKey: Uint8Array): string {
  return Buffer.from(sha3_256(publicKey)).toString('base64url');
}

/** The handshake `context` that binds the initiator agent's key fingerprint. */
export function agentKeyContext(publicKey: Uint8Array): string {
  return `${CONTEXT_PREFIX}${agentKeyFingerprint(publicKey)}`;
}

/** The fingerprint from a context made by `agentKeyContext`, or undefined. */
export function fingerprintFromContext(context: string): string | undefined {
  return context.startsWith(CONTEXT_PREFIX) ? context.slice(CONTEXT_PREFIX.length) : undefined;
}

function announceTag(
  session: AgentSession,
  sender: Role,
  publicKey: Uint8Array,
  channelId: Uint8Array,
): Uint8Array {
  const k = hkdf(sha256, session.key, new Uint8Array(0), ANNOUNCE_INFO, 32);
  const sid = enc.encode(session.sessionId);
  const msg = Buffer.concat([
    ANNOUNCE_LABEL,
    Uint8Array.of(sender === 'initiator' ? 1 : 2),
    sid,
    publicKey,
    channelId,
  ]);
  const tag = hmac(sha256, k, msg);
  k.fill(0);
  return tag;
}

/**
 * This agent's current channel id per (signing keys, session), made by whichever of
 * `announceAgentKey` / `openSessionChannel` comes first and used by both. A channel's keys
 * depend on the pair (own id, peer id), so an id may serve a new channel object only with a peer
 * id it was never paired with (the pair, hence the key, is new); opening a second channel with
 * the same peer id starts a new id. So no two channel objects ever share a key (no nonce reuse),
 * and messages sealed to an earlier channel object never open on a later one (no replay).
 * A new process has none of this state and always starts with fresh ids.
 */
const ownIds = new WeakMap<AgentSigningKeys, Map<string, { id: Uint8Array; paired: Set<string> }>>();

/**
 * Bounds of that state for an agent process that lives long with one set of keys (#16): the ids
 * of at most this many sessions are remembered (least recently used dropped first), and an id is
 * paired with at most this many peer ids before it is replaced. Forgetting only ever leads to a
 * fresh random id, i.e. a new key: the worst case is a peer sealing to an id this end no longer
 * uses, which fails closed (MESSAGE_WRONG_CHANNEL) — never a key shared by two channels.
 */
export const MAX_REMEMBERED_SESSIONS = 4096;
export const MAX_PEER_IDS_PER_CHANNEL = 64;

function channelIdFor(keys: AgentSigningKeys, sessionId: string, openingWith?: Uint8Array): Uint8Array {
  let m = ownIds.get(keys);
  if (!m) {
    m = new Map();
    ownIds.set(keys, m);
  }
  let e = m.get(sessionId);
  const peer = openingWith ? Buffer.from(openingWith).toString('hex') : undefined;
  if (!e || (peer !== undefined && (e.paired.has(peer) || e.paired.size >= MAX_PEER_IDS_PER_CHANNEL))) {
    e = { id: new Uint8Array(randomBytes(CHANNEL_ID_BYTES)), paired: new Set() };
  }
  // Re-inserted on every use, so the Map's first entry is the least recently used.
  m.delete(sessionId);
  m.set(sessionId, e);
  while (m.size > MAX_REMEMBERED_SESSIONS) m.delete(m.keys().next().value as string);
  if (peer !== undefined) e.paired.add(peer);
  return e.id;
}

/** @internal How many sessions' channel ids are remembered for `keys` (tests of the bound). */
export function rememberedChannelIds(keys: AgentSigningKeys): number {
  return ownIds.get(keys)?.size ?? 0;
}

/**
 * This agent's announcement for the peer agent (base64url; carries only public data and a MAC):
 * its public key and the id of its channel end. Announce again after re-creating a channel.
 */
export function announceAgentKey(session: AgentSession, keys: AgentSigningKeys): string {
  const channelId = channelIdFor(keys, session.sessionId);
  const tag = announceTag(session, session.role, keys.publicKey, channelId);
  return Buffer.concat([keys.publicKey, channelId, tag]).toString('base64url');
}

/**
 * Checks the peer agent's announcement and returns its public key. Throws SessionChannelError:
 * AGENT_KEY_MALFORMED, AGENT_KEY_BAD_TAG (not made with this session's K by the other role),
 * AGENT_KEY_MISMATCH (differs from `expectedFingerprint`).
 */
export function verifyAgentKey(
  session: AgentSession,
  announcement: string,
  expectedFingerprint?: string,
): Uint8Array {
  return verifyAnnouncement(session, announcement, expectedFingerprint).publicKey;
}

/** Checks the peer agent's announcement; its public key and channel id. Errors as verifyAgentKey. */
export function verifyAnnouncement(
  session: AgentSession,
  announcement: string,
  expectedFingerprint?: string,
): { publicKey: Uint8Array; channelId: Uint8Array } {
  const raw = new Uint8Array(Buffer.from(announcement, 'base64url'));
  if (raw.length !== PUBLIC_KEY_BYTES + CHANNEL_ID_BYTES + TAG_BYTES) {
    throw new SessionChannelError('AGENT_KEY_MALFORMED', 'announcement has the wrong length');
  }
  const publicKey = raw.slice(0, PUBLIC_KEY_BYTES);
  const channelId = raw.slice(PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES + CHANNEL_ID_BYTES);
  const tag = raw.subarray(PUBLIC_KEY_BYTES + CHANNEL_ID_BYTES);
  const peer: Role = session.role === 'initiator' ? 'responder' : 'initiator';
  if (!timingSafeEqual(announceTag(session, peer, publicKey, channelId), tag)) {
    throw new SessionChannelError('AGENT_KEY_BAD_TAG', 'announcement is not from the peer of this session');
  }
  if (expectedFingerprint !== undefined && agentKeyFingerprint(publicKey) !== expectedFingerprint) {
    throw new SessionChannelError(
      'AGENT_KEY_MISMATCH',
      'announced key differs from the fingerprint in the handshake',
    );
  }
  return { publicKey, channelId };
}

/**
 * The secure channel for `seal`/`open` (src/client/secure-message.ts) once the peer's
 * announcement has been verified.
 */
export function openSessionChannel(o: {
  session: AgentSession;
  keys: AgentSigningKeys;
  peerAnnouncement: string;
  expectedPeerFingerprint?: string;
}): SecureChannel {
  const peer = verifyAnnouncement(o.session, o.peerAnnouncement, o.expectedPeerFingerprint);
  return createSecureChannel({
    sessionId: o.session.sessionId,
    key: o.session.key,
    role: o.session.role,
    signingSecretKey: o.keys.secretKey,
    peerPublicKey: peer.publicKey,
    peerChannelId: peer.channelId,
    channelId: channelIdFor(o.keys, o.session.sessionId, peer.channelId),
  });
}
