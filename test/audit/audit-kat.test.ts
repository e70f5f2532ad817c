import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/types.js';
import { recordHash, sealMessage, verifyAuditLog } from '../../src/audit/verify.js';
import { usePqcBackend } from '../../src/pqc/index.js';
import { verifyTaggedForm } from '../../src/pqc/domain.js';
import { DSA_CONTEXT } from '../../src/session/identity.js';
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

  for (const backend of ['liboqs-wasm', 'noble'] as const) {
    it(`${backend}: the seal verifies in the tagged form; a pre-#13 seal (FIPS 204 context) still verifies`, async () => {
      await usePqcBackend(backend);
      try {
        const seal = file.records.find((r) => r.type === 'audit.seal')!;
        const d = seal.details as { signature: string; through_seq: number; through_hash: string };
        const message = sealMessage(d.through_seq, d.through_hash);
        const sig = (s: string) => new Uint8Array(Buffer.from(s, 'base64url'));
        expect(Buffer.from(message).toString('hex')).toBe(file.seal_message);
        const accept = ['tagged', 'legacy-context'] as const;
        expect(verifyTaggedForm(DSA_CONTEXT.audit, sig(d.signature), message, pk, accept)).toBe('tagged');
        expect(
          verifyTaggedForm(DSA_CONTEXT.audit, sig(file.legacy_context_signature), message, pk, accept),
        ).toBe('legacy-context');
        // Disjoint forms: neither signature verifies in the other form.
        expect(
          verifyTaggedForm(DSA_CONTEXT.audit, sig(d.signature), message, pk, ['legacy-context']),
        ).toBeUndefined();
        expect(
          verifyTaggedForm(DSA_CONTEXT.audit, sig(file.legacy_context_signature), message, pk),
        ).toBeUndefined();
        // A log written before the change (its seal in the legacy form) verifies whole. Records
        // after the seal chain from its hash, so the chain up to and including the seal is checked.
        const upToSeal = file.records
          .slice(0, seal.seq)
          .map((r) => JSON.parse(JSON.stringify(r)) as AuditRecord);
        const legacySeal = upToSeal.at(-1)!;
        (legacySeal.details as Record<string, unknown>).signature = file.legacy_context_signature;
        const { hash: _h, ...unhashed } = legacySeal;
        legacySeal.hash = recordHash(unhashed);
        expect(verifyAuditLog(upToSeal, pk)).toMatchObject({ ok: true, sealedThrough: d.through_seq });
      } finally {
        await usePqcBackend('noble');
      }
    });
  }
});
