import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Provenance } from '../../src/core/provenance.js';
import type { KeyMetadata, NewKey } from '../../src/keys/interface.js';
import type { StorageBackend } from '../../src/store/interface.js';
import { openEtcdBackend } from '../../src/store/etcd.js';
import { openLevelBackend } from '../../src/store/level.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { EtcdCluster, etcdUnavailableReason } from '../helpers/etcd-cluster.js';

export function provenance(overrides: Partial<Provenance> = {}): Provenance {
  return {
    seedOrigin: 'quantum',
    sources: [
      {
        id: 'sim-qrng-0',
        driver: 'simulated-qrng',
        kind: 'quantum',
        simulated: true,
        state: 'healthy',
        claimedMinEntropy: 7.5,
      },
    ],
    entropyCredited: 384,
    drbg: {
      name: 'CTR_DRBG(AES-256, df)',
      instance: 'test-instance',
      reseedCounter: 3,
      seededAt: '2026-01-01T00:00:00.000Z',
      predictionResistance: false,
    },
    degraded: false,
    at: '2026-01-01T00:00:01.000Z',
    ...overrides,
  };
}

export const T0 = new Date('2026-01-01T00:00:00.000Z');

export function newKey(
  overrides: Partial<NewKey['meta']> = {},
  material?: Uint8Array,
): NewKey & { meta: NewKey['meta'] } {
  const bytes = material ?? randomBytes(overrides.size ?? 32);
  return {
    meta: {
      id: randomUUID(),
      size: bytes.length,
      purpose: 'symmetric',
      created: T0.toISOString(),
      expires: new Date(T0.getTime() + 3600_000).toISOString(),
      provenance: provenance(),
      ...overrides,
    },
    material: bytes,
  };
}

export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `qkm-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A backend under test, with a way to reopen it (LevelDB) and to clean up afterwards. */
export interface BackendHarness {
  name: string;
  durable: boolean;
  open(): Promise<StorageBackend>;
  /** Closes `backend` and opens the same store again (durable backends only). */
  reopen(backend: StorageBackend): Promise<StorageBackend>;
  cleanup(): Promise<void>;
}

export const BACKENDS: Array<{ name: string; make: () => Promise<BackendHarness> }> = [
  {
    name: 'memory',
    make: async () => ({
      name: 'memory',
      durable: false,
      open: async () => createMemoryBackend(),
      reopen: async () => {
        throw new Error('memory backend cannot be reopened');
      },
      cleanup: async () => undefined,
    }),
  },
  {
    name: 'level',
    make: async () => {
      const { dir, cleanup } = await tempDir('store');
      const kek = randomBytes(32);
      const path = join(dir, 'db');
      return {
        name: 'level',
        durable: true,
        open: () => openLevelBackend({ path, kek }),
        reopen: async (backend) => {
          await backend.close();
          return openLevelBackend({ path, kek });
        },
        cleanup,
      };
    },
  },
];

/**
 * The etcd backend runs on one 3-member cluster shared by every harness of a test file (each
 * harness under its own key prefix); the file stops it with `stopSharedEtcd` in `afterAll`.
 * Absent etcd binary: the backend is left out (with the reason in `ETCD_SKIP`), except under
 * CI=true, where `etcdUnavailableReason` throws.
 */
export const ETCD_SKIP = etcdUnavailableReason();
let sharedCluster: Promise<EtcdCluster> | undefined;
let harnessNo = 0;

export function sharedEtcd(): Promise<EtcdCluster> {
  sharedCluster ??= EtcdCluster.start();
  return sharedCluster;
}

export async function stopSharedEtcd(): Promise<void> {
  const c = sharedCluster;
  sharedCluster = undefined;
  if (c) await (await c).stop();
}

if (ETCD_SKIP === undefined) {
  BACKENDS.push({
    name: 'etcd',
    make: async () => {
      const cluster = await sharedEtcd();
      const kek = randomBytes(32);
      const prefix = `t${process.pid}-${++harnessNo}-${randomUUID().slice(0, 8)}/`;
      const open = () => openEtcdBackend({ endpoints: cluster.endpoints, kek, prefix });
      return {
        name: 'etcd',
        durable: true,
        open,
        reopen: async (backend) => {
          await backend.close();
          return open();
        },
        cleanup: async () => undefined,
      };
    },
  });
}

/** Strips fields that legitimately differ between what was put and what is returned. */
export function immutablePart(meta: KeyMetadata): Omit<KeyMetadata, 'state' | 'closedAt'> {
  const { state: _s, closedAt: _c, ...rest } = meta;
  return rest;
}
