/**
 * Argument rules shared by every RecordStore implementation: namespace names and record keys.
 * Misuse here is a programming error, so it throws TypeError (not a caller-facing QkmError).
 */

const NAMESPACE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

export function checkNamespace(namespace: unknown): string {
  if (typeof namespace !== 'string' || !NAMESPACE.test(namespace)) {
    throw new TypeError(
      'record namespace must be 1-64 characters of a-z, 0-9, _ . - (starting alphanumeric)',
    );
  }
  return namespace;
}

export function checkRecordKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0)
    throw new TypeError('record key must be a non-empty string');
  return key;
}

/** Values are stored as JSON; `undefined` (and functions, symbols) have no JSON form. */
export function toJson(value: unknown): string {
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError('record value must be JSON-serialisable');
  return json;
}

/** Byte order of the keys' UTF-8 encodings: the order LevelDB iterates in. */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The `limit` of an `entries` call: undefined (all) or a positive safe integer. */
export function checkLimit(limit: unknown): number | undefined {
  if (limit === undefined) return undefined;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1)
    throw new TypeError('entries limit must be a positive integer');
  return limit;
}
