import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ensurePrivateDir, fileExists, readTokenFile, writeSecretFile } from '../core/datadir.js';
import { JobScheduler } from '../core/jobs.js';
import { createLogger } from '../core/logger.js';
import { VERSION } from '../core/version.js';
import { loadOrCreateKek } from '../keys/kek.js';
import type { RecordStore, StorageBackend } from '../store/interface.js';
import { openStore } from '../store/open.js';
import { toBase64url } from '../session/encoding.js';
import type { ProviderConfig } from './config.js';
import { Directory } from './directory.js';
import { type ProviderIdentity, loadOrCreateProviderIdentity } from './identity.js';
import { type ProviderApp, buildProviderApi, nonceKey } from './server.js';
import { usePqcBackend } from '../pqc/index.js';

/** `<dataDir>/provider-identity.json`: the Provider's id, public key and URL (not secret). */
export const IDENTITY_FILE = 'provider-identity.json';

/**
 * `qkm provider start`: the Provider as its own process — its data dir (KEK, admin token,
 * LevelDB unless `store` names an etcd cluster), its ML-DSA identity, its port. `close()` stops
 * everything it started, in reverse.
 */
export class ProviderService {
  private constructor(
    readonly config: ProviderConfig,
    readonly logger: Logger,
    readonly store: StorageBackend,
    readonly directory: Directory,
    readonly identity: ProviderIdentity,
    readonly adminTokenFile: string,
    private readonly app: ProviderApp,
    private readonly jobs: JobScheduler,
  ) {}

  static async start(options: { config: ProviderConfig; logger?: Logger }): Promise<ProviderService> {
    const { config } = options;
    const logger = options.logger ?? createLogger({ level: config.logLevel });
    // The Provider signs and verifies every request and answer: the fast backend matters here.
    await usePqcBackend(config.pqc.backend);
    await ensurePrivateDir(config.dataDir);
    const kek = await loadOrCreateKek(config.dataDir);
    const store = await openStore(config, kek).finally(() => kek.fill(0));
    const jobs = new JobScheduler(logger);
    try {
      const identity = await loadOrCreateProviderIdentity(store);
      const adminTokenFile = join(config.dataDir, 'tokens', 'admin');
      if (!(await fileExists(adminTokenFile)))
        await writeSecretFile(adminTokenFile, `qkmp_${randomBytes(32).toString('base64url')}\n`);
      const adminTokenHash = createHash('sha256')
        .update(await readTokenFile(adminTokenFile))
        .digest();
      const directory = new Directory({ store, budgetWindowSeconds: config.budgetWindowSeconds });
      const nonces = store.records<{ at: number }>('provider-nonces');
      const started = new Date().toISOString();
      const app = await buildProviderApi({
        version: VERSION,
        logger,
        directory,
        identity,
        adminTokenHash,
        nonces,
        host: config.host,
        allowedHosts: config.allowedHosts,
        clockSkewSeconds: config.clockSkewSeconds,
        bundlesPerNodePerMinute: config.bundlesPerNodePerMinute,
        bodyLimit: config.api.bodyLimit,
        requestTimeoutMs: config.api.requestTimeoutMs,
        status: async () => ({
          provider_id: identity.providerId,
          version: VERSION,
          store: config.store?.backend ?? 'level',
          started,
          ...(await directory.stats()),
        }),
      });
      // Nonces older than the skew window can no longer be replayed (their timestamp is refused).
      jobs.every('provider-nonce-sweep', 30_000, () =>
        sweepNonces(nonces, Date.now() - 2 * config.clockSkewSeconds * 1000),
      );
      const service = new ProviderService(
        config,
        logger,
        store,
        directory,
        identity,
        adminTokenFile,
        app,
        jobs,
      );
      await app.listen({ host: config.host, port: config.port });
      // Public, for the administrator's CLI on this host: the key to pin and where it listens.
      await writeFile(
        join(config.dataDir, IDENTITY_FILE),
        `${JSON.stringify({ provider_id: identity.providerId, ml_dsa_65_public_key: toBase64url(identity.publicKey), url: service.url }, null, 2)}\n`,
      );
      logger.info({ url: service.url, provider: identity.providerId }, 'provider listening');
      return service;
    } catch (err) {
      jobs.stop();
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  get url(): string {
    const addr = this.app.server.address();
    if (!addr || typeof addr === 'string') throw new Error('not listening');
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `http://${host}:${addr.port}`;
  }

  async close(): Promise<void> {
    this.jobs.stop();
    await this.app.close();
    this.identity.secretKey.fill(0);
    await this.store.close();
  }
}

async function sweepNonces(nonces: RecordStore<{ at: number }>, before: number): Promise<void> {
  const cutoff = nonceKey(before, '', '');
  for (;;) {
    const page = await nonces.entries('', { limit: 200 });
    const old = page.filter(([k]) => k < cutoff);
    for (const [k] of old) await nonces.del(k);
    if (old.length < page.length || page.length < 200) return;
  }
}
