/**
 * Checks of ETSI 014 request bodies and query strings, turning them into plain values or an
 * {@link EtsiHttpError} 400. Order of the size checks: type, then "multiple of 8" (the message the
 * standard requires), then the [min_key_size, max_key_size] range.
 */
import { badRequest, SPEC_MESSAGES } from './errors.js';
import type { KmeLimits } from './types.js';

export interface ParsedKeyRequest {
  number: number;
  /** Bits. */
  size: number;
  additionalSlaves: string[];
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function checkNumber(n: unknown, limits: KmeLimits): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
    throw badRequest('number shall be a positive integer');
  }
  if (n > limits.maxKeyPerRequest) {
    throw badRequest(`number shall not exceed max_key_per_request (${limits.maxKeyPerRequest})`, [
      { max_key_per_request: limits.maxKeyPerRequest },
    ]);
  }
  return n;
}

function checkSize(s: unknown, limits: KmeLimits): number {
  if (typeof s !== 'number' || !Number.isInteger(s))
    throw badRequest('size shall be an integer number of bits');
  if (s % 8 !== 0) throw badRequest(SPEC_MESSAGES.sizeNotMultipleOf8);
  if (s < limits.minKeySize || s > limits.maxKeySize) {
    throw badRequest(
      `size shall be between min_key_size (${limits.minKeySize}) and max_key_size (${limits.maxKeySize})`,
      [{ min_key_size: limits.minKeySize }, { max_key_size: limits.maxKeySize }],
    );
  }
  return s;
}

function checkExtensions(v: unknown, field: string): Record<string, unknown>[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every(isObject)) throw badRequest(`${field} shall be an array of objects`);
  return v;
}

/**
 * §6.2 Key request (POST enc_keys). `body` is the parsed JSON, or undefined for an empty body
 * (the standard allows it: all defaults). Fields the standard does not define are ignored.
 * `extension_mandatory`: this KME supports no extension, so any entry → 400 with the standard's
 * message and the unsupported names in `details`. `extension_optional` is accepted and ignored
 * (§5.3 allows answering 200 and ignoring them).
 */
export function parseKeyRequest(body: unknown, limits: KmeLimits, defaultSize: number): ParsedKeyRequest {
  if (body === undefined) return { number: 1, size: defaultSize, additionalSlaves: [] };
  if (!isObject(body)) throw badRequest('Key request shall be a JSON object');
  const mandatory = checkExtensions(body.extension_mandatory, 'extension_mandatory');
  checkExtensions(body.extension_optional, 'extension_optional');
  if (mandatory.length > 0) {
    throw badRequest(
      SPEC_MESSAGES.extensionMandatoryUnsupported,
      mandatory.flatMap((ext) => Object.keys(ext)).map((name) => ({ unsupported: name })),
    );
  }
  const number = body.number === undefined ? 1 : checkNumber(body.number, limits);
  const size = body.size === undefined ? defaultSize : checkSize(body.size, limits);
  const additionalSlaves = parseAdditionalSlaves(body.additional_slave_SAE_IDs, limits);
  return { number, size, additionalSlaves };
}

function parseAdditionalSlaves(v: unknown, limits: KmeLimits): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw badRequest('additional_slave_SAE_IDs shall be an array of strings');
  }
  if (v.length > limits.maxSaeIdCount) {
    throw badRequest(`additional_slave_SAE_IDs shall not exceed max_SAE_ID_count (${limits.maxSaeIdCount})`, [
      { max_SAE_ID_count: limits.maxSaeIdCount },
    ]);
  }
  if (new Set(v).size !== v.length) throw badRequest('additional_slave_SAE_IDs contains duplicates');
  return v as string[];
}

/** A query parameter that must appear at most once, as a decimal integer. */
function queryInteger(query: Record<string, unknown>, name: string): number | undefined {
  const v = query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^[0-9]{1,9}$/.test(v)) {
    throw badRequest(`${name} shall be given once, as a decimal integer`);
  }
  return Number(v);
}

/** The simple GET form of enc_keys: `?number=N&size=S`, both optional; other parameters are ignored. */
export function parseKeyRequestQuery(
  query: Record<string, unknown>,
  limits: KmeLimits,
  defaultSize: number,
): ParsedKeyRequest {
  const number = queryInteger(query, 'number');
  const size = queryInteger(query, 'size');
  return {
    number: number === undefined ? 1 : checkNumber(number, limits),
    size: size === undefined ? defaultSize : checkSize(size, limits),
    additionalSlaves: [],
  };
}

/** §6.4 Key IDs (POST dec_keys). At least one ID, at most `max_key_per_request`. */
export function parseKeyIds(body: unknown, limits: KmeLimits): string[] {
  if (!isObject(body)) throw badRequest('Key IDs shall be a JSON object with key_IDs');
  const list = body.key_IDs;
  if (!Array.isArray(list) || list.length === 0) throw badRequest('key_IDs shall be a non-empty array');
  if (list.length > limits.maxKeyPerRequest) {
    throw badRequest(`key_IDs shall not exceed max_key_per_request (${limits.maxKeyPerRequest})`, [
      { max_key_per_request: limits.maxKeyPerRequest },
    ]);
  }
  return list.map((entry) => {
    if (!isObject(entry) || typeof entry.key_ID !== 'string') {
      throw badRequest('each key_IDs entry shall be an object with a key_ID string');
    }
    return entry.key_ID;
  });
}

/** The simple GET form of dec_keys: exactly one `key_ID`. */
export function parseKeyIdQuery(query: Record<string, unknown>): string[] {
  const v = query.key_ID;
  if (typeof v !== 'string' || v.length === 0)
    throw badRequest('exactly one key_ID query parameter is required');
  return [v];
}
