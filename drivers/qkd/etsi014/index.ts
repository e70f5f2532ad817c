/** ETSI GS QKD 014 client driver: the `QkdKeySource` over HTTPS with mutual TLS. */
export { Etsi014Client, type Etsi014ClientOptions, type Etsi014FileOptions } from './client.js';
export { decodeBase64Strict } from './base64.js';
export { kindForStatus, parseErrorBody, QkdError, type QkdErrorKind, type QkdOperation } from './errors.js';
export type { Etsi014Health } from './health.js';
export { certificateNames, KME_ID_MISMATCH, kmeIdentityCheck } from './identity.js';
export { isUuid, wipe as wipeKeys } from './wire.js';
