import type { QkdKey } from '../../drivers/qkd/interface.js';
import type { SessionContext } from './context.js';
import { DEFAULT_QKD_FALLBACK_TIMEOUT_MS, DEFAULT_QKD_TIMEOUT_MS } from './context.js';
import type { Peer } from './peers.js';
import { QKD_KEY_BITS } from './transcript.js';

/** The QKD leg of a session: enc_keys on the initiator, and wiping keys nobody will use. */

/**
 * For a QKD key request whose keys are no longer wanted (the handshake failed after it was sent):
 * keys the KME hands out anyway are wiped when they arrive.
 */
export function wipeWhenArrived(request: Promise<QkdKey[]> | undefined): void {
  request?.then(
    (keys) => {
      for (const k of keys) k.key.fill(0);
    },
    () => undefined,
  );
}

/** QKD error kinds for which the KME gave no answer: a status re-check would only wait again. */
export const UNREACHABLE_KME = new Set(['network', 'timeout', 'gateway-timeout', 'tls', 'canceled']);

/**
 * enc_keys for one key. When the session may fall back, a KME that cannot serve at once is not
 * retried and is waited for only up to the fallback deadline; with a QKD minimum the driver's
 * retries and the full deadline apply, since the alternative is a refusal.
 */
export async function fetchQkdKeys(ctx: SessionContext, peer: Peer, mayFallBack: boolean): Promise<QkdKey[]> {
  const full = ctx.o.qkdTimeoutMs ?? DEFAULT_QKD_TIMEOUT_MS;
  const keys = await ctx.o.qkd!.getKeys(
    peer.saeId!,
    { number: 1, size: QKD_KEY_BITS },
    mayFallBack
      ? {
          timeoutMs: Math.min(full, ctx.o.qkdFallbackTimeoutMs ?? DEFAULT_QKD_FALLBACK_TIMEOUT_MS),
          retries: 0,
        }
      : { timeoutMs: full },
  );
  if (keys.length !== 1 || keys[0]!.key.length !== QKD_KEY_BITS / 8 || !keys[0]!.keyId) {
    const err = new Error('KME returned an unexpected key set') as Error & { kind: string };
    err.kind = 'protocol';
    throw err;
  }
  return keys;
}
