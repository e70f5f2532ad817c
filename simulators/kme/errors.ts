/**
 * The answers a simulated KME gives when it cannot serve a request. ETSI 014 defines only 400
 * (with an Error body), 401 (no body) and 503 (with an Error body); the messages the standard
 * requires are spelled exactly as in it. The rest are qkm's choices, documented in
 * `simulators/kme/README.md`. No message ever carries key material.
 */
import type { EtsiError } from './types.js';

/** Messages required verbatim by ETSI GS QKD 014 v1.1.1 §5.3 / §5.4 / §6.5. */
export const SPEC_MESSAGES = {
  sizeNotMultipleOf8: 'size shall be a multiple of 8',
  extensionMandatoryUnsupported: 'not all extension_mandatory parameters are supported',
  keysNotFound: 'one or more keys specified are not found on KME',
} as const;

/** Messages for qkm's choices where the standard is silent. */
export const QKM_MESSAGES = {
  insufficientKeys: 'insufficient key material',
  unknownSlave: 'unknown slave_SAE_ID',
  unknownMaster: 'unknown master_SAE_ID',
  malformedJson: 'request body is not valid JSON',
  wrongContentType: 'Content-Type shall be application/json',
  notFound: 'no such route',
  methodNotAllowed: 'method not allowed on this route',
  peerUnavailable: 'peer KME unavailable',
  internal: 'internal KME error',
} as const;

export type EtsiStatusCode = 400 | 401 | 404 | 405 | 503;

/**
 * A request the KME refuses. `status` 401 is sent without a body; every other status is sent
 * with the Error body `{message, details?}`.
 */
export class EtsiHttpError extends Error {
  readonly status: EtsiStatusCode;
  readonly details?: Record<string, unknown>[];

  constructor(status: EtsiStatusCode, message: string, details?: Record<string, unknown>[]) {
    super(message);
    this.name = 'EtsiHttpError';
    this.status = status;
    if (details !== undefined) this.details = details;
  }

  toBody(): EtsiError {
    return this.details === undefined
      ? { message: this.message }
      : { message: this.message, details: this.details };
  }
}

export const badRequest = (message: string, details?: Record<string, unknown>[]) =>
  new EtsiHttpError(400, message, details);
export const unauthorized = () => new EtsiHttpError(401, 'unauthorized');
export const unavailable = (message: string, details?: Record<string, unknown>[]) =>
  new EtsiHttpError(503, message, details);
