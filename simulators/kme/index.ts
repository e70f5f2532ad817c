/**
 * The ETSI GS QKD 014 v1.1.1 KME simulator pair. See `simulators/kme/README.md` for the routes,
 * qkm's choices where the standard is silent, the certificate layout and curl lines.
 */
export {
  type CertFiles,
  generateForeignCert,
  generateSimCerts,
  issueSimCert,
  type SimCertFiles,
  type SimCertOptions,
} from './certs.js';
export { EtsiHttpError, QKM_MESSAGES, SPEC_MESSAGES } from './errors.js';
export type { TlsMaterial } from './http-common.js';
export { KmeCore, type KmeCoreOptions, type PeerChannel } from './kme-core.js';
export {
  curlLines,
  DEFAULT_LIMITS,
  type KmeHandle,
  type KmePair,
  type KmePairDescription,
  type KmePairOptions,
  type KmeSpec,
  loadKmeTls,
  type RunKmePairOptions,
  type RunningKmePair,
  runKmePairFromCerts,
  startKmePair,
} from './pair.js';
export { INTERNAL_ROUTES } from './peer-link.js';
export { type FeederStats, ManualKeySupply, PairFeeder } from './supply.js';
export type {
  EtsiError,
  EtsiKeyContainer,
  EtsiKeyIds,
  EtsiKeyRequest,
  EtsiStatus,
  KeySupply,
  KmeLimits,
  LinkKey,
} from './types.js';
