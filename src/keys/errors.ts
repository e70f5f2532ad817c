import { QkmError } from '../core/errors.js';

/**
 * Why the key-encryption key file was refused. Each reason is a distinct operator action:
 * fix the permissions, restore the right file, or remove a half-written one.
 */
export type KekProblem =
  | 'insecure-permissions'
  | 'wrong-size'
  | 'not-a-file'
  | 'wrong-owner'
  | 'wrong-key'
  | 'io';

/**
 * The key-encryption key cannot be used. Code STORE_UNAVAILABLE: the appliance refuses to start
 * rather than run with a key that others can read. The message names the file and what is wrong
 * with it (mode, size, owner) — never any key bytes.
 */
export class KekError extends QkmError {
  readonly kek = true;
  readonly problem: KekProblem;
  readonly path: string;

  constructor(problem: KekProblem, path: string, message: string, options?: { cause?: unknown }) {
    super('STORE_UNAVAILABLE', message, { ...options, details: { problem, path } });
    this.name = 'KekError';
    this.problem = problem;
    this.path = path;
  }
}

/**
 * Stored key material failed authentication (AES-GCM tag mismatch, unknown format version, or
 * material missing for an active key): the store was tampered with or is corrupt. Code INTERNAL —
 * the caller did nothing wrong, and the appliance must not return unauthenticated bytes.
 * The key's state is left unchanged so an operator can inspect it.
 */
export class StoreIntegrityError extends QkmError {
  readonly integrity = true;
  readonly keyId: string | undefined;

  constructor(message: string, keyId?: string, options?: { cause?: unknown }) {
    super('INTERNAL', message, { ...options, details: keyId === undefined ? {} : { id: keyId } });
    this.name = 'StoreIntegrityError';
    this.keyId = keyId;
  }
}
