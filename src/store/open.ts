import { hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import type { QkmConfig } from '../core/config.js';
import type { StorageBackend } from './interface.js';
import { openLevelBackend } from './level.js';

/**
 * Opens the storage backend the config names: LevelDB in `<dataDir>/db` (the embedded default)
 * or the etcd cluster of `store.endpoints`. `kek` is the appliance's key-encryption key; the
 * caller wipes it afterwards.
 */
export async function openStore(
  config: Pick<QkmConfig, 'store' | 'dataDir'>,
  kek: Uint8Array,
): Promise<StorageBackend> {
  const store = config.store;
  if (store === undefined || store.backend === 'level') {
    return openLevelBackend({
      path: join(config.dataDir, 'db'),
      kek,
      ...(store?.cacheBytes === undefined ? {} : { cacheBytes: store.cacheBytes }),
      ...(store?.writeBufferBytes === undefined ? {} : { writeBufferBytes: store.writeBufferBytes }),
      ...(store?.maxOpenFiles === undefined ? {} : { maxOpenFiles: store.maxOpenFiles }),
      ...(store?.compactDelayMs === undefined ? {} : { compactDelayMs: store.compactDelayMs }),
    });
  }
  const inDataDir = (p: string) => (isAbsolute(p) ? p : resolve(config.dataDir, p));
  // Loaded only for the etcd backend: etcd3 pulls in gRPC and protobufjs, about a third of a
  // second of start-up that every `qkm` command (even --version) would otherwise pay.
  const { openEtcdBackend } = await import('./etcd.js');
  const shared = await openEtcdBackend({
    endpoints: store.endpoints,
    kek,
    ...(store.prefix === undefined ? {} : { prefix: store.prefix }),
    ...(store.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: store.requestTimeoutMs }),
    ...(store.tls === undefined
      ? {}
      : {
          tls: {
            ca: inDataDir(store.tls.ca),
            ...(store.tls.cert === undefined ? {} : { cert: inDataDir(store.tls.cert) }),
            ...(store.tls.key === undefined ? {} : { key: inDataDir(store.tls.key) }),
          },
        }),
  });
  const node =
    store.node ??
    (hostname()
      .toLowerCase()
      .replace(/[^a-z0-9_-]/g, '-')
      .replace(/^[^a-z0-9]+/, '')
      .slice(0, 32) ||
      'qkm');
  return perNode(shared, node);
}

/**
 * Namespaces that are one appliance's own history rather than shared state: the audit hash
 * chain (one writer per chain) and the key-intent journal (replayed by the appliance that wrote
 * it). On a shared backend each appliance keeps them under `<namespace>.<node>`.
 */
const PER_NODE = new Set(['audit', 'key-intents']);

function perNode(backend: StorageBackend, node: string): StorageBackend {
  return {
    keys: backend.keys,
    records: <T>(namespace: string) =>
      backend.records<T>(PER_NODE.has(namespace) ? `${namespace}.${node}` : namespace),
    close: () => backend.close(),
  };
}
