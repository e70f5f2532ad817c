import { performance } from 'node:perf_hooks';
import type { Posture, QkmClient, SessionProvenance } from '../client/client.js';
import { open, seal } from '../client/secure-message.js';
import {
  agentKeyContext,
  agentKeyFingerprint,
  announceAgentKey,
  fingerprintFromContext,
  generateAgentKeys,
  openSessionChannel,
} from '../client/session-channel.js';

/**
 * Two agents, each talking only to its own qkm node, establish a session and exchange sealed
 * messages. The agents pass the handshake, the confirm tag and their key announcements to each
 * other directly (in a real deployment: over whatever channel the agents already share; here, in
 * memory). Every step is timed.
 */

export interface AgentPair {
  /** The initiating agent's client (node A). */
  initiator: QkmClient;
  /** The responding agent's client (node B). */
  responder: QkmClient;
  /** Node id of the responder's node, as pinned on the initiator's node. */
  responderNodeId: string;
  /** The responding agent's name on node B: the only agent there that may accept. */
  responderAgent: string;
}

export interface ExchangeResult {
  sessionId: string;
  posture: Posture;
  initiatorProvenance: SessionProvenance;
  responderProvenance: SessionProvenance;
  keysEqual: boolean;
  confirmed: boolean;
  /** Each direction: the payload came back intact after seal → open. */
  messages: { initiatorToResponder: boolean; responderToInitiator: boolean };
  /** Milliseconds per step. */
  timingsMs: {
    initiate: number;
    accept: number;
    confirm: number;
    agentKeys: number;
    sealOpenI2R: number;
    sealOpenR2I: number;
    total: number;
  };
}

const ms = (t0: number) => Math.round((performance.now() - t0) * 1000) / 1000;

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Runs one full session between the agents. API failures propagate as QkmApiError. */
export async function establishAndExchange(
  pair: AgentPair,
  options: { minPosture?: Posture } = {},
): Promise<ExchangeResult> {
  const start = performance.now();
  let t = performance.now();
  // Each agent signs its messages with its own ML-DSA key pair (the node's key stays in the node).
  const iKeys = generateAgentKeys();
  const rKeys = generateAgentKeys();
  const keygen = ms(t);

  t = performance.now();
  const init = await pair.initiator.sessions.initiate({
    peer: pair.responderNodeId,
    responderAgent: pair.responderAgent,
    // Mutual confirmation before any use of K: the initiator gets K only from a confirm whose tag
    // matched (the responder derived the same K); the responder uses K only through
    // openSessionChannel, which first checks the initiator's announcement MAC under K.
    requireConfirm: true,
    ...(options.minPosture ? { minPosture: options.minPosture } : {}),
    context: agentKeyContext(iKeys.publicKey),
  });
  const initiate = ms(t);

  t = performance.now();
  const acc = (await pair.responder.sessions.accept(init.handshake)) as Awaited<
    ReturnType<QkmClient['sessions']['accept']>
  > & { context?: string };
  const accept = ms(t);

  t = performance.now();
  const conf = await pair.initiator.sessions.confirm(init.session_id, acc.confirm);
  const confirm = ms(t);
  if (!conf.key) throw new Error('confirm returned no key');

  t = performance.now();
  const iSession = { sessionId: init.session_id, key: conf.key, role: 'initiator' as const };
  const rSession = { sessionId: acc.session_id, key: acc.key, role: 'responder' as const };
  const iChannel = openSessionChannel({
    session: iSession,
    keys: iKeys,
    peerAnnouncement: announceAgentKey(rSession, rKeys),
  });
  const expected = fingerprintFromContext(acc.context ?? '');
  const rChannel = openSessionChannel({
    session: rSession,
    keys: rKeys,
    peerAnnouncement: announceAgentKey(iSession, iKeys),
    ...(expected ? { expectedPeerFingerprint: expected } : {}),
  });
  const agentKeys = keygen + ms(t);
  if (expected !== undefined && expected !== agentKeyFingerprint(iKeys.publicKey)) {
    throw new Error('the responder saw another fingerprint than the initiator sent');
  }

  t = performance.now();
  const hello = `hello from the initiator, session ${init.session_id}`;
  const got1 = open(rChannel, seal(iChannel, hello, 'demo'), 'demo');
  const sealOpenI2R = ms(t);
  t = performance.now();
  const reply = 'hello back from the responder';
  const got2 = open(iChannel, seal(rChannel, reply, 'demo'), 'demo');
  const sealOpenR2I = ms(t);

  const result: ExchangeResult = {
    sessionId: init.session_id,
    posture: init.posture,
    initiatorProvenance: init.provenance,
    responderProvenance: acc.provenance,
    keysEqual: equalBytes(conf.key, acc.key) && init.session_id === acc.session_id,
    confirmed: conf.confirmed,
    messages: {
      initiatorToResponder: Buffer.from(got1.payload).toString('utf8') === hello,
      responderToInitiator: Buffer.from(got2.payload).toString('utf8') === reply,
    },
    timingsMs: { initiate, accept, confirm, agentKeys, sealOpenI2R, sealOpenR2I, total: ms(start) },
  };
  conf.key.fill(0);
  acc.key.fill(0);
  iKeys.secretKey.fill(0);
  rKeys.secretKey.fill(0);
  return result;
}
