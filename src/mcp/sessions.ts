import type { Posture, SessionProvenance } from '../client/client.js';
import type { Role, SecureChannel } from '../client/secure-message.js';
import { type AgentSession, type AgentSigningKeys, openSessionChannel } from '../client/session-channel.js';
import { McpToolError } from './errors.js';

/**
 * The sessions an MCP server holds for its agent. The session key K and the agent's ML-DSA
 * secret key stay in this process: the model sees session ids, handshakes, announcements and
 * sealed messages, never K — it cannot leak what it never had.
 */

export interface HeldSession {
  session: AgentSession;
  keys: AgentSigningKeys;
  posture: Posture;
  provenance: SessionProvenance;
  /** Node id of the peer appliance. */
  peer: string;
  /** Initiator: set by a matching confirm. Responder: true (it made the confirm tag). */
  confirmed: boolean;
  /** Responder: the initiator's agent-key fingerprint, from the signed handshake context. */
  expectedPeerFingerprint?: string;
  channel?: SecureChannel;
  /** The announcement `channel` was opened from. */
  peerAnnouncement?: string;
}

/** Default bound on held sessions: the oldest is dropped (and wiped) beyond it. */
export const DEFAULT_MAX_SESSIONS = 256;

export class SessionTable {
  private readonly held = new Map<string, HeldSession>();

  constructor(private readonly max = DEFAULT_MAX_SESSIONS) {}

  add(s: HeldSession): void {
    this.drop(s.session.sessionId);
    this.held.set(s.session.sessionId, s);
    while (this.held.size > this.max) {
      const oldest = this.held.keys().next().value;
      if (oldest === undefined) break;
      this.drop(oldest);
    }
  }

  get(sessionId: string): HeldSession {
    const s = this.held.get(sessionId);
    if (!s) throw new McpToolError('SESSION_UNKNOWN');
    return s;
  }

  /**
   * The session's secure channel, opened from `peerAnnouncement` when there is none yet. A new
   * announcement for an open channel replaces it (the peer re-created its end); the old one is
   * wiped. The same announcement again is a no-op: re-opening with a peer channel id already
   * paired would (rightly) give this end a new channel id and strand the peer.
   */
  channel(s: HeldSession, peerAnnouncement?: string): SecureChannel {
    if (s.session.role === 'initiator' && !s.confirmed) throw new McpToolError('SESSION_NOT_CONFIRMED');
    if (peerAnnouncement !== undefined) this.openChannel(s, peerAnnouncement);
    if (!s.channel) throw new McpToolError('CHANNEL_NOT_OPEN');
    return s.channel;
  }

  openChannel(s: HeldSession, peerAnnouncement: string): void {
    if (s.channel && s.peerAnnouncement === peerAnnouncement) return;
    const ch = openSessionChannel({
      session: s.session,
      keys: s.keys,
      peerAnnouncement,
      ...(s.expectedPeerFingerprint !== undefined
        ? { expectedPeerFingerprint: s.expectedPeerFingerprint }
        : {}),
    });
    if (s.channel) wipeChannel(s.channel);
    s.channel = ch;
    s.peerAnnouncement = peerAnnouncement;
  }

  /** Forgets every session, wiping keys (on shutdown). */
  clear(): void {
    for (const id of [...this.held.keys()]) this.drop(id);
  }

  get size(): number {
    return this.held.size;
  }

  private drop(sessionId: string): void {
    const s = this.held.get(sessionId);
    if (!s) return;
    this.held.delete(sessionId);
    // Best effort: JavaScript gives no guarantee that no copy survives (README, Security).
    s.session.key.fill(0);
    s.keys.secretKey.fill(0);
    if (s.channel) wipeChannel(s.channel);
  }
}

function wipeChannel(ch: SecureChannel): void {
  ch.sendKey.fill(0);
  ch.recvKey.fill(0);
}

export type { Role };
