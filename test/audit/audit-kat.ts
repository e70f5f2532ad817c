import { shake256 } from '@noble/hashes/sha3.js';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { canonicalJson } from '../../src/audit/canonical.js';
import type { AuditRecord } from '../../src/audit/types.js';
import { GENESIS_HASH, recordHash, sealMessage } from '../../src/audit/verify.js';
import { nodeIdOf } from '../../src/session/identity.js';

/**
 * Known-answer vector for the audit chain (test/vectors/audit-chain-kat.json): three events, a
 * seal, one more event and the record that flags an unsealed tail. Fixed inputs (ids, times,
 * the signer's ML-DSA-65 keygen seed = SHAKE256("qkm audit kat signer")); for every record the
 * RFC 8785 canonical JSON that is hashed, and the hash. The seal's signature is FIPS 204
 * deterministic (rnd = 0^32) — for the vector only; the appliance signs hedged.
 *
 * Regenerate (only when the record format changes):
 *   npx tsx test/audit/audit-kat.ts > test/vectors/audit-chain-kat.json
 */

const enc = new TextEncoder();
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const b64url = (b: Uint8Array) => Buffer.from(b).toString('base64url');

export function generateAuditKat() {
  const seed = shake256(enc.encode('qkm audit kat signer'), { dkLen: 32 });
  const signer = ml_dsa65.keygen(seed);
  const nodeId = nodeIdOf(signer.publicKey);
  const records: AuditRecord[] = [];
  const canonical: string[] = [];
  const add = (type: string, actor: string, details: AuditRecord['details']) => {
    const seq = records.length + 1;
    const unhashed: Omit<AuditRecord, 'hash'> = {
      v: 1,
      seq,
      id: hex(shake256(enc.encode(`qkm audit kat id ${seq}`), { dkLen: 16 })),
      id_source: seq % 2 ? 'quantum' : 'os',
      at: new Date(Date.UTC(2026, 0, 2, 3, 4, seq)).toISOString(),
      type,
      actor,
      details,
      prev_hash: records.at(-1)?.hash ?? GENESIS_HASH,
    };
    canonical.push(canonicalJson(unhashed));
    records.push({ ...unhashed, hash: recordHash(unhashed) });
  };
  add('appliance.started', 'system', { version: '1.0.0', mode: 'simulator', node_id: nodeId });
  add('agent.created', 'admin', { name: 'alice-agent', scopes: ['entropy', 'keys', 'sessions'] });
  add('session.initiated', 'alice-agent', {
    session_id: '00112233445566778899aabbccddeeff',
    posture: 'PQC+QRNG',
    degraded: false,
    reason: 'unicode ✓ and "quotes"',
    n: 1.5,
  });
  const last = records.at(-1)!;
  const message = sealMessage(last.seq, last.hash);
  const signature = ml_dsa65.sign(message, signer.secretKey, {
    context: enc.encode('qkm/v1 audit-seal'),
    extraEntropy: false,
  });
  add('audit.seal', nodeId, {
    through_seq: last.seq,
    through_hash: last.hash,
    signer: nodeId,
    signature: b64url(signature),
  });
  add('key.created', 'alice-agent', { key_id: 'k-1', size: 32 });
  add('audit.unsealed_tail_found', 'system', { from_seq: 5, through_seq: 5, count: 1, chain_ok: true });
  return {
    description:
      'qkm audit chain known-answer vector. Each record: hash = hex SHA3-256(RFC 8785 canonical JSON of the record without "hash"); canonical_json gives that exact string. Seal: ML-DSA-65 deterministic (FIPS 204, rnd = 0^32), ctx "qkm/v1 audit-seal", over F("qkm/v1 audit-seal", u64(through_seq), through_hash bytes) (seal_message, hex). Signer keygen seed = SHAKE256("qkm audit kat signer", 32). See README "Audit log".',
    signer_seed: hex(seed),
    signer_public_key: b64url(signer.publicKey),
    seal_message: hex(message),
    canonical_json: canonical,
    records,
    expected_verify: {
      ok: true,
      count: records.length,
      sealedThrough: 3,
      unsealed: 2,
      unattested: [{ from_seq: 5, through_seq: 5 }],
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(generateAuditKat(), null, 2)}\n`);
}
