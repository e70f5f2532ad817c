import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/types.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { generateAuditKat } from './audit-kat.js';

const file = JSON.parse(
  readFileSync(new URL('../vectors/audit-chain-kat.json', import.meta.url), 'utf8'),
) as ReturnType<typeof generateAuditKat>;
const pk = new Uint8Array(Buffer.from(file.signer_public_key, 'base64url'));

describe('audit chain known-answer vector (test/vectors/audit-chain-kat.json)', () => {
  it('recomputes every value from the inputs', () => {
    expect(JSON.parse(JSON.stringify(generateAuditKat()))).toEqual(file);
  });

  it('each hash is SHA3-256 of the given canonical JSON (node:crypto), chained by prev_hash', () => {
    file.records.forEach((r: AuditRecord, i: number) => {
      expect(createHash('sha3-256').update(file.canonical_json[i]!, 'utf8').digest('hex')).toBe(r.hash);
      expect(r.prev_hash).toBe(i === 0 ? '0'.repeat(64) : file.records[i - 1]!.hash);
    });
  });

  it('verifies, reporting the unsealed and unattested records; one edited byte breaks it', () => {
    expect(verifyAuditLog(file.records, pk)).toEqual(file.expected_verify);
    const edited = JSON.parse(JSON.stringify(file.records)) as AuditRecord[];
    (edited[1]!.details as Record<string, unknown>).name = 'mallory';
    expect(verifyAuditLog(edited, pk)).toMatchObject({ ok: false, seq: 2 });
  });
});
