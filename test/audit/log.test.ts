import { describe, expect, it } from 'vitest';
import { AuditLog, type AuditSigner, signerFromIdentity } from '../../src/audit/log.js';
import type { AuditRecord } from '../../src/audit/types.js';
import { canonicalJson } from '../../src/audit/canonical.js';
import { parseJsonLines, recordHash, toJsonLines, verifyAuditLog } from '../../src/audit/verify.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { auditVerdict } from '../../src/cli/commands/session-commands.js';
import { toBase64url } from '../../src/session/encoding.js';
import { identityFromSeed } from '../../src/session/identity.js';
import { FakeEntropy, fakeProvenance } from '../session/fakes.js';

const ident = (b: number) =>
  identityFromSeed(
    new Uint8Array(96).fill(b),
    { region: 'EU', created: '2026-01-01T00:00:00.000Z' },
    fakeProvenance(true),
  );
const alice = ident(1);
const mallory = ident(2);

function countingSigner(): AuditSigner & { count: number } {
  const s = signerFromIdentity(alice);
  const c = {
    ...s,
    count: 0,
    sign: (m: Uint8Array) => {
      c.count++;
      return s.sign(m);
    },
  };
  return c;
}

async function filledLog(n: number, sealEvery = 4) {
  const store = createMemoryBackend();
  const signer = countingSigner();
  const log = new AuditLog({ store, entropy: new FakeEntropy(), signer, sealEvery });
  for (let i = 0; i < n; i++) await log.append({ type: 'test.event', actor: 'cli', details: { i } });
  await log.flush();
  return { store, log, signer, records: await log.records() };
}

const clone = (r: AuditRecord[]) => JSON.parse(JSON.stringify(r)) as AuditRecord[];

describe('audit log', () => {
  it('chains, seals every N in the background and on flush, and verifies offline', async () => {
    const { records, signer } = await filledLog(10, 4);
    // 10 events + seals after 4 and 8 (as records 5 and 10) + the flush seal.
    expect(records.map((r) => r.type).filter((t) => t === 'audit.seal')).toHaveLength(3);
    expect(signer.count).toBe(3); // never one signature per record
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    expect(records[0]!.prev_hash).toBe('0'.repeat(64));
    expect(records[0]!.id_source).toBe('quantum');
    expect(records[1]!.hash).toBe(recordHash(records[1]!));
    expect(verifyAuditLog(records, alice.signing.publicKey)).toEqual({
      ok: true,
      count: records.length,
      sealedThrough: records.length - 1,
      unsealed: 0,
    });
  });

  it('detects an edited record (content, hash, seq, seal signature)', async () => {
    const { records } = await filledLog(6);
    const edited = clone(records);
    (edited[2]!.details as Record<string, unknown>).i = 99;
    expect(verifyAuditLog(edited, alice.signing.publicKey)).toEqual({
      ok: false,
      seq: 3,
      reason: 'hash does not match the record content (edited)',
    });
    const rehashed = clone(records);
    rehashed[2]!.actor = 'someone-else';
    rehashed[2]!.hash = recordHash(rehashed[2]!);
    expect(verifyAuditLog(rehashed, alice.signing.publicKey)).toMatchObject({ ok: false, seq: 4 });
    const sealIdx = records.findIndex((r) => r.type === 'audit.seal');
    const badSeal = clone(records);
    const d = badSeal[sealIdx]!.details as { signature: string };
    d.signature = `${d.signature.startsWith('A') ? 'B' : 'A'}${d.signature.slice(1)}`;
    badSeal[sealIdx]!.hash = recordHash(badSeal[sealIdx]!);
    expect(verifyAuditLog(badSeal, alice.signing.publicKey)).toMatchObject({ ok: false, seq: sealIdx + 1 });
  });

  it('detects deleted and reordered records', async () => {
    const { records } = await filledLog(6);
    const deleted = records.filter((_, i) => i !== 2);
    expect(verifyAuditLog(deleted, alice.signing.publicKey)).toMatchObject({ ok: false, seq: 3 });
    const reordered = [...records];
    [reordered[1], reordered[2]] = [reordered[2]!, reordered[1]!];
    expect(verifyAuditLog(reordered, alice.signing.publicKey)).toMatchObject({ ok: false, seq: 2 });
    expect(verifyAuditLog(records.slice(1), alice.signing.publicKey)).toMatchObject({ ok: false, seq: 1 });
  });

  it('rejects seals by another key; accepts any of several keys (rotation)', async () => {
    const { records } = await filledLog(3);
    expect(verifyAuditLog(records, mallory.signing.publicKey)).toMatchObject({
      ok: false,
      reason: /not one of/,
    });
    expect(verifyAuditLog(records, [mallory.signing.publicKey, alice.signing.publicKey]).ok).toBe(true);
  });

  it('reports and optionally refuses an unsealed tail', async () => {
    const store = createMemoryBackend();
    const log = new AuditLog({ store, signer: signerFromIdentity(alice), sealEvery: 100 });
    await log.append({ type: 'a', actor: 'cli' });
    await log.flush();
    await log.append({ type: 'b', actor: 'cli' });
    const recs = await log.records();
    expect(verifyAuditLog(recs, alice.signing.publicKey)).toMatchObject({
      ok: true,
      sealedThrough: 1,
      unsealed: 1,
    });
    expect(verifyAuditLog(recs, alice.signing.publicKey, { requireSealed: true })).toMatchObject({
      ok: false,
      seq: 3,
    });
    expect(recs[0]!.id_source).toBe('os'); // no entropy provider given
  });

  it('exports JSON lines that round-trip and verify', async () => {
    const { log } = await filledLog(5);
    const text = await log.exportJsonLines();
    const lines = text.trim().split('\n');
    expect(lines).toHaveLength((await log.records()).length);
    expect(lines[0]).toBe(canonicalJson(JSON.parse(lines[0]!)));
    const parsed = parseJsonLines(text);
    expect(verifyAuditLog(parsed, alice.signing.publicKey).ok).toBe(true);
    expect(toJsonLines(parsed as AuditRecord[])).toBe(text);
    expect(() => parseJsonLines('{"a":1}\nnot json')).toThrow(/line 2/);
    expect(verifyAuditLog([{ junk: true }], alice.signing.publicKey)).toMatchObject({ ok: false, seq: 1 });
  });

  it('an older instance over the same store refuses to write once a newer one took over', async () => {
    const { store, records } = await filledLog(2);
    const older = new AuditLog({ store });
    await older.append({ type: 'a', actor: 'x' });
    const newer = new AuditLog({ store });
    await expect(older.append({ type: 'b', actor: 'x' })).rejects.toMatchObject({ code: 'INTERNAL' });
    const rec = await newer.append({ type: 'c', actor: 'x' });
    // The older instance's 'a' was never sealed: the newer one flags it before writing 'c'.
    expect(rec.seq).toBe(records.length + 3);
    expect(newer.stats().unsealedTail).toMatchObject({ from_seq: records.length + 1, count: 1 });
    expect(verifyAuditLog(await newer.records(), alice.signing.publicKey)).toMatchObject({ ok: true });
  });

  it('continues the chain after a restart over the same store', async () => {
    const { store, records } = await filledLog(3);
    const log2 = new AuditLog({ store, signer: signerFromIdentity(alice) });
    const rec = await log2.append({ type: 'after.restart', actor: 'system' });
    expect(rec.seq).toBe(records.length + 1);
    expect(rec.prev_hash).toBe(records.at(-1)!.hash);
    await log2.close();
    expect(verifyAuditLog(await log2.records(), alice.signing.publicKey)).toMatchObject({
      ok: true,
      unsealed: 0,
    });
    await expect(log2.append({ type: 'x', actor: 'y' })).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
  });

  it('never stores secrets: bytes and secret-named fields are redacted; seal type reserved', async () => {
    const log = new AuditLog({ store: createMemoryBackend() });
    const rec = await log.append({
      type: 'key.created',
      actor: 'agent-1',
      details: { key_id: 'k1', key: 'c2VjcmV0', nested: { token: 'abc', raw: new Uint8Array(32) }, big: 10n },
    });
    expect(rec.details).toEqual({
      key_id: 'k1',
      key: '[redacted]',
      nested: { token: '[redacted]', raw: '[32 bytes redacted]' },
      big: '10',
    });
    await expect(log.append({ type: 'audit.seal', actor: 'x' })).rejects.toMatchObject({
      code: 'INVALID_PARAMETER',
    });
  });

  it('concurrent appends stay one gap-free chain', async () => {
    const log = new AuditLog({
      store: createMemoryBackend(),
      signer: signerFromIdentity(alice),
      sealEvery: 8,
    });
    await Promise.all(
      Array.from({ length: 30 }, (_, i) => log.append({ type: 't', actor: 'a', details: { i } })),
    );
    await log.flush();
    expect(verifyAuditLog(await log.records(), alice.signing.publicKey)).toMatchObject({
      ok: true,
      unsealed: 0,
    });
  });
});

describe('audit log: storage is untrusted (issue #11 item 1)', () => {
  /** Appends a correctly chained record straight into the store, as an attacker with write access can. */
  async function forge(store: ReturnType<typeof createMemoryBackend>, type = 'agent.created') {
    const rs = store.records<AuditRecord>('audit');
    const rows = await rs.entries('r:');
    const last = rows.at(-1)![1];
    const unhashed: Omit<AuditRecord, 'hash'> = {
      v: 1,
      seq: last.seq + 1,
      id: 'ab'.repeat(16),
      id_source: 'quantum',
      at: new Date().toISOString(),
      type,
      actor: 'admin',
      details: { name: 'backdoor' },
      prev_hash: last.hash,
    };
    const rec = { ...unhashed, hash: recordHash(unhashed) };
    await rs.put(`r:${String(rec.seq).padStart(12, '0')}`, rec);
    return rec;
  }

  it('a record forged after the last seal is flagged on restart, never silently vouched for', async () => {
    const { store, records } = await filledLog(3);
    const forged = await forge(store);
    const log2 = new AuditLog({ store, signer: signerFromIdentity(alice) });
    const stats = await log2.open();
    expect(stats.unsealedTail).toEqual({
      from_seq: forged.seq,
      through_seq: forged.seq,
      count: 1,
      chain_ok: true,
    });
    expect(stats.sealedThrough).toBe(records.length);
    await log2.append({ type: 'after.restart', actor: 'system' });
    await log2.flush();
    const all = await log2.records();
    expect(all[forged.seq]).toMatchObject({
      type: 'audit.unsealed_tail_found',
      actor: 'system',
      details: { from_seq: forged.seq, through_seq: forged.seq, count: 1, chain_ok: true },
    });
    expect(verifyAuditLog(all, alice.signing.publicKey)).toMatchObject({
      ok: true,
      unsealed: 0,
      unattested: [{ from_seq: forged.seq, through_seq: forged.seq }],
    });
    // What used to say OK now fails: no seal vouches for the forged record.
    expect(verifyAuditLog(all, alice.signing.publicKey, { requireSealed: true })).toMatchObject({
      ok: false,
      seq: forged.seq,
    });
  });

  it('a lying head hint (sealed_through raised) does not hide the tail', async () => {
    const { store } = await filledLog(3);
    const forged = await forge(store);
    const rs = store.records<Record<string, unknown>>('audit');
    await rs.put('head', { seq: forged.seq, hash: forged.hash, sealed_through: forged.seq });
    const log2 = new AuditLog({ store, signer: signerFromIdentity(alice) });
    expect((await log2.open()).unsealedTail).toMatchObject({ from_seq: forged.seq, count: 1 });
  });

  it('a forged seal (bad signature) counts as part of the tail, not as a seal', async () => {
    const { store, records } = await filledLog(3);
    const forged = await forge(store);
    const rs = store.records<AuditRecord>('audit');
    const unhashed: Omit<AuditRecord, 'hash'> = {
      ...forged,
      seq: forged.seq + 1,
      type: 'audit.seal',
      actor: alice.nodeId,
      details: {
        through_seq: forged.seq,
        through_hash: forged.hash,
        signer: alice.nodeId,
        signature: toBase64url(new Uint8Array(3309)),
      },
      prev_hash: forged.hash,
    };
    delete (unhashed as { hash?: string }).hash;
    const fakeSeal = { ...unhashed, hash: recordHash(unhashed) };
    await rs.put(`r:${String(fakeSeal.seq).padStart(12, '0')}`, fakeSeal);
    const log2 = new AuditLog({ store, signer: signerFromIdentity(alice) });
    expect((await log2.open()).unsealedTail).toMatchObject({
      from_seq: records.length + 1,
      through_seq: fakeSeal.seq,
      count: 2,
    });
  });

  it('stripping every seal and rehashing verifies as UNSEALED, loudly', async () => {
    const { records } = await filledLog(6);
    const kept = records.filter((r) => r.type !== 'audit.seal');
    let prev = '0'.repeat(64);
    const rehashed = kept.map((r, i) => {
      const unhashed = { ...r, seq: i + 1, prev_hash: prev } as Omit<AuditRecord, 'hash'> & { hash?: string };
      delete unhashed.hash;
      const rec = { ...unhashed, hash: recordHash(unhashed) } as AuditRecord;
      prev = rec.hash;
      return rec;
    });
    const result = verifyAuditLog(rehashed, alice.signing.publicKey);
    expect(result).toMatchObject({ ok: true, sealedThrough: 0, unsealed: 6 });
    expect(auditVerdict(result)).toMatch(/^audit log UNSEALED: none of its 6 records/);
    expect(auditVerdict(result)).not.toMatch(/OK/);
  });

  it('a tail with a broken chain is flagged with chain_ok false and the reason', async () => {
    const { store } = await filledLog(3);
    const forged = await forge(store);
    const rs = store.records<AuditRecord>('audit');
    await rs.put(`r:${String(forged.seq).padStart(12, '0')}`, { ...forged, details: { name: 'edited' } });
    const log2 = new AuditLog({ store, signer: signerFromIdentity(alice) });
    expect((await log2.open()).unsealedTail).toMatchObject({
      chain_ok: false,
      reason: expect.stringMatching(/hash/),
    });
  });
});
