export * from './posture.js';
export * from './identity.js';
export * from './peers.js';
export * from './policy.js';
export * from './handshake.js';
export {
  HANDSHAKE_VERSION,
  type HandshakeBody,
  decodeBody,
  decodeMessage,
  deriveKeys,
  encodeBody,
  encodeMessage,
  sessionIdOf,
  signBody,
  transcriptHash,
  verifyBody,
} from './transcript.js';
export { ReplayCache } from './replay.js';
