import { describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import { WorkerSealSigner } from '../../src/audit/seal-signer.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { identityFromSeed } from '../../src/session/identity.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { FakeEntropy, fakeProvenance } from '../session/fakes.js';

const alice = identityFromSeed(
  new Uint8Array(96).fill(7),
  { region: 'EU', created: '2026-01-01T00:00:00.000Z' },
  fakeProvenance(true),
);

async function sealedLog(signer: WorkerSealSigner, n = 6) {
  const log = new AuditLog({
    store: createMemoryBackend(),
    entropy: new FakeEntropy(),
    signer,
    sealEvery: 4,
  });
  for (let i = 0; i < n; i++) await log.append({ type: 'test.event', actor: 'cli', details: { i } });
  return log;
}

describe('audit seals signed on a worker thread', () => {
  it('verify against the node key, and the event loop keeps running while a seal is signed', async () => {
    const signer = new WorkerSealSigner(alice);
    const log = await sealedLog(signer);
    // Count event-loop turns until the seal is written: a seal signed on this thread would
    // hold the loop for the whole signature, and none would fit in.
    let turns = 0;
    let sealing = true;
    const spin = () => {
      if (!sealing) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    const seal = await log.flush();
    sealing = false;
    expect(seal?.type).toBe('audit.seal');
    expect(turns).toBeGreaterThan(0);
    expect(signer.signed).toEqual({ worker: 2, inline: 0 });
    await log.close(); // also ends the worker

    const result = verifyAuditLog(await log.records(), alice.signing.publicKey, { requireSealed: true });
    expect(result).toMatchObject({ ok: true, count: 8, unsealed: 0 });
  });

  it('signs inline when the worker cannot do it: seals never stop', async () => {
    const signer = new WorkerSealSigner(alice, { moduleUrl: 'file:///nonexistent/ml-dsa.js' });
    const log = await sealedLog(signer);
    expect((await log.flush())?.type).toBe('audit.seal');
    expect(signer.signed).toEqual({ worker: 0, inline: 2 });
    await log.close();
    const result = verifyAuditLog(await log.records(), alice.signing.publicKey, { requireSealed: true });
    expect(result.ok).toBe(true);
  });

  it('after close, later seals are signed inline', async () => {
    const signer = new WorkerSealSigner(alice);
    await signer.close();
    const log = await sealedLog(signer, 2);
    expect((await log.flush())?.type).toBe('audit.seal');
    expect(signer.signed).toEqual({ worker: 0, inline: 1 });
    expect(verifyAuditLog(await log.records(), alice.signing.publicKey).ok).toBe(true);
  });
});
