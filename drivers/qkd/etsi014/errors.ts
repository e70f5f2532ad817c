import type { QkdErrorShape } from '../interface.js';

export type QkdErrorKind = QkdErrorShape['kind'];

/** The ETSI 014 call that failed; `status`, `enc_keys` and `dec_keys` as in the URL paths. */
export type QkdOperation = 'status' | 'enc_keys' | 'dec_keys';

/** Kinds for which a later retry may succeed, as `QkdErrorShape.retryable` documents. */
const RETRYABLE_KINDS: ReadonlySet<QkdErrorKind> = new Set([
  'unavailable',
  'gateway-timeout',
  'network',
  'timeout',
]);

/** Longest KME-supplied text kept in an error; KME bodies are untrusted and may be huge. */
const MAX_KME_TEXT = 500;

export interface QkdErrorOptions {
  status?: number;
  kmeMessage?: string;
  /** The `details` array of an ETSI 014 Error body, if the KME sent one. */
  kmeDetails?: Record<string, unknown>[];
  operation?: QkdOperation;
  kmeId?: string;
  /** Overrides the default for the kind (used when a retry would be unsafe, never to make it safe). */
  retryable?: boolean;
  cause?: unknown;
}

/**
 * The one error class the ETSI 014 client throws for call failures; see `QkdErrorShape` for the
 * meaning of `kind`. Messages name operations, statuses, sizes and key IDs, never key bytes.
 * Caller mistakes (a size that is not a multiple of 8, an empty ID list) are `TypeError` or
 * `RangeError` instead, thrown before anything is sent.
 */
export class QkdError extends Error implements QkdErrorShape {
  readonly kind: QkdErrorKind;
  readonly status?: number;
  readonly kmeMessage?: string;
  readonly kmeDetails?: Record<string, unknown>[];
  readonly operation?: QkdOperation;
  readonly kmeId?: string;
  readonly retryable: boolean;
  /**
   * Set on enc_keys/dec_keys failures after which the KME may have acted: a timeout, reset or
   * cancellation after the request was sent, a 5xx other than 503, or a 200 whose body broke the
   * standard. Keys may have been consumed on the KME; such calls are never retried automatically.
   */
  readonly maybeProcessed?: boolean;

  constructor(kind: QkdErrorKind, message: string, options: QkdErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'QkdError';
    this.kind = kind;
    if (options.status !== undefined) this.status = options.status;
    if (options.kmeMessage !== undefined) this.kmeMessage = options.kmeMessage;
    if (options.kmeDetails !== undefined) this.kmeDetails = options.kmeDetails;
    if (options.operation !== undefined) this.operation = options.operation;
    if (options.kmeId !== undefined) this.kmeId = options.kmeId;
    this.retryable = options.retryable ?? RETRYABLE_KINDS.has(kind);
  }
}

/** Flags an error as `maybeProcessed` (the client decides this after the error is built). */
export function markMaybeProcessed(error: QkdError): void {
  (error as { maybeProcessed?: boolean }).maybeProcessed = true;
}

/** Maps an HTTP status other than 200 to the error kind `QkdErrorShape` documents for it. */
export function kindForStatus(status: number): QkdErrorKind {
  switch (status) {
    case 400:
      return 'bad-request';
    case 401:
      return 'unauthorized';
    case 404:
      return 'not-found';
    case 405:
      return 'method-not-allowed';
    case 409:
      return 'conflict';
    case 412:
      return 'precondition-failed';
    case 422:
      return 'unprocessable';
    case 503:
      return 'unavailable';
    case 504:
      return 'gateway-timeout';
    default:
      return status >= 500 && status <= 599 ? 'server-error' : 'unexpected-status';
  }
}

/** What could be read out of a non-200 body: the ETSI Error fields or a FastAPI-style `detail`. */
export interface KmeErrorBody {
  message?: string;
  details?: Record<string, unknown>[];
}

/**
 * Reads the message of an error body. ETSI 014 §6.5 says `{message, details?}`; real KMEs built
 * on FastAPI answer `{"detail": "text"}` or `{"detail": [{loc, msg, type}, …]}`. Anything that is
 * not JSON (an HTML error page from a proxy) yields no message: its text is not the KME's word
 * and may be large.
 */
export function parseErrorBody(body: string): KmeErrorBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return {};
  }
  if (!isPlainObject(parsed)) return {};
  const out: KmeErrorBody = {};
  const text = typeof parsed.message === 'string' ? parsed.message : detailText(parsed.detail);
  if (text !== undefined && text.length > 0) out.message = cleanText(text);
  if (Array.isArray(parsed.details) && parsed.details.every(isPlainObject)) {
    out.details = parsed.details as Record<string, unknown>[];
  }
  return out;
}

function detailText(detail: unknown): string | undefined {
  if (detail === undefined || detail === null) return undefined;
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    const parts = detail.map((item) => {
      if (isPlainObject(item) && typeof item.msg === 'string') {
        const loc = Array.isArray(item.loc) ? item.loc.map(String).join('.') : undefined;
        return loc ? `${loc}: ${item.msg}` : item.msg;
      }
      return typeof item === 'string' ? item : JSON.stringify(item);
    });
    return parts.join('; ');
  }
  return JSON.stringify(detail);
}

/** Drops control characters (log injection) and bounds the length. */
function cleanText(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  const flat = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return flat.length > MAX_KME_TEXT ? `${flat.slice(0, MAX_KME_TEXT)}…` : flat;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
