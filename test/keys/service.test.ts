import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { QkmError } from '../../src/core/errors.js';
import { JobScheduler } from '../../src/core/jobs.js';
import type {
  EntropyProvider,
  EntropyRequest,
  EntropyResult,
  EntropyStatus,
} from '../../src/entropy/types.js';
import {
  DEFAULT_RETENTION_SECONDS,
  KeyService,
  type KeyServiceLogger,
  PURGE_BATCH,
  PURGE_BATCHES_PER_SWEEP,
} from '../../src/keys/service.js';
import type { StorageBackend } from '../../src/store/interface.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { provenance, T0 } from './helpers.js';

/** An EntropyProvider double that records requests and remembers every byte it handed out. */
class RecordingEntropy implements EntropyProvider {
  readonly requests: Array<{ n: number; request: EntropyRequest | undefined }> = [];
  readonly served: Buffer[] = [];
  quantum = true;

  async getEntropy(n: number, request?: EntropyRequest): Promise<EntropyResult> {
    this.requests.push({ n, request });
    if (request?.require === 'quantum' && !this.quantum) throw new QkmError('QUANTUM_ENTROPY_UNAVAILABLE');
    const bytes = randomBytes(n);
    this.served.push(Buffer.from(bytes));
    return {
      bytes,
      provenance: this.quantum
        ? provenance()
        : provenance({ seedOrigin: 'os', degraded: true, reason: 'no quantum source' }),
    };
  }

  status(): EntropyStatus {
    throw new Error('not used');
  }
}

function capturingLog(): KeyServiceLogger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push(JSON.stringify({ ...obj, msg })),
    warn: (obj, msg) => lines.push(JSON.stringify({ ...obj, msg })),
  };
}

async function code(p: Promise<unknown>): Promise<string> {
  const err = await p.catch((e: unknown) => e);
  if (!(err instanceof QkmError)) throw new Error(`expected a QkmError, got ${String(err)}`);
  return err.code;
}

describe('KeyService', () => {
  let backend: StorageBackend;
  let entropy: RecordingEntropy;
  let clock: Date;
  let log: ReturnType<typeof capturingLog>;
  let service: KeyService;

  beforeEach(() => {
    backend = createMemoryBackend();
    entropy = new RecordingEntropy();
    clock = T0;
    log = capturingLog();
    service = new KeyService({ store: backend.keys, entropy, now: () => clock, log });
  });
  afterEach(async () => backend.close());

  it('creates a key from the entropy provider, storing its provenance, with the default TTL', async () => {
    const meta = await service.create({ size: 32, owner: 'agent-a', label: 'backup', require: 'quantum' });
    expect(entropy.requests).toEqual([{ n: 32, request: { require: 'quantum' } }]);
    expect(meta).toMatchObject({
      size: 32,
      purpose: 'symmetric',
      state: 'active',
      owner: 'agent-a',
      label: 'backup',
      created: T0.toISOString(),
      expires: new Date(T0.getTime() + 3600_000).toISOString(),
      provenance: provenance(),
    });
    expect(meta.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const taken = await service.take(meta.id, 'agent-a');
    expect(Buffer.from(taken.material).equals(entropy.served[0]!)).toBe(true);
  });

  it('records degraded provenance when the entropy was degraded', async () => {
    entropy.quantum = false;
    const meta = await service.create({ size: 16 });
    expect(meta.provenance.degraded).toBe(true);
    expect(meta.provenance.reason).toBe('no quantum source');
    expect(await code(service.create({ size: 16, require: 'quantum' }))).toBe('QUANTUM_ENTROPY_UNAVAILABLE');
  });

  it.each([0, 15, 1025, 16.5, Number.NaN, -1])('rejects size %s with INVALID_PARAMETER', async (size) => {
    expect(await code(service.create({ size }))).toBe('INVALID_PARAMETER');
    expect(entropy.requests).toHaveLength(0);
  });

  it('accepts sizes 16 and 1024', async () => {
    expect((await service.create({ size: 16 })).size).toBe(16);
    expect((await service.create({ size: 1024 })).size).toBe(1024);
  });

  it('TTL: explicit seconds, null for never, 0 and out-of-range rejected', async () => {
    expect((await service.create({ size: 16, ttlSeconds: 60 })).expires).toBe(
      new Date(T0.getTime() + 60_000).toISOString(),
    );
    expect((await service.create({ size: 16, ttlSeconds: null })).expires).toBeNull();
    for (const ttlSeconds of [0, -5, 1.5, 30 * 24 * 3600 + 1]) {
      expect(await code(service.create({ size: 16, ttlSeconds }))).toBe('INVALID_PARAMETER');
    }
    const custom = new KeyService({ store: backend.keys, entropy, now: () => clock, defaultTtlSeconds: 5 });
    expect((await custom.create({ size: 16 })).expires).toBe(new Date(T0.getTime() + 5000).toISOString());
    expect(() => new KeyService({ store: backend.keys, entropy, defaultTtlSeconds: 0 })).toThrow(RangeError);
  });

  it('rejects bad owner/label/purpose/require', async () => {
    expect(await code(service.create({ size: 16, owner: '' }))).toBe('INVALID_PARAMETER');
    expect(await code(service.create({ size: 16, label: 'x'.repeat(257) }))).toBe('INVALID_PARAMETER');
    expect(await code(service.create({ size: 16, purpose: 'bogus' as never }))).toBe('INVALID_PARAMETER');
    expect(await code(service.create({ size: 16, require: 'maybe' as never }))).toBe('INVALID_PARAMETER');
  });

  it('take: once only; another owner sees KEY_NOT_FOUND; unowned keys are takeable by anyone', async () => {
    const mine = await service.create({ size: 16, owner: 'agent-a' });
    expect(await code(service.take(mine.id, 'agent-b'))).toBe('KEY_NOT_FOUND');
    expect((await service.take(mine.id, 'agent-a')).meta.state).toBe('taken');
    expect(await code(service.take(mine.id, 'agent-a'))).toBe('KEY_ALREADY_TAKEN');
    const shared = await service.create({ size: 16 });
    expect((await service.take(shared.id, 'agent-b')).meta.state).toBe('taken');
  });

  it('identity keys are never handed out', async () => {
    const id = await service.create({ size: 32, purpose: 'identity', ttlSeconds: null });
    expect(await code(service.take(id.id))).toBe('FORBIDDEN');
    expect((await backend.keys.meta(id.id)).state).toBe('active');
  });

  it('take uses the service clock for expiry; sweep expires due keys', async () => {
    const short = await service.create({ size: 16, ttlSeconds: 10 });
    const long = await service.create({ size: 16, ttlSeconds: 100 });
    clock = new Date(T0.getTime() + 10_000);
    expect(await code(service.take(short.id))).toBe('KEY_EXPIRED');
    clock = new Date(T0.getTime() + 100_000);
    expect(await service.sweep()).toBe(1);
    expect((await service.list({ state: 'expired' })).map((m) => m.id)).toEqual([short.id, long.id]);
    expect(await service.counts()).toEqual({ active: 0, taken: 0, expired: 2 });
  });

  it('sweep purges closed keys past the retention (default 7 days), never active ones', async () => {
    expect(DEFAULT_RETENTION_SECONDS).toBe(7 * 24 * 3600);
    const taken = await service.create({ size: 16, ttlSeconds: 3600 });
    const kept = await service.create({ size: 16, ttlSeconds: null, purpose: 'identity' });
    await service.take(taken.id);
    clock = new Date(T0.getTime() + 3600_000); // the third key is created and expires an hour later
    await service.create({ size: 16, ttlSeconds: 3600 });
    clock = new Date(T0.getTime() + 7200_000);
    expect(await service.sweep()).toBe(1);
    // Taken at T0: purged once 7 days have passed since T0 (inclusive); expired at T0+2h: later.
    clock = new Date(T0.getTime() + DEFAULT_RETENTION_SECONDS * 1000 - 1);
    await service.sweep();
    expect(await service.counts()).toEqual({ active: 1, taken: 1, expired: 1 });
    clock = new Date(T0.getTime() + DEFAULT_RETENTION_SECONDS * 1000);
    await service.sweep();
    expect(await code(backend.keys.meta(taken.id))).toBe('KEY_NOT_FOUND');
    expect(await service.counts()).toEqual({ active: 1, taken: 0, expired: 1 });
    clock = new Date(T0.getTime() + 7200_000 + DEFAULT_RETENTION_SECONDS * 1000);
    await service.sweep();
    expect((await service.list()).map((m) => m.id)).toEqual([kept.id]);
    expect(log.lines.some((l) => l.includes('closed keys past retention purged'))).toBe(true);
  });

  it('a purge backlog drains in bounded batches over several sweeps', async () => {
    const svc = new KeyService({ store: backend.keys, entropy, now: () => clock, retentionSeconds: 0 });
    const perSweep = PURGE_BATCH * PURGE_BATCHES_PER_SWEEP;
    const calls: number[] = [];
    const purge = backend.keys.purgeClosed!.bind(backend.keys);
    backend.keys.purgeClosed = async (before, limit) => {
      calls.push(limit!);
      return purge(before, limit);
    };
    const total = perSweep + 10;
    for (let i = 0; i < total; i++) await svc.take((await svc.create({ size: 16 })).id);
    await svc.sweep();
    expect(calls.every((l) => l === PURGE_BATCH)).toBe(true);
    expect(calls).toHaveLength(PURGE_BATCHES_PER_SWEEP);
    expect((await svc.counts()).taken).toBe(10);
    await svc.sweep();
    expect((await svc.counts()).taken).toBe(0);
  });

  it('rejects a negative or fractional retention', () => {
    for (const retentionSeconds of [-1, 1.5]) {
      expect(() => new KeyService({ store: backend.keys, entropy, retentionSeconds })).toThrow(RangeError);
    }
  });

  it('sweeps on a JobScheduler tick (as the appliance schedules it) and stops with it', async () => {
    vi.useFakeTimers();
    try {
      await service.create({ size: 16, ttlSeconds: 1 });
      clock = new Date(T0.getTime() + 2000);
      const jobs = new JobScheduler();
      jobs.every('key-expiry-sweep', 1000, async () => void (await service.sweep()));
      await vi.advanceTimersByTimeAsync(1000);
      expect((await service.counts()).expired).toBe(1);
      jobs.stop();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('never logs key material (raw, hex or base64)', async () => {
    for (let i = 0; i < 5; i++) {
      const meta = await service.create({ size: 32, owner: 'agent-a' });
      await service.take(meta.id, 'agent-a');
    }
    await service.sweep();
    expect(log.lines.length).toBeGreaterThanOrEqual(10);
    const all = log.lines.join('\n');
    for (const bytes of entropy.served) {
      expect(all).not.toContain(bytes.toString('hex'));
      expect(all).not.toContain(bytes.toString('base64'));
      expect(all).not.toContain(bytes.toString('base64url'));
      expect(all).not.toContain(JSON.stringify(Array.from(bytes)).slice(1, 40));
    }
    expect(all).toContain('key created');
  });

  it('wipes its own copy of the entropy bytes after storing them', async () => {
    const spy = vi.spyOn(entropy, 'getEntropy');
    await service.create({ size: 32 });
    const result = await spy.mock.results[0]!.value;
    expect(Buffer.from(result.bytes).equals(Buffer.alloc(32))).toBe(true);
  });
});
