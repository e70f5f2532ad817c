import { sha3_256 } from '@noble/hashes/sha3.js';
import { signTagged, verifyTagged } from '../pqc/domain.js';
import { ML_DSA_65_LENGTHS } from '../pqc/index.js';
import { encodeFields, fromBase64url, str, toBase64url } from '../session/encoding.js';

/**
 * How nodes and the Provider authenticate each other over plain loopback HTTP (qkm/v2 provider).
 *
 * Requests of enrolled nodes are signed with the node's ML-DSA-65 identity key — the same key
 * the administrator enrolled, so enrolment *is* the credential and there is no token to leak or
 * rotate separately:
 *
 *   sign_node("qkm/v2 provider-request" ‖ method ‖ path ‖ node_id ‖ timestamp ‖ nonce ‖ SHA3-256(body))
 *
 * (fields length-prefixed, `encodeFields`; signed in the tagged form of src/pqc/domain.ts with
 * tag "qkm/v2 provider-request", on the process's PQC backend: liboqs by default). The
 * Provider accepts a timestamp within ±`skew` of its clock and each (node, nonce) once.
 *
 * Every Provider response is signed with the Provider's ML-DSA-65 key, bound to the request's
 * nonce so an old answer cannot be replayed as the answer to a new request:
 *
 *   sign_provider("qkm/v2 provider-response" ‖ method ‖ path ‖ nonce ‖ status ‖ SHA3-256(body))
 *
 * Nodes pin the Provider's public key (config `provider.publicKey`) and drop any answer whose
 * signature does not verify, so the Provider vouches for the peers it introduces (their
 * identity bundles and prekeys) and nodes need not pin each peer by hand.
 */

export const HEADER = {
  node: 'qkm-node',
  timestamp: 'qkm-timestamp',
  nonce: 'qkm-nonce',
  signature: 'qkm-signature',
  response: 'qkm-provider-signature',
} as const;

export const REQUEST_CONTEXT = str('qkm/v2 provider-request');
export const RESPONSE_CONTEXT = str('qkm/v2 provider-response');
/** base64url of 16 to 64 random bytes. */
export const NONCE_RE = /^[A-Za-z0-9_-]{22,86}$/;

export interface RequestSigningInput {
  method: string;
  /** Path and query exactly as sent (`/v1/agents/bob%40example.com%3Acal`). */
  path: string;
  nodeId: string;
  timestamp: string;
  nonce: string;
  body: Uint8Array;
}

export function requestSigningBytes(r: RequestSigningInput): Uint8Array {
  return encodeFields([
    REQUEST_CONTEXT,
    str(r.method.toUpperCase()),
    str(r.path),
    str(r.nodeId),
    str(r.timestamp),
    str(r.nonce),
    sha3_256(r.body),
  ]);
}

export interface ResponseSigningInput {
  method: string;
  path: string;
  nonce: string;
  status: number;
  body: Uint8Array;
}

export function responseSigningBytes(r: ResponseSigningInput): Uint8Array {
  return encodeFields([
    RESPONSE_CONTEXT,
    str(r.method.toUpperCase()),
    str(r.path),
    str(r.nonce),
    str(String(r.status)),
    sha3_256(r.body),
  ]);
}

export function signRequest(r: RequestSigningInput, secretKey: Uint8Array): string {
  return toBase64url(signTagged(REQUEST_CONTEXT, requestSigningBytes(r), secretKey));
}

export function verifyRequest(r: RequestSigningInput, signature: string, publicKey: Uint8Array): boolean {
  try {
    const sig = fromBase64url(signature, 'signature');
    if (sig.length !== ML_DSA_65_LENGTHS.signature) return false;
    return verifyTagged(REQUEST_CONTEXT, sig, requestSigningBytes(r), publicKey);
  } catch {
    return false;
  }
}

export function signResponse(r: ResponseSigningInput, secretKey: Uint8Array): string {
  return toBase64url(signTagged(RESPONSE_CONTEXT, responseSigningBytes(r), secretKey));
}

export function verifyResponse(r: ResponseSigningInput, signature: string, publicKey: Uint8Array): boolean {
  try {
    const sig = fromBase64url(signature, 'signature');
    if (sig.length !== ML_DSA_65_LENGTHS.signature) return false;
    return verifyTagged(RESPONSE_CONTEXT, sig, responseSigningBytes(r), publicKey);
  } catch {
    return false;
  }
}
