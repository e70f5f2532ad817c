import { mlDsa65Sign, mlDsa65SignDeterministic, mlDsa65Verify, mlDsa65VerifyWithContext } from './index.js';

/**
 * How qkm separates the domains of its ML-DSA-65 signatures (one tag per signed structure:
 * DSA_CONTEXT in src/session/identity.ts, PREKEY_CONTEXT in src/governance/prekeys.ts).
 *
 * Since handshake v3 / bundle v2 a signature is ML-DSA-65 with the EMPTY FIPS 204 context over
 *     M = u8(len(tag)) ‖ tag ‖ message
 * (README, "Session protocol", signatures). Before, the tag was the FIPS 204 context string:
 * ML-DSA-65.Sign(sk, message, ctx = tag). Why the change: liboqs-js (the fast backend) signs
 * with the empty context only.
 *
 * The two forms cannot be confused with each other. FIPS 204 §5.2 signs M′ = 0 ‖ len(ctx) ‖
 * ctx ‖ M. The tagged form has ctx empty, so M′ = 0x00 ‖ 0x00 ‖ len(tag) ‖ tag ‖ message; the
 * legacy form has len(ctx) = len(tag) ≥ 1, so its second byte is never 0x00. No signature
 * in one form verifies in the other, nor across tags (every tag is length-prefixed, hence
 * prefix-free).
 *
 * `legacy: true` where a verifier must still read old signatures (audit logs, v1 identity
 * bundles, prekeys): the legacy form is verified with noble (slow) and only after the tagged one
 * failed. Signing always produces the tagged form.
 */

export type SignatureForm = 'tagged' | 'legacy-context';

const MAX_TAG_BYTES = 255;

/** Signatures accepted in the legacy (context-string) form since start. */
const counts = { legacyVerified: 0 };

export function legacyVerifications(): number {
  return counts.legacyVerified;
}

/** u8(len(tag)) ‖ tag ‖ message. */
export function taggedMessage(tag: Uint8Array, message: Uint8Array): Uint8Array {
  if (tag.length < 1 || tag.length > MAX_TAG_BYTES) throw new RangeError('a domain tag is 1-255 bytes');
  const out = new Uint8Array(1 + tag.length + message.length);
  out[0] = tag.length;
  out.set(tag, 1);
  out.set(message, 1 + tag.length);
  return out;
}

/** The tagged-form signature of `message` in domain `tag`. `deterministic`: vectors only. */
export function signTagged(
  tag: Uint8Array,
  message: Uint8Array,
  secretKey: Uint8Array,
  opts: { deterministic?: boolean } = {},
): Uint8Array {
  const m = taggedMessage(tag, message);
  return opts.deterministic ? mlDsa65SignDeterministic(m, secretKey) : mlDsa65Sign(m, secretKey);
}

/**
 * Which form `signature` verifies in, or undefined. `accept` lists the forms the caller reads
 * (default: the tagged form only). Never throws: malformed inputs give undefined.
 */
export function verifyTaggedForm(
  tag: Uint8Array,
  signature: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
  accept: readonly SignatureForm[] = ['tagged'],
): SignatureForm | undefined {
  try {
    if (accept.includes('tagged') && mlDsa65Verify(signature, taggedMessage(tag, message), publicKey)) {
      return 'tagged';
    }
    if (accept.includes('legacy-context') && mlDsa65VerifyWithContext(signature, message, publicKey, tag)) {
      counts.legacyVerified++;
      return 'legacy-context';
    }
  } catch {
    // A malformed input: not a valid signature in any form.
  }
  return undefined;
}

/** True iff `signature` verifies in one of the `accept`ed forms. */
export function verifyTagged(
  tag: Uint8Array,
  signature: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
  accept: readonly SignatureForm[] = ['tagged'],
): boolean {
  return verifyTaggedForm(tag, signature, message, publicKey, accept) !== undefined;
}
