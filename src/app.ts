import type { Logger } from 'pino';
import type { EntropySourceFactory } from '../drivers/entropy/interface.js';
import { Etsi014Client } from '../drivers/qkd/etsi014/index.js';
import { createQuantisFactory } from '../drivers/entropy/quantis-usb/index.js';
import {
  type ConfiguredSerialRng,
  createSerialTrngFactory,
  parseSerialRngEnv,
} from '../drivers/entropy/serial-trng/index.js';
import { allowedHostsFor } from './api/auth.js';
import { createMetrics } from './api/metrics.js';
import { sessionRoutes } from './api/routes/sessions.js';
import { type SimulatedFaultTarget, simRoutes } from './api/routes/sim.js';
import { type QkmApp, buildApi } from './api/server.js';
import { AuditLog, signerFromIdentity } from './audit/index.js';
import { JobScheduler } from './core/jobs.js';
import { legacyVerifications } from './pqc/domain.js';
import { pqcInfo, usePqcBackend } from './pqc/index.js';
import { type AgentRecord, AgentRegistry, type Scope } from './agents/registry.js';
import { governanceRoutes } from './api/routes/governance.js';
import { providerRoutes } from './api/routes/provider.js';
import { ProviderClient } from './provider/client.js';
import { ProviderSync } from './provider/sync.js';
import { type BudgetRecord, ContactPolicies, type StoredContactPolicy } from './governance/contacts.js';
import { type PrekeyIndexEntry, type PrekeyRecord, PrekeyStore } from './governance/prekeys.js';
import { TokenIssuer, type TokenRecord } from './governance/resumption.js';
import type { QkmConfig } from './core/config.js';
import { ensurePrivateDir, fileExists, tokenFile, writeSecretFile } from './core/datadir.js';
import { createLogger } from './core/logger.js';
import { ensurePortFree } from './core/port.js';
import { QkdLinkBoard } from './core/qkd-links.js';
import type { ApplianceStatus } from './status.js';
import { StatusHistory } from './status-history.js';
import { VERSION } from './core/version.js';
import {
  type DegradedEvent,
  type EntropySourceConfig,
  EntropyService,
  type EntropyServiceOptions,
} from './entropy/service.js';
import { loadOrCreateKek } from './keys/kek.js';
import { KeyAuditJournal, type KeyIntent } from './keys/audit-journal.js';
import { KeyService } from './keys/service.js';
import {
  IdentityManager,
  type NodeIdentity,
  PeerRegistry,
  type PolicyConfig,
  PosturePolicy,
  SessionService,
  qkdAvailabilityFrom,
} from './session/index.js';
import { directoryBundles } from './session/bundles.js';
import { VouchedPeers } from './session/vouched.js';
import type { StorageBackend } from './store/interface.js';
import { openStore } from './store/open.js';

/**
 * The appliance: opens the store, starts the entropy pipeline, restores agents and the node
 * identity, and serves the API on loopback. Everything it starts, `close()` stops, in reverse.
 */

/** Agents created on first start, with the token files the README points at. */
const BUILT_IN_AGENTS: Array<{ name: string; scopes: Scope[] }> = [
  { name: 'default', scopes: ['entropy', 'keys', 'sessions'] },
  { name: 'admin', scopes: ['admin'] },
];

/**
 * What simulator mode runs on instead of devices. The appliance and the library entry never load
 * `simulators/`: whoever starts an appliance in simulator mode passes a `SimulatorFactory` (the
 * CLI's is `src/cli/simulator.ts`), so an embedder's bundle carries no simulator code.
 */
export interface SimulatedDevices<C = unknown> {
  /** The quantum sources to run on (real drivers over simulated hardware). */
  sources: EntropySourceConfig[];
  /** The driver families watched for devices plugged in while running. */
  families: EntropySourceFactory[];
  /** The device `POST /v1/sim/faults` drives; absent, that route answers 409 SIMULATOR_ONLY. */
  faults?: SimulatedFaultTarget;
  /** The simulator's own handles (bus, devices), for tests and the demo: `Appliance.simulator`. */
  controls: C;
}

/** Builds the simulated devices for a simulator-mode appliance, from its configuration. */
export type SimulatorFactory<C = unknown> = (config: QkmConfig) => SimulatedDevices<C>;

export interface ApplianceOptions<C = unknown> {
  config: QkmConfig;
  logger?: Logger;
  /**
   * Simulator mode's devices; required in simulator mode unless `quantumSources` is given.
   * Ignored in hardware mode, so a caller may always pass it.
   */
  simulator?: SimulatorFactory<C>;
  /** Replace the configured quantum sources (tests inject simulators with fault controls). */
  quantumSources?: EntropySourceConfig[];
  /** Extra EntropyService tuning (tests shorten back-offs). */
  entropyTuning?: Partial<EntropyServiceOptions>;
}

export class Appliance<C = unknown> {
  private readonly unwatchers: Array<() => void> = [];
  readonly startedAt = new Date();
  /** Background jobs: key expiry sweep, QKD link poll (src/core/jobs.ts). */
  private readonly jobs: JobScheduler;
  /** Contact policies of the governed agents (issue #12); set once in `start`. */
  contacts!: ContactPolicies;
  /** One-time and last-resort prekeys of the governed agents (issue #12); set once in `start`. */
  prekeys!: PrekeyStore;
  /** Access tokens this node issued as a responder (issue #12); set once in `start`. */
  tokens!: TokenIssuer;
  /**
   * The Provider client (config `provider`; issue #12): a `BundleSource` for initiating
   * handshakes, answers verified against the pinned Provider key. Undefined without a Provider.
   */
  provider: ProviderClient | undefined;
  /** Publishes the governed agents, policies and prekeys to the Provider (job `provider-sync`). */
  providerSync: ProviderSync | undefined;
  /** Initiator nodes the Provider vouched for, cached (with a Provider only). */
  vouched: VouchedPeers | undefined;

  private constructor(
    readonly config: QkmConfig,
    readonly logger: Logger,
    readonly store: StorageBackend,
    readonly entropy: EntropyService,
    readonly agents: AgentRegistry,
    readonly keys: KeyService,
    readonly audit: AuditLog,
    readonly identity: NodeIdentity,
    readonly peers: PeerRegistry,
    readonly policy: PosturePolicy,
    readonly sessions: SessionService,
    readonly qkd: Etsi014Client | undefined,
    private readonly links: QkdLinkBoard | undefined,
    readonly tokenFiles: Record<string, string>,
    /** The simulated devices, in simulator mode (from `ApplianceOptions.simulator`). */
    private readonly simulated: SimulatedDevices<C> | undefined,
    private app: QkmApp | undefined = undefined,
  ) {
    this.jobs = new JobScheduler(logger);
  }

  /** Where the API listens, once started. */
  get url(): string {
    const addr = this.app?.server.address();
    if (!addr || typeof addr === 'string') throw new Error('not listening');
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `http://${host}:${addr.port}`;
  }

  /** The simulator's controls (`SimulatedDevices.controls`), in simulator mode. */
  get simulator(): C | undefined {
    return this.simulated?.controls;
  }

  static async start<C = unknown>(options: ApplianceOptions<C>): Promise<Appliance<C>> {
    const { config } = options;
    // Checked before anything is written: no data dir, key or identity for a start that cannot run.
    if (config.mode === 'simulator' && !options.quantumSources && !options.simulator) {
      throw new TypeError(
        'simulator mode needs ApplianceOptions.simulator (the qkm CLI passes one) or quantumSources',
      );
    }
    const logger = options.logger ?? createLogger({ level: config.logLevel });
    // A taken port must fail before anything is written: a second `qkm start` on the same
    // port would otherwise create a data dir, identity and audit records it never uses.
    await ensurePortFree(config.host, config.port);
    // Before any key is derived or any signature checked (the audit log's last seal on open):
    // the process's PQC backend. A WebAssembly module that cannot load fails the start.
    await usePqcBackend(config.pqc.backend);
    await ensurePrivateDir(config.dataDir);
    const kek = await loadOrCreateKek(config.dataDir);
    const store = await openStore(config, kek).finally(() => kek.fill(0));
    const cleanup: Array<() => Promise<unknown>> = [() => store.close()];
    try {
      let simulated: SimulatedDevices<C> | undefined;
      let sources = options.quantumSources;
      /** The driver families watched for devices plugged in while running. */
      let families: EntropySourceFactory[];
      if (!sources) {
        if (config.mode === 'simulator') {
          simulated = (options.simulator as SimulatorFactory<C>)(config);
          ({ sources, families } = simulated);
        } else {
          ({ sources, families } = await hardwareSources(config, logger));
        }
      } else {
        families = [...new Set(sources.map((s) => s.factory))];
      }
      const entropy = new EntropyService({
        sources,
        reseedCron: config.entropy.reseedCron,
        reseedBytes: config.entropy.reseedBytes,
        outputBufferBytes: config.entropy.outputBufferBytes,
        maxRequestBytes: config.entropy.maxRequestBytes,
        ...options.entropyTuning,
        monitor: { healthAlphaLog2: config.entropy.healthAlphaLog2, ...options.entropyTuning?.monitor },
      });
      // Passing a start-up test or re-opening is news, not a warning; failures are warnings.
      entropy.on('health', (e) =>
        e.type === 'startup-passed' || e.type === 'reopened'
          ? logger.info({ event: e }, 'entropy source health event')
          : logger.warn({ event: e }, 'entropy source health event'),
      );
      const logDegraded = (e: DegradedEvent): void =>
        e.degraded
          ? logger.warn({ reason: e.reason }, 'DEGRADED: serving entropy from the OS-seeded fallback DRBG')
          : logger.info('quantum entropy restored');
      await entropy.start();
      // Subscribed after start: while the sources run their first start-up tests the service is
      // "degraded" by definition; what matters is how it came up, and every change after that.
      entropy.on('degraded', logDegraded);
      if (entropy.status().degraded) logDegraded({ degraded: true, reason: entropy.status().reason });
      cleanup.push(() => entropy.stop());

      // Opened before the agents: the registry writes an audit record for every change it makes.
      const audit = new AuditLog({ store, entropy });
      cleanup.push(() => audit.close());
      const agents = await AgentRegistry.open(store.records<AgentRecord>('agents'), audit);
      const tokenFiles: Record<string, string> = {};
      for (const { name, scopes } of BUILT_IN_AGENTS) {
        const file = tokenFile(config.dataDir, name);
        tokenFiles[name] = file;
        if (await fileExists(file)) continue;
        // A lost token file means a lost token: issue a new one rather than leave the agent unusable.
        const token = (await agents.exists(name))
          ? await agents.rotate(name)
          : (await agents.add(name, scopes)).token;
        await writeSecretFile(file, `${token}\n`);
      }

      const keys = new KeyService({
        store: store.keys,
        entropy,
        defaultTtlSeconds: config.keys.defaultTtlSeconds,
        retentionSeconds: config.keys.retentionSeconds,
        log: logger,
        // key.created / key.taken go through an intent journal: audit and store agree after a crash.
        journal: new KeyAuditJournal(store.records<KeyIntent>('key-intents'), audit),
      });
      const identities = new IdentityManager({ store, entropy });
      let identity = await identities.load();
      if (!identity) {
        identity = await identities.init({
          region: config.region,
          ...(config.qkd ? { saeId: config.qkd.saeId, kmeId: config.qkd.kmeId } : {}),
        });
        logger.info(
          { nodeId: identity.nodeId, degraded: identity.provenance.degraded },
          'node identity created',
        );
      }
      // Seals are signed on the event loop (≈ 0.3–0.8 ms with liboqs): the PQC worker thread they
      // and the handshakes used was removed in issue #13 (README, Benchmarks: no measurable gain).
      audit.setSigner(signerFromIdentity(identity));
      // Opened with the signer known, so the last seal's signature is checked; an unsealed tail
      // left in the store is flagged (audit.unsealed_tail_found), never silently sealed.
      const opened = await audit.open();
      if (opened.unsealedTail)
        logger.warn({ tail: opened.unsealedTail }, 'audit: unsealed records found on open');
      // QSC §3.7: every switch to and from degraded entropy is an audit event.
      entropy.on('degraded', (e) => {
        audit
          .append({
            type: e.degraded ? 'entropy.degraded' : 'entropy.restored',
            actor: 'system',
            details: e.reason ? { reason: e.reason } : {},
          })
          .catch((err) => logger.error({ err: { message: (err as Error).message } }, 'audit append failed'));
      });
      await audit.append({
        type: 'appliance.started',
        actor: 'system',
        details: { version: VERSION, mode: config.mode, node_id: identity.nodeId },
      });

      await keys.reconcileAudit();

      const qkd = config.qkd
        ? await Etsi014Client.fromFiles({
            kmeUrl: config.qkd.kmeUrl,
            kmeId: config.qkd.kmeId,
            saeId: config.qkd.saeId,
            caPath: config.qkd.caPath,
            certPath: config.qkd.certPath,
            keyPath: config.qkd.keyPath,
            timeoutMs: config.qkd.timeoutMs,
          })
        : undefined;
      if (qkd) cleanup.push(() => qkd.close());
      const peers = new PeerRegistry({ store, audit });
      const links = qkd ? new QkdLinkBoard(qkd.kmeId, config.qkd?.kmeUrl ?? '') : undefined;
      const policy = new PosturePolicy({
        region: config.region,
        ...(config.qkd ? { saeId: config.qkd.saeId } : {}),
        entropy,
        ...(qkd
          ? {
              qkdAvailability: qkdAvailabilityFrom(qkd, { observe: (sae, seen) => links?.record(sae, seen) }),
            }
          : {}),
        ...(config.policy ? { config: config.policy as Partial<PolicyConfig> } : {}),
      });
      const contacts = new ContactPolicies({
        policies: store.records<StoredContactPolicy>('contact-policies'),
        budgets: store.records<BudgetRecord>('contact-budgets'),
        windowSeconds: config.governance.budgetWindowSeconds,
        isLocalAid: async (aid) => (await agents.byAid(aid)) !== undefined,
      });
      const prekeys = new PrekeyStore({
        signer: identity,
        keys: store.keys,
        records: store.records<PrekeyRecord>('prekeys'),
        index: store.records<PrekeyIndexEntry>('prekey-ids'),
        // ML-KEM seeds from quantum entropy only: never silently weaker material.
        seed: async (n) => {
          const e = await entropy.getEntropy(n, { require: 'quantum' });
          return { data: e.bytes, provenance: e.provenance };
        },
      });
      // Access tokens (issued after governed handshakes); resumption salts from quantum entropy.
      const tokens = new TokenIssuer({
        tokens: store.records<TokenRecord>('access-tokens'),
        nonces: store.records<{ at: string }>('access-token-nonces'),
        keys: store.keys,
        // LevelDB locks its directory: no other process can answer a resumption from this store.
        exclusive: (config.store?.backend ?? 'level') === 'level',
        salt: async (n) => {
          const e = await entropy.getEntropy(n, { require: 'quantum' });
          return { data: e.bytes, provenance: e.provenance };
        },
      });
      // The Provider client: bundles for initiations, and the initiator nodes it vouches for.
      const providerClient = config.provider
        ? new ProviderClient({
            url: config.provider.url,
            publicKey: config.provider.publicKey,
            signer: identity,
            timeoutMs: config.provider.timeoutMs,
          })
        : undefined;
      const vouched =
        providerClient && config.provider
          ? new VouchedPeers({ voucher: providerClient, ttlMs: config.provider.vouchTtlSeconds * 1000 })
          : undefined;
      const sessions = new SessionService({
        identity,
        vouched,
        peers,
        policy,
        entropy,
        qkd,
        store,
        audit,
        governance: {
          contacts,
          prekeys,
          tokens,
          tokenMaxUses: config.governance.tokenMaxUses,
          tokenTtlSeconds: config.governance.tokenTtlSeconds,
        },
        ...(config.qkd
          ? { qkdTimeoutMs: config.qkd.timeoutMs, qkdFallbackTimeoutMs: config.qkd.fallbackTimeoutMs }
          : {}),
      });

      const appliance = new Appliance(
        config,
        logger,
        store,
        entropy,
        agents,
        keys,
        audit,
        identity,
        peers,
        policy,
        sessions,
        qkd,
        links,
        tokenFiles,
        simulated,
      );
      appliance.contacts = contacts;
      appliance.prekeys = prekeys;
      appliance.tokens = tokens;
      appliance.vouched = vouched;
      if (config.provider && providerClient) {
        const client = providerClient;
        appliance.provider = client;
        appliance.providerSync = new ProviderSync({
          client,
          agents: () => agents.list(),
          contacts: appliance.contacts,
          prekeys: appliance.prekeys,
          endpoint: () => config.provider?.endpoint ?? appliance.url,
          lowWater: config.provider.otkLowWater,
          target: Math.max(config.provider.otkTarget, config.provider.otkLowWater),
        });
      }
      appliance.watchForNewDevices(families);
      await appliance.listen();
      return appliance;
    } catch (err) {
      for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Hot-plug: a device of a watched family that appears while running (and that no source
   * already covers) becomes a new quantum source, start-up tested like the others. Devices that
   * come back after an unplug are re-opened by their own source instead.
   */
  private watchForNewDevices(families: EntropySourceFactory[]): void {
    for (const factory of families) {
      const unwatch = factory.watch?.((d) => {
        this.entropy
          .addSource({ factory, open: { id: d.id } })
          .then(async (added) => {
            if (!added) return;
            this.logger.info({ source: d.id, driver: factory.driver }, 'entropy source added (plugged in)');
            await this.audit.append({
              type: 'entropy.source_added',
              actor: 'system',
              details: { source: d.id, driver: factory.driver },
            });
          })
          .catch((err) =>
            this.logger.error(
              { source: d.id, err: { message: (err as Error).message } },
              'adding a source failed',
            ),
          );
      });
      if (unwatch) this.unwatchers.push(unwatch);
    }
  }

  private async listen(): Promise<void> {
    const { config } = this;
    const metrics = createMetrics(() => this.status());
    this.jobs.cron('key-expiry-sweep', config.keys.sweepCron, async () => {
      const n = await this.keys.sweep();
      if (n > 0) this.logger.info({ expired: n }, 'expired keys destroyed');
    });
    // Access tokens and resumptions that expired a day ago or more (issue #12): hourly.
    this.jobs.every('token-prune', 3_600_000, async () => {
      const n = await this.sessions.pruneTokens();
      if (n > 0) this.logger.info({ pruned: n }, 'expired access tokens and resumptions removed');
    });
    if (this.qkd) this.jobs.every('qkd-link-poll', 10_000, () => this.pollQkdLinks(), { runNow: true });
    // The status page's charts: sampled here, so a reload (or a second browser) sees the past.
    const history = new StatusHistory({
      samples: config.statusPage.historySamples,
      intervalSeconds: config.statusPage.historyIntervalSeconds,
    });
    this.jobs.every(
      'status-history',
      config.statusPage.historyIntervalSeconds * 1000,
      async () => {
        history.record(await this.status());
      },
      { runNow: true },
    );
    const app = await buildApi({
      version: VERSION,
      logger: this.logger,
      entropy: this.entropy,
      keys: this.keys,
      agents: this.agents,
      metrics,
      status: () => this.status(),
      history,
      uiLoginSeconds: config.statusPage.loginSeconds,
      audit: this.audit,
      // The port is known only once listening (port 0 in tests), so the guard computes it then.
      allowedHosts: (port: number) => allowedHostsFor(config.host, port, config.allowedHosts),
      maxEntropyBytes: config.entropy.maxRequestBytes,
      bodyLimit: config.api.bodyLimit,
      rateLimitPerMinute: config.api.rateLimitPerMinute,
      requestTimeoutMs: config.api.requestTimeoutMs,
      badTokensPerMinute: config.api.badTokensPerMinute,
      plugins: [
        { plugin: simRoutes, options: { device: this.simulated?.faults, audit: this.audit } },
        {
          plugin: sessionRoutes,
          options: {
            identity: this.identity,
            peers: this.peers,
            policy: this.policy,
            sessions: this.sessions,
            audit: this.audit,
            // Governed initiations without a prekey in the request ask the Provider for one.
            ...(this.provider ? { bundles: directoryBundles(this.provider, this.peers) } : {}),
          },
        },
        {
          plugin: governanceRoutes,
          options: {
            contacts: this.contacts,
            audit: this.audit,
            prekeys: {
              store: this.prekeys,
              isLocalAid: async (aid: string) => (await this.agents.byAid(aid)) !== undefined,
            },
          },
        },
        {
          plugin: providerRoutes,
          options: {
            ...(this.providerSync ? { sync: this.providerSync } : {}),
            ...(config.provider ? { url: config.provider.url } : {}),
            audit: this.audit,
          },
        },
      ],
    });
    this.app = app;
    await app.listen({ host: config.host, port: config.port });
    // Once listening (the endpoint it publishes is this address unless configured): publish now
    // and then periodically; a failed run (Provider down, no quantum entropy yet) is logged and
    // retried on the next tick.
    const sync = this.providerSync;
    if (sync && config.provider)
      this.jobs.every(
        'provider-sync',
        config.provider.syncIntervalSeconds * 1000,
        async () => {
          await sync.run();
        },
        { runNow: true },
      );
  }

  /** Asks the KME for the link status of every pinned peer that has an SAE id. */
  private async pollQkdLinks(): Promise<void> {
    if (!this.qkd || !this.links) return;
    const peers = await this.peers.list().catch(() => []);
    for (const p of peers) {
      const sae = p.bundle.sae_id;
      if (!sae) continue;
      try {
        const s = await this.qkd.status(sae, { timeoutMs: 3000 });
        this.links.record(sae, { answered: true, storedKeyCount: s.storedKeyCount });
      } catch (err) {
        this.links.record(sae, { answered: false, error: (err as Error).message });
      }
    }
  }

  async status(): Promise<ApplianceStatus> {
    const entropy = this.entropy.status();
    const reasons: string[] = [];
    if (entropy.degraded) reasons.push(entropy.reason ?? 'entropy is degraded');
    const qkd = this.links?.list() ?? [];
    for (const l of qkd)
      if (!l.up) reasons.push(`QKD link to ${l.peerSaeId} is down${l.lastError ? `: ${l.lastError}` : ''}`);
    return {
      version: VERSION,
      nodeId: this.identity.nodeId,
      region: this.config.region,
      mode: this.config.mode,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      degraded: reasons.length > 0,
      reasons,
      entropy,
      keys: await this.keyCounts(),
      qkd,
      sessions: this.sessions.counters(),
      audit: this.audit.stats(),
      pqc: { ...pqcInfo(), legacyVerified: legacyVerifications() },
      peers: {
        pinned: (await this.peers.list().catch(() => [])).length,
        vouched: this.vouched?.size() ?? 0,
      },
    };
  }

  /**
   * Keys by state, less the node identity's seed: it lives in the key store as an active key
   * (encrypted at rest like the others) but it is the appliance's own, never an agent's to take.
   */
  private async keyCounts(): Promise<ApplianceStatus['keys']> {
    const counts = await this.keys.counts();
    return { ...counts, active: Math.max(0, counts.active - 1) };
  }

  async close(): Promise<void> {
    // Stopping closes the sources, which reads as "degraded": not news to log or audit (the
    // audit log is closed before the sources anyway).
    this.entropy.removeAllListeners('degraded');
    for (const unwatch of this.unwatchers.splice(0)) unwatch();
    this.jobs.stop();
    await this.app?.close();
    this.sessions.flushAudit();
    await this.audit.close().catch(() => undefined);
    await this.qkd?.close();
    await this.entropy.stop();
    await this.store.close();
  }
}

/**
 * Hardware mode: every Quantis and serial TRNG present now, and the two families to watch for
 * devices plugged in later (unplugged devices re-open on return through their own source).
 */
async function hardwareSources(
  config: QkmConfig,
  logger: Logger,
): Promise<{ sources: EntropySourceConfig[]; families: EntropySourceFactory[] }> {
  const serialConfigured = [
    ...config.entropy.serial.map((s) => ({ path: s.path, model: s.model ?? 'truerng' })),
    ...(process.env.QKM_SERIAL_RNG ? parseSerialRngEnv(process.env.QKM_SERIAL_RNG) : []),
  ];
  const factories: EntropySourceFactory[] = [
    createQuantisFactory(),
    // Serial ports have no hot-plug events; the driver polls its listing for watch().
    createSerialTrngFactory({
      configured: serialConfigured as ConfiguredSerialRng[],
      watchIntervalMs: 10_000,
    }),
  ];
  const out: EntropySourceConfig[] = [];
  for (const factory of factories) {
    try {
      for (const d of await factory.list()) out.push({ factory, open: { id: d.id } });
    } catch (err) {
      logger.warn(
        { driver: factory.driver, err: { message: (err as Error).message } },
        'device listing failed',
      );
    }
  }
  if (out.length === 0) {
    logger.warn(
      'hardware mode: no QRNG device found; every output will be flagged degraded until one is plugged in',
    );
  }
  return { sources: out, families: factories };
}
