import { QkmError } from '../core/errors.js';

function levelCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

function causeCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'cause' in err ? levelCode(err.cause) : undefined;
}

/** True when a LevelDB open failed because another process (or instance) holds the directory lock. */
export function isLockedError(err: unknown): boolean {
  return levelCode(err) === 'LEVEL_LOCKED' || causeCode(err) === 'LEVEL_LOCKED';
}

/**
 * Maps `abstract-level` / `classic-level` errors (codes `LEVEL_*`) to QkmError STORE_UNAVAILABLE
 * with an operator-readable message; QkmErrors pass through; anything else is rethrown as is.
 */
export function toStoreError(err: unknown, path: string): unknown {
  if (err instanceof QkmError) return err;
  const code = levelCode(err);
  if (code === undefined || !code.startsWith('LEVEL_')) return err;
  if (isLockedError(err)) {
    return new QkmError(
      'STORE_UNAVAILABLE',
      `The LevelDB store at ${path} is locked: data dir in use by another qkm process?`,
      { cause: err, details: { path, reason: 'locked' } },
    );
  }
  if (code === 'LEVEL_DATABASE_NOT_OPEN' && causeCode(err) === undefined) {
    return new QkmError('STORE_UNAVAILABLE', `The LevelDB store at ${path} is not open`, {
      cause: err,
      details: { path, reason: 'not-open' },
    });
  }
  const detail = causeCode(err) ?? code;
  return new QkmError('STORE_UNAVAILABLE', `The LevelDB store at ${path} failed (${detail})`, {
    cause: err,
    details: { path, reason: detail },
  });
}

/** Runs a LevelDB operation, mapping its errors with `toStoreError`. */
export async function levelOp<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toStoreError(err, path);
  }
}
