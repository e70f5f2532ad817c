export * from './types.js';
export { canonicalJson, sanitizeDetails } from './canonical.js';
export {
  AuditLog,
  type AuditLogOptions,
  type AuditSigner,
  type AuditStats,
  signerFromIdentity,
} from './log.js';
export {
  GENESIS_HASH,
  type VerifyOptions,
  parseJsonLines,
  recordHash,
  sealMessage,
  toJsonLines,
  verifyAuditLog,
} from './verify.js';
