import type { AuditValue } from './types.js';

/**
 * Canonical JSON after RFC 8785 (JCS) for the values the audit log holds (strings, finite
 * numbers, booleans, null, arrays, plain objects): object members sorted by UTF-16 code units,
 * no whitespace, ECMAScript number and string serialisation — which is what JSON.stringify does
 * for a single primitive, so only the member order needs handling here.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('canonical JSON has no form for non-finite numbers');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  throw new TypeError(`canonical JSON has no form for ${typeof value}`);
}

// Field names whose values are secrets by convention. `key_id`, `qkd_key_ids` etc. stay: ids are not secrets.
const SECRET_NAME =
  /^(key|keys|secret|secret_?key|private_?key|seed|seeds|token|tokens|password|material|shared_?secret|ikm|prk|entropy|bytes)$/i;
const SECRET_SUFFIX = /(_secret|_token|_seed|_material|_password|_private_key)$/i;

/**
 * Defence in depth for `details`: converts to plain JSON values, replaces byte arrays with a
 * size note and fields named like secrets with "[redacted]", so a careless caller cannot write
 * key material into the permanent log.
 */
export function sanitizeDetails(details: Record<string, unknown> | undefined): Record<string, AuditValue> {
  return sanitizeObject(details ?? {}, 0);
}

function sanitizeObject(details: Record<string, unknown>, depth: number): Record<string, AuditValue> {
  const out: Record<string, AuditValue> = {};
  for (const [k, v] of Object.entries(details)) {
    if (v === undefined) continue;
    out[k] = SECRET_NAME.test(k) || SECRET_SUFFIX.test(k) ? '[redacted]' : toValue(v, depth);
  }
  return out;
}

function toValue(v: unknown, depth: number): AuditValue {
  if (depth > 8) return '[too deep]';
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
    return `[${(v as ArrayBuffer).byteLength} bytes redacted]`;
  }
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map((x) => toValue(x, depth + 1));
  if (typeof v === 'object') return sanitizeObject(v as Record<string, unknown>, depth + 1);
  return String(typeof v);
}
