/**
 * The QKD key-source driver family: types only. A QKD key source is this node's view of its
 * KME (key management entity) as an SAE (secure application entity), after ETSI GS QKD 014.
 * `drivers/qkd/etsi014/` implements it over HTTPS with mutual TLS; the conformance suite in
 * `test/drivers/qkd-conformance.test.ts` runs it against the KME simulator pair.
 *
 * Sizes here are in BITS, as in ETSI 014 (a 256-bit key is 32 bytes). Keys are single-use:
 * a key returned by `getKeys` or `getKeysById` is gone from the KME.
 */

/** ETSI 014 §6.1 Status, with camelCase names. */
export interface QkdLinkStatus {
  sourceKmeId: string;
  targetKmeId: string;
  masterSaeId: string;
  slaveSaeId: string;
  keySize: number;
  storedKeyCount: number;
  maxKeyCount: number;
  maxKeyPerRequest: number;
  maxKeySize: number;
  minKeySize: number;
  maxSaeIdCount: number;
  statusExtension?: Record<string, unknown>;
}

export interface QkdKey {
  /** UUID chosen by the KME, identical on both ends of the link. */
  keyId: string;
  key: Uint8Array;
}

export interface QkdKeyRequest {
  /** Number of keys, default 1. */
  number?: number;
  /** Key size in bits, default the KME's `key_size`. Must be a multiple of 8. */
  size?: number;
  additionalSlaveSaeIds?: string[];
  extensionMandatory?: Record<string, unknown>[];
  extensionOptional?: Record<string, unknown>[];
}

export interface QkdCallOptions {
  signal?: AbortSignal;
  /** Overall deadline for the call including retries, ms. */
  timeoutMs?: number;
  /**
   * Retries after the first attempt for this call, where the driver retries at all (default: the
   * driver's setting). 0 when the caller has a fallback and would rather use it than wait.
   */
  retries?: number;
}

/**
 * Flag-style error for every failure of a QKD call. `status` is the HTTP status when the KME
 * answered (including non-standard ones), absent for transport failures. `kind` tells the cause:
 * - `bad-request` (400), `unauthorized` (401), `unavailable` (503), `not-found` (404),
 *   `method-not-allowed` (405), `conflict` (409), `precondition-failed` (412),
 *   `unprocessable` (422), `server-error` (500 and other 5xx), `gateway-timeout` (504),
 *   `unexpected-status` (anything else);
 * - `network`: connection refused/reset, DNS; `timeout`: deadline passed; `tls`: the KME's
 *   certificate or KME ID did not verify; `protocol`: the KME answered 200 with a body that
 *   breaks the standard (wrong key length, missing fields, wrong IDs);
 * - `canceled`: aborted by the caller or by `close()`.
 */
export interface QkdErrorShape extends Error {
  readonly kind:
    | 'bad-request'
    | 'unauthorized'
    | 'unavailable'
    | 'not-found'
    | 'method-not-allowed'
    | 'conflict'
    | 'precondition-failed'
    | 'unprocessable'
    | 'server-error'
    | 'gateway-timeout'
    | 'unexpected-status'
    | 'network'
    | 'timeout'
    | 'tls'
    | 'protocol'
    | 'canceled';
  readonly status?: number;
  /** The KME's `message` (or `detail`) text, if it sent one. Never contains key material. */
  readonly kmeMessage?: string;
  /** Whether retrying later may succeed (503, network, timeout, 504). */
  readonly retryable: boolean;
}

/** The node's KME, as seen by its SAE. */
export interface QkdKeySource {
  /** This SAE's own id (from its certificate) and the KME it talks to. */
  readonly saeId: string;
  readonly kmeId: string;
  /** ETSI 014 Get status for the link to `slaveSaeId`. */
  status(slaveSaeId: string, options?: QkdCallOptions): Promise<QkdLinkStatus>;
  /** ETSI 014 Get key (enc_keys): new keys shared with `slaveSaeId`; this SAE is the master. */
  getKeys(slaveSaeId: string, request?: QkdKeyRequest, options?: QkdCallOptions): Promise<QkdKey[]>;
  /** ETSI 014 Get key with key IDs (dec_keys): keys that `masterSaeId` obtained for this SAE. */
  getKeysById(masterSaeId: string, keyIds: string[], options?: QkdCallOptions): Promise<QkdKey[]>;
  /** Closes pooled connections; pending calls reject with `canceled`. Idempotent. */
  close(): Promise<void>;
}
