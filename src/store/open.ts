import { isAbsolute, join, resolve } from 'node:path';
import type { QkmConfig } from '../core/config.js';
import { openEtcdBackend } from './etcd.js';
import type { StorageBackend } from './interface.js';
import { openLevelBackend } from './level.js';

/**
 * Opens the storage backend the config names: LevelDB in `<dataDir>/db` (the embedded default)
 * or the etcd cluster of `store.endpoints`. `kek` is the appliance's key-encryption key; the
 * caller wipes it afterwards.
 */
export function openStore(config: QkmConfig, kek: Uint8Array): Promise<StorageBackend> {
  const store = config.store;
  if (store === undefined || store.backend === 'level') {
    return openLevelBackend({ path: join(config.dataDir, 'db'), kek });
  }
  const inDataDir = (p: string) => (isAbsolute(p) ? p : resolve(config.dataDir, p));
  return openEtcdBackend({
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
}
