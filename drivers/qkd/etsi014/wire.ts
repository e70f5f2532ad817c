/**
 * ETSI GS QKD 014 §6 wire formats: building request bodies and checking 200 bodies. A 200 body
 * that breaks the standard is a `protocol` error; its messages name fields, counts, sizes and
 * key IDs, never key bytes.
 */
import type { QkdKey, QkdKeyRequest, QkdLinkStatus } from '../interface.js';
import { decodeBase64Strict } from './base64.js';
import { isPlainObject, QkdError, type QkdOperation } from './errors.js';
import { EtsiStatusSchema } from './schemas.js';

/** RFC 9562 textual form, any version or variant (ETSI 014 §6.3 only says "UUID"). */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/** ETSI 014 §6.2 Key request, with the standard's field names; absent fields are omitted. */
export function keyRequestBody(request: QkdKeyRequest): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (request.number !== undefined) body.number = request.number;
  if (request.size !== undefined) body.size = request.size;
  if (request.additionalSlaveSaeIds !== undefined)
    body.additional_slave_SAE_IDs = request.additionalSlaveSaeIds;
  if (request.extensionMandatory !== undefined) body.extension_mandatory = request.extensionMandatory;
  if (request.extensionOptional !== undefined) body.extension_optional = request.extensionOptional;
  return body;
}

/** ETSI 014 §6.4 Key IDs. */
export function keyIdsBody(keyIds: readonly string[]): Record<string, unknown> {
  return { key_IDs: keyIds.map((id) => ({ key_ID: id })) };
}

/** The §6.1 fields every Status must carry (strings, then integers), from the one schema. */
const REQUIRED_STATUS: ReadonlySet<string> = new Set(EtsiStatusSchema.required);
const STATUS_FIELDS = Object.entries(EtsiStatusSchema.properties)
  .filter(([name]) => REQUIRED_STATUS.has(name))
  .map(([name, schema]) => [name, (schema as { type: string }).type] as const);

/** Checks an ETSI 014 §6.1 Status body and renames it; field checks only, no identity checks. */
export function parseStatus(body: unknown, kmeId: string): QkdLinkStatus {
  const fail = (what: string) => protocolError('status', kmeId, `status body ${what}`);
  if (!isPlainObject(body)) throw fail('is not a JSON object');
  for (const [name, type] of STATUS_FIELDS) {
    const value = body[name];
    if (type === 'string') {
      if (typeof value !== 'string') throw fail(`lacks the string field ${name}`);
    } else if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw fail(`lacks the non-negative integer field ${name}`);
    }
  }
  const extension = body.status_extension;
  if (extension !== undefined && !isPlainObject(extension))
    throw fail('has a status_extension that is not an object');
  const status: QkdLinkStatus = {
    sourceKmeId: body.source_KME_ID as string,
    targetKmeId: body.target_KME_ID as string,
    masterSaeId: body.master_SAE_ID as string,
    slaveSaeId: body.slave_SAE_ID as string,
    keySize: body.key_size as number,
    storedKeyCount: body.stored_key_count as number,
    maxKeyCount: body.max_key_count as number,
    maxKeyPerRequest: body.max_key_per_request as number,
    maxKeySize: body.max_key_size as number,
    minKeySize: body.min_key_size as number,
    maxSaeIdCount: body.max_SAE_ID_count as number,
  };
  if (extension !== undefined) status.statusExtension = extension;
  return status;
}

export interface KeyContainerExpectation {
  operation: QkdOperation;
  kmeId: string;
  /** Exact number of keys (enc_keys: `number`, default 1). */
  count?: number;
  /** Exact key IDs, in any order (dec_keys). The result follows this order. */
  keyIds?: readonly string[];
  /** Exact key size in bits; when absent, keys need only be non-empty and of one size. */
  sizeBits?: number;
}

/**
 * Checks an ETSI 014 §6.3 Key container: every `key_ID` a UUID and unique, every `key` strict
 * Base64 of exactly `sizeBits / 8` bytes, the asked number of keys or exactly the asked IDs.
 * On failure, wipes the keys already decoded before throwing.
 */
export function parseKeyContainer(body: unknown, expect: KeyContainerExpectation): QkdKey[] {
  const fail = (what: string) => protocolError(expect.operation, expect.kmeId, `key container ${what}`);
  if (!isPlainObject(body) || !Array.isArray(body.keys)) throw fail('lacks the keys array');
  const entries: unknown[] = body.keys;
  const expectedCount = expect.keyIds?.length ?? expect.count;
  if (expectedCount !== undefined && entries.length !== expectedCount) {
    throw fail(`holds ${entries.length} keys, ${expectedCount} were asked for`);
  }
  if (entries.length === 0) throw fail('holds no keys');
  const keys: QkdKey[] = [];
  try {
    const seen = new Set<string>();
    for (const [index, entry] of entries.entries()) {
      if (!isPlainObject(entry)) throw fail(`entry ${index} is not an object`);
      const keyId = entry.key_ID;
      if (!isUuid(keyId)) throw fail(`entry ${index} has no UUID key_ID`);
      const canonicalId = keyId.toLowerCase();
      if (seen.has(canonicalId)) throw fail(`repeats key_ID ${keyId}`);
      seen.add(canonicalId);
      if (typeof entry.key !== 'string') throw fail(`key ${keyId} has no key string`);
      const key = decodeBase64Strict(entry.key);
      if (key === undefined) throw fail(`key ${keyId} is not canonical standard Base64`);
      keys.push({ keyId, key });
      if (expect.sizeBits !== undefined && key.length * 8 !== expect.sizeBits) {
        throw fail(`key ${keyId} is ${key.length * 8} bits, ${expect.sizeBits} were asked for`);
      }
      if (key.length === 0) throw fail(`key ${keyId} is empty`);
      const first = keys[0]!;
      if (expect.sizeBits === undefined && expect.keyIds === undefined && key.length !== first.key.length) {
        throw fail(`mixes key sizes (${first.key.length * 8} and ${key.length * 8} bits)`);
      }
    }
    if (expect.keyIds !== undefined) return inAskedOrder(keys, expect.keyIds, fail);
    return keys;
  } catch (error) {
    wipe(keys);
    throw error;
  }
}

function inAskedOrder(keys: QkdKey[], keyIds: readonly string[], fail: (what: string) => QkdError): QkdKey[] {
  const byId = new Map(keys.map((k) => [k.keyId.toLowerCase(), k]));
  return keyIds.map((id) => {
    const key = byId.get(id.toLowerCase());
    if (key === undefined) throw fail(`lacks the asked key_ID ${id}`);
    return key;
  });
}

export function wipe(keys: readonly QkdKey[]): void {
  for (const k of keys) k.key.fill(0);
}

function protocolError(operation: QkdOperation, kmeId: string, message: string): QkdError {
  return new QkdError('protocol', `${operation}: ${message}`, { operation, kmeId, status: 200 });
}
