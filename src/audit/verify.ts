import { createHash } from 'node:crypto';
import { verifyTagged } from '../pqc/domain.js';
import { encodeFields, fromBase64url, fromHex, str, u64 } from '../session/encoding.js';
import { DSA_CONTEXT, nodeIdOf } from '../session/identity.js';
import { canonicalJson } from './canonical.js';
import { type AuditRecord, type AuditVerifyResult, SEAL_TYPE, UNSEALED_TAIL_TYPE } from './types.js';

/**
 * Offline verification of an exported audit log. Pure: needs only the records and the node's
 * ML-DSA-65 public key(s) (several after an identity rotation).
 */

export const GENESIS_HASH = '0'.repeat(64);

/** hash = hex SHA3-256(canonical JSON of the record without `hash`). */
export function recordHash(rec: Omit<AuditRecord, 'hash'> & { hash?: string }): string {
  const { hash: _omit, ...rest } = rec;
  // OpenSSL's SHA3-256 (node:crypto): same digest, a tenth of the time of the JavaScript one.
  return createHash('sha3-256').update(canonicalJson(rest), 'utf8').digest('hex');
}

/** The bytes a seal signs: fields("qkm/v1 audit-seal", u64(through_seq), SHA3 digest bytes). */
export function sealMessage(throughSeq: number, throughHash: string): Uint8Array {
  return encodeFields([str('qkm/v1 audit-seal'), u64(throughSeq), fromHex(throughHash)]);
}

const RECORD_KEYS = ['v', 'seq', 'id', 'id_source', 'at', 'type', 'actor', 'details', 'prev_hash', 'hash'];
const HEX64 = /^[0-9a-f]{64}$/;

function shapeError(r: unknown): string | undefined {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return 'not an object';
  const o = r as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length !== RECORD_KEYS.length || !RECORD_KEYS.every((k) => k in o)) return 'unexpected fields';
  if (o.v !== 1) return 'unknown record version';
  if (!Number.isSafeInteger(o.seq)) return 'seq is not an integer';
  if (typeof o.id !== 'string' || !/^[0-9a-f]{32}$/.test(o.id)) return 'bad id';
  if (o.id_source !== 'quantum' && o.id_source !== 'os') return 'bad id_source';
  if (typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at))) return 'bad timestamp';
  if (typeof o.type !== 'string' || typeof o.actor !== 'string') return 'bad type or actor';
  if (typeof o.details !== 'object' || o.details === null || Array.isArray(o.details)) return 'bad details';
  if (typeof o.prev_hash !== 'string' || !HEX64.test(o.prev_hash)) return 'bad prev_hash';
  if (typeof o.hash !== 'string' || !HEX64.test(o.hash)) return 'bad hash';
  return undefined;
}

export interface VerifyOptions {
  /**
   * Fail when records after the last seal exist, or records an `audit.unsealed_tail_found`
   * names (default false: report them as `unsealed` / `unattested`).
   */
  requireSealed?: boolean;
}

/**
 * Checks the chain from seq 1: consecutive seqs, each prev_hash equal to the previous hash
 * (genesis: 64 zeros), each hash recomputed, every seal's signature against a given key and
 * its `through_*` fields equal to the record it follows. Returns the first broken seq and why.
 * Limits (inherent to any hash chain without an external anchor): removing records from the
 * END back to a seal is only visible as a shorter log; compare `count` with what you expect.
 */
export function verifyAuditLog(
  records: readonly unknown[],
  publicKey: Uint8Array | readonly Uint8Array[],
  opts: VerifyOptions = {},
): AuditVerifyResult {
  const keys = new Map<string, Uint8Array>();
  for (const pk of publicKey instanceof Uint8Array ? [publicKey] : publicKey) keys.set(nodeIdOf(pk), pk);
  let prev = GENESIS_HASH;
  let sealedThrough = 0;
  let lastSealIndex = -1;
  const unattested: Array<{ from_seq: number; through_seq: number }> = [];
  for (let i = 0; i < records.length; i++) {
    const expected = i + 1;
    const raw = records[i];
    const shape = shapeError(raw);
    if (shape) return { ok: false, seq: expected, reason: `record ${expected}: ${shape}` };
    const rec = raw as AuditRecord;
    if (rec.seq !== expected) {
      return {
        ok: false,
        seq: expected,
        reason: `expected seq ${expected}, found ${rec.seq} (deleted or reordered)`,
      };
    }
    if (rec.prev_hash !== prev) {
      return { ok: false, seq: expected, reason: 'prev_hash does not match the previous record' };
    }
    let h: string;
    try {
      h = recordHash(rec);
    } catch {
      return { ok: false, seq: expected, reason: 'record cannot be canonicalised' };
    }
    if (h !== rec.hash)
      return { ok: false, seq: expected, reason: 'hash does not match the record content (edited)' };
    if (rec.type === SEAL_TYPE) {
      const why = checkSeal(rec, prev, keys);
      if (why) return { ok: false, seq: expected, reason: why };
      sealedThrough = rec.seq - 1;
      lastSealIndex = i;
    }
    if (rec.type === UNSEALED_TAIL_TYPE) {
      const d = rec.details as Record<string, unknown>;
      if (Number.isSafeInteger(d.from_seq) && Number.isSafeInteger(d.through_seq)) {
        unattested.push({ from_seq: d.from_seq as number, through_seq: d.through_seq as number });
      }
    }
    prev = rec.hash;
  }
  const unsealed = records.length - (lastSealIndex + 1);
  if (opts.requireSealed && unsealed > 0) {
    return {
      ok: false,
      seq: lastSealIndex + 2,
      reason: `${unsealed} record(s) after the last seal are not signed`,
    };
  }
  if (opts.requireSealed && unattested.length) {
    const r = unattested[0]!;
    return {
      ok: false,
      seq: r.from_seq,
      reason: `records ${r.from_seq}-${r.through_seq} were found unsealed when the log was opened; no seal vouches for them`,
    };
  }
  return {
    ok: true,
    count: records.length,
    sealedThrough,
    unsealed,
    ...(unattested.length ? { unattested } : {}),
  };
}

function checkSeal(rec: AuditRecord, prev: string, keys: Map<string, Uint8Array>): string | undefined {
  const d = rec.details as Record<string, unknown>;
  if (d.through_seq !== rec.seq - 1 || d.through_hash !== prev)
    return 'seal does not cover the record before it';
  if (typeof d.signer !== 'string' || typeof d.signature !== 'string')
    return 'seal lacks signer or signature';
  const pk = keys.get(d.signer);
  if (!pk) return `seal signed by ${d.signer}, not one of the given keys`;
  let ok = false;
  try {
    ok = verifySeal(fromBase64url(d.signature), sealMessage(rec.seq - 1, prev), pk);
  } catch {
    ok = false;
  }
  return ok ? undefined : 'seal signature does not verify';
}

/**
 * A seal's signature: the domain-tagged form (seals signed since issue #13), or the legacy form
 * under the FIPS 204 context "qkm/v1 audit-seal" (logs written before it). The forms are
 * disjoint (src/pqc/domain.ts), so accepting both admits no new forgery; seals carry no
 * version, so the form is found by trying the tagged one (fast) first.
 */
export function verifySeal(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  return verifyTagged(DSA_CONTEXT.audit, signature, message, publicKey, ['tagged', 'legacy-context']);
}

/**
 * The first break in `records` read as a chain continuing from `prevHash` at `firstSeq`
 * (consecutive seqs, prev_hash links, recomputed hashes), or undefined. No seal checks.
 */
export function chainError(
  records: readonly AuditRecord[],
  prevHash: string,
  firstSeq: number,
): string | undefined {
  let prev = prevHash;
  for (let i = 0; i < records.length; i++) {
    const rec = records[i]!;
    if (shapeError(rec)) return `record ${firstSeq + i}: ${shapeError(rec)}`;
    if (rec.seq !== firstSeq + i) return `expected seq ${firstSeq + i}, found ${rec.seq}`;
    if (rec.prev_hash !== prev) return `record ${rec.seq}: prev_hash does not match the previous record`;
    let h: string | undefined;
    try {
      h = recordHash(rec);
    } catch {
      h = undefined;
    }
    if (h !== rec.hash) return `record ${rec.seq}: hash does not match the record content`;
    prev = rec.hash;
  }
  return undefined;
}

/** One canonical JSON record per line (the export format of `qkm audit export`). */
export function toJsonLines(records: readonly AuditRecord[]): string {
  return records.map((r) => canonicalJson(r)).join('\n') + (records.length ? '\n' : '');
}

/** Parses JSON lines (blank lines ignored). Throws SyntaxError with the line number. */
export function parseJsonLines(text: string): unknown[] {
  const out: unknown[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      throw new SyntaxError(`audit export line ${i + 1} is not JSON`);
    }
  }
  return out;
}
