import { QkmError } from '../core/errors.js';
import type { SessionContext } from './context.js';
import { fromBase64url } from './encoding.js';
import type { IssuedToken } from './records.js';
import { receiveToken } from './resume.js';
import { constantTimeEqual } from './transcript.js';

/** The initiator's last step: the responder's key-confirmation tag. */

/**
 * Initiator side: checks the responder's key-confirmation tag (base64url or bytes) in constant
 * time. Throws SESSION_NOT_FOUND, CONFIRM_MISMATCH. Idempotent once confirmed.
 */
export async function confirm(
  ctx: SessionContext,

  sessionId: string,
  tag: string | Uint8Array,
  agent: string,
  token?: { id: string; sealed: string },
): Promise<{ session_id: string; confirmed: true; key?: Uint8Array; token?: IssuedToken }> {
  const key = `initiator:${sessionId}`;
  const rec = typeof sessionId === 'string' ? await ctx.sessions.get(key) : undefined;
  // Another agent's session answers as a missing one: no agent learns which sessions exist.
  // Records written before handshake v2 name no agent and can no longer be confirmed.
  if (!rec || rec.expected_confirm === undefined || rec.agent !== agent) {
    throw new QkmError('SESSION_NOT_FOUND', 'no session initiated by this node has that id');
  }
  let got: Uint8Array;
  try {
    got = typeof tag === 'string' ? fromBase64url(tag, 'confirm') : tag;
  } catch {
    got = new Uint8Array(0);
  }
  if (!constantTimeEqual(got, fromBase64url(rec.expected_confirm))) {
    await ctx.o.audit.append({
      type: 'session.confirm_failed',
      actor: agent,
      details: { session_id: sessionId, peer: rec.peer },
    });
    throw new QkmError('CONFIRM_MISMATCH', 'the key-confirmation tag does not match');
  }
  // Governed: the responder's access token, opened with the session's token key (the tag has
  // just proven both ends hold the same K). Before the key is taken, so a bad token costs nothing.
  const received = token ? await receiveToken(ctx, rec, token) : undefined;
  let held: Uint8Array | undefined;
  if (rec.pending_key_id) {
    // Take-once: a second confirm (or a race) gets no key.
    held = await ctx.o.store.keys.take(rec.pending_key_id, new Date(ctx.clock())).then(
      (k) => k.material,
      () => undefined,
    );
  }
  if (!rec.confirmed || rec.pending_key_id || received) {
    const { pending_key_id: _taken, ...rest } = rec;
    if (received) delete rest.resumption_pending_id;
    await ctx.sessions.put(key, {
      ...rest,
      confirmed: true,
      confirmed_at: rec.confirmed_at ?? new Date(ctx.clock()).toISOString(),
    });
  }
  if (!rec.confirmed) {
    await ctx.o.audit.append({
      type: 'session.confirmed',
      actor: agent,
      details: { session_id: sessionId, peer: rec.peer, peer_agent: rec.peer_agent },
    });
  }
  return {
    session_id: sessionId,
    confirmed: true,
    ...(held ? { key: held } : {}),
    ...(received ? { token: received } : {}),
  };
}
