import type { QkdLinkStatus } from '../interface.js';
import type { QkdError, QkdErrorKind } from './errors.js';

/** What `qkm status` and the metrics show for one KME connection. A snapshot; never key bytes. */
export interface Etsi014Health {
  /**
   * Whether the last finished call found the KME able to serve: it succeeded, or the KME
   * answered it with a 4xx that blames the request (e.g. 400 for an unknown key ID). False
   * before the first call, and after a transport, TLS, protocol, 401 or 5xx failure.
   * A canceled call leaves it unchanged.
   */
  up: boolean;
  lastError?: { kind: QkdErrorKind; status?: number; message: string; at: Date };
  /** The last Status a `status()` call returned. */
  lastStatus?: QkdLinkStatus;
  lastOkAt?: Date;
  counters: {
    /** HTTP requests sent, retries included. */
    requests: number;
    /** HTTP requests that failed (any kind but `canceled`), retries included. */
    failures: number;
    /** Keys returned to callers by `getKeys` and `getKeysById`. */
    keysFetched: number;
  };
}

/** Kinds that say the KME link is not usable now, as opposed to a wrong request. */
const DOWN_KINDS: ReadonlySet<QkdErrorKind> = new Set([
  'network',
  'timeout',
  'tls',
  'protocol',
  'unauthorized',
  'unavailable',
  'server-error',
  'gateway-timeout',
]);

/** Mutable tracker behind `Etsi014Client.health()`. */
export class HealthTracker {
  private state: Etsi014Health = { up: false, counters: { requests: 0, failures: 0, keysFetched: 0 } };

  /** The last Status seen (not a copy: read it, do not change it). */
  get lastStatus(): Readonly<QkdLinkStatus> | undefined {
    return this.state.lastStatus;
  }

  requestSent(): void {
    this.state.counters.requests++;
  }

  requestFailed(error: QkdError): void {
    if (error.kind !== 'canceled') this.state.counters.failures++;
  }

  callSucceeded(keys: number, status?: QkdLinkStatus): void {
    this.state.up = true;
    this.state.lastOkAt = new Date();
    this.state.counters.keysFetched += keys;
    if (status !== undefined) this.state.lastStatus = status;
  }

  callFailed(error: QkdError): void {
    if (error.kind === 'canceled') return;
    this.state.up = !DOWN_KINDS.has(error.kind);
    this.state.lastError = {
      kind: error.kind,
      ...(error.status === undefined ? {} : { status: error.status }),
      message: error.message,
      at: new Date(),
    };
  }

  snapshot(): Etsi014Health {
    const s = this.state;
    const out: Etsi014Health = { up: s.up, counters: { ...s.counters } };
    if (s.lastError !== undefined) out.lastError = { ...s.lastError };
    if (s.lastStatus !== undefined) out.lastStatus = structuredClone(s.lastStatus);
    if (s.lastOkAt !== undefined) out.lastOkAt = s.lastOkAt;
    return out;
  }
}
