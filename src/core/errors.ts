/**
 * The one error catalogue of the appliance. Every error that can reach an API caller is a
 * `QkmError` with a code from this table; the HTTP layer turns it into `{error, message}` with
 * the status given here. Messages are written for the caller and must never contain key
 * material, entropy bytes or token values — only sizes, ids and names.
 *
 * A test checks that every code here is documented in the README's error table.
 */
export const ERROR_CATALOGUE = {
  // --- caller mistakes (4xx) ---
  BAD_REQUEST: { status: 400, text: 'The request is malformed or fails its schema' },
  INVALID_PARAMETER: { status: 400, text: 'A parameter is out of range or of the wrong form' },
  UNAUTHORIZED: { status: 401, text: 'Missing or invalid bearer token' },
  FORBIDDEN: { status: 403, text: 'The token lacks the scope this route needs' },
  HOST_NOT_ALLOWED: {
    status: 421,
    text: 'The Host header does not name this appliance (DNS rebinding guard)',
  },
  NOT_FOUND: { status: 404, text: 'No such route or resource' },
  METHOD_NOT_ALLOWED: { status: 405, text: 'Method not allowed on this route' },
  NOT_ACCEPTABLE: { status: 406, text: 'None of the accepted media types can be produced' },
  PAYLOAD_TOO_LARGE: { status: 413, text: 'The request body exceeds the limit' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, text: 'The request body must be application/json' },
  RATE_LIMITED: { status: 429, text: 'Too many requests for this token' },
  KEY_NOT_FOUND: { status: 404, text: 'No key with this id' },
  KEY_ALREADY_TAKEN: { status: 410, text: 'The key was already taken; keys are single-use' },
  KEY_EXPIRED: { status: 410, text: 'The key has expired' },
  KEY_EXISTS: { status: 409, text: 'A key with this id already exists' },
  REQUEST_ABORTED: {
    status: 400,
    text: 'The connection closed before the answer could be written; nothing was committed',
  },
  REQUEST_TIMEOUT: { status: 408, text: 'The request (headers or body) did not arrive in time' },
  HEADERS_TOO_LARGE: { status: 431, text: 'The request headers exceed the limit' },
  SIMULATOR_ONLY: { status: 409, text: 'This control exists only in simulator mode' },
  AGENT_NOT_FOUND: { status: 404, text: 'No agent with this name' },
  AGENT_EXISTS: { status: 409, text: 'An agent with this name already exists' },
  PEER_NOT_FOUND: { status: 404, text: 'The peer is not pinned on this node' },
  PEER_EXISTS: { status: 409, text: 'A different identity is already pinned under this node id' },
  BUNDLE_INVALID: { status: 400, text: 'The identity bundle is malformed or its signature does not verify' },
  SESSION_NOT_FOUND: { status: 404, text: 'No session with this id' },
  LAST_ADMIN: { status: 409, text: 'Refusing to revoke the last agent with the admin scope without force' },
  HANDSHAKE_MALFORMED: { status: 400, text: 'The handshake message cannot be decoded' },
  HANDSHAKE_VERSION: { status: 400, text: 'The handshake version is not supported' },
  HANDSHAKE_BAD_SIGNATURE: {
    status: 401,
    text: 'The handshake signature does not verify against the pinned peer',
  },
  HANDSHAKE_UNKNOWN_PEER: {
    status: 403,
    text: 'The handshake comes from a node that is neither pinned nor vouched for by the Provider',
  },
  HANDSHAKE_WRONG_RECIPIENT: { status: 400, text: 'The handshake is addressed to another node' },
  HANDSHAKE_WRONG_AGENT: { status: 403, text: 'The handshake names another agent as its responder' },
  HANDSHAKE_STALE: { status: 400, text: 'The handshake timestamp is outside the accepted window' },
  HANDSHAKE_REPLAYED: { status: 409, text: 'The handshake nonce was already seen' },
  HANDSHAKE_DECAPSULATION: { status: 400, text: 'The KEM ciphertext does not decapsulate' },
  POSTURE_BELOW_MINIMUM: { status: 403, text: 'The offered posture is below the minimum for this peer' },
  POSTURE_NOT_PERMITTED: {
    status: 403,
    text: "The offered posture is not permitted by this node's jurisdiction rules",
  },
  CONFIRM_MISMATCH: { status: 400, text: 'The key-confirmation tag does not match' },
  AID_INVALID: { status: 400, text: 'The agent id is not of the form user@domain:name' },
  AID_EXISTS: { status: 409, text: 'Another agent of this node already has this agent id' },
  AID_NOT_FOUND: { status: 404, text: 'No agent of this node has this agent id' },
  POLICY_INVALID: { status: 400, text: 'The contact policy rules are malformed or ambiguous' },
  CONTACT_NO_RULE: { status: 403, text: "No rule of the responder's contact policy matches the initiator" },
  CONTACT_BLOCKED: { status: 403, text: "The responder's most specific matching rule blocks the initiator" },
  PREKEY_INVALID: {
    status: 400,
    text: 'The prekey is malformed, bound to another agent or its signature does not verify',
  },
  PREKEY_NOT_FOUND: { status: 404, text: 'No such prekey on this node' },
  PREKEY_CONSUMED: { status: 410, text: 'The one-time prekey was already used' },
  PREKEY_EXPIRED: { status: 410, text: 'The prekey has expired' },
  NODE_NOT_ENROLLED: { status: 403, text: 'The node is not enrolled with the Provider' },
  PREKEYS_EXHAUSTED: { status: 409, text: 'The responder agent has no prekey left at the Provider' },
  AGENT_NOT_GOVERNED: {
    status: 403,
    text: 'The calling agent has no governed id (qkm agent add --aid) and cannot take part in a governed session',
  },
  TOKEN_UNKNOWN: { status: 403, text: 'The access token is not known to this node' },
  TOKEN_STOLEN: { status: 403, text: 'The access token was issued to another agent' },
  TOKEN_EXPIRED: { status: 403, text: 'The access token has expired' },
  TOKEN_EXHAUSTED: { status: 429, text: "The access token's uses are spent" },
  TOKEN_INVALID: { status: 401, text: 'The access token or its resume proof does not verify' },
  TOKEN_REPLAYED: { status: 409, text: 'This resume request was already answered' },
  CONTACT_BUDGET_EXHAUSTED: {
    status: 429,
    text: 'The initiator has used its contact budget for this responder in this window',
  },
  PROVIDER_NOT_CONFIGURED: { status: 409, text: 'This node has no Provider configured (config provider)' },

  // --- the appliance cannot serve what was asked (5xx, never for bad input) ---
  QUANTUM_ENTROPY_UNAVAILABLE: {
    status: 503,
    text: 'No healthy quantum entropy source; quantum entropy was required',
  },
  ENTROPY_UNAVAILABLE: { status: 503, text: 'No entropy source can serve the request' },
  POSTURE_UNAVAILABLE: {
    status: 503,
    text: 'No admissible posture meets the minimum required for this peer',
  },
  QKD_UNAVAILABLE: { status: 503, text: 'The QKD link or its KME cannot deliver keys now' },
  STORE_UNAVAILABLE: { status: 503, text: 'The key store is not open' },
  PROVIDER_UNAVAILABLE: { status: 503, text: 'The Provider cannot be reached or did not answer in time' },
  PROVIDER_RESPONSE_INVALID: {
    status: 502,
    text: "The Provider's answer is unsigned, malformed or does not verify against the pinned Provider key",
  },
  INTERNAL: { status: 500, text: 'Internal error (details are in the appliance log)' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** An error that carries a catalogue code; safe to show to a caller. */
export class QkmError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message?: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(
      message ?? ERROR_CATALOGUE[code].text,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'QkmError';
    this.code = code;
    this.status = ERROR_CATALOGUE[code].status;
    this.details = options?.details;
  }
}

export function isQkmError(err: unknown, code?: ErrorCode): err is QkmError {
  return err instanceof QkmError && (code === undefined || err.code === code);
}
