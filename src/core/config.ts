import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { describeValueErrors } from './schema-errors.js';

/**
 * Appliance configuration. Sources, lowest precedence first: built-in defaults, the JSON file
 * `<dataDir>/config.json` (or `QKM_CONFIG`), then environment variables (`QKM_PORT`,
 * `QKM_HOST`, `QKM_DATA`, `QKM_MODE`, `QKM_LOG_LEVEL`, `QKM_REGION`, `QKM_PQC_BACKEND`). The file is validated
 * against the schema below, so a typo is an error at start-up rather than a silent default.
 */

/** This node's own KME (it is one SAE of it); peers' SAE ids come from their identity bundles. */
const QkdConfigSchema = Type.Object(
  {
    kmeUrl: Type.String({ minLength: 1 }),
    kmeId: Type.String({ minLength: 1 }),
    saeId: Type.String({ minLength: 1 }),
    caPath: Type.String(),
    certPath: Type.String(),
    keyPath: Type.String(),
    /** Deadline of each KME call, retries included, ms. */
    timeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
    /**
     * Deadline of enc_keys for a session that may fall back to PQC+QRNG (its minimum does not
     * need QKD), ms; capped by `timeoutMs`. A KME that stopped answering delays such a session
     * by this much, once: the link is then marked down.
     */
    fallbackTimeoutMs: Type.Integer({ minimum: 50, default: 1000 }),
  },
  { additionalProperties: false },
);

const SerialSourceConfig = Type.Object(
  {
    path: Type.String(),
    model: Type.Optional(Type.String()),
    claimedMinEntropy: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 8 })),
  },
  { additionalProperties: false },
);

/**
 * `store.backend: "etcd"`: several appliances share one key store on an etcd cluster. Every
 * appliance needs the same `<dataDir>/kek` file; relative TLS paths are relative to the data dir.
 */
/** `pqc` section, shared by the appliance and the Provider. */
export const PqcConfigSchema = Type.Object(
  {
    backend: Type.Union([Type.Literal('liboqs-wasm'), Type.Literal('noble')], { default: 'liboqs-wasm' }),
  },
  { default: {}, additionalProperties: false },
);

export const StoreConfigSchema = Type.Union([
  Type.Object(
    {
      backend: Type.Literal('level'),
      /**
       * LevelDB's block cache, bytes (default 8 MiB). With the memtable (`writeBufferBytes`, two
       * of them while one is flushed) it bounds the store's native memory outside the V8 heap.
       */
      cacheBytes: Type.Optional(Type.Integer({ minimum: 1048576, maximum: 1073741824 })),
      /** LevelDB's memtable (write buffer), bytes (default 4 MiB). */
      writeBufferBytes: Type.Optional(Type.Integer({ minimum: 1048576, maximum: 268435456 })),
      /**
       * SST files LevelDB keeps open (default 1000): its table cache, whose index blocks and
       * mapped pages grow with the data dir up to this many files.
       */
      maxOpenFiles: Type.Optional(Type.Integer({ minimum: 16, maximum: 100000 })),
      /**
       * How long destroyed keys' ids are gathered before one compaction rewrites their tables
       * (default 1000 ms; 0 compacts after every destroy, as LevelDB allows back to back).
       */
      compactDelayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60000 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      backend: Type.Literal('etcd'),
      endpoints: Type.Array(Type.String({ pattern: '^https?://' }), { minItems: 1 }),
      /**
       * This appliance's name in the cluster (default: the host name): its audit chain and
       * key-intent journal are kept per appliance (`audit.<node>`), everything else is shared.
       */
      node: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,31}$' })),
      /** Key prefix of this deployment inside the cluster (default `qkm/`). */
      prefix: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]+/$' })),
      requestTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60000 })),
      /** CA of the etcd members, and this appliance's client certificate and key for mTLS. */
      tls: Type.Optional(
        Type.Object(
          { ca: Type.String(), cert: Type.Optional(Type.String()), key: Type.Optional(Type.String()) },
          { additionalProperties: false },
        ),
      ),
    },
    { additionalProperties: false },
  ),
]);

export const ConfigSchema = Type.Object(
  {
    host: Type.String({ default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 7300 }),
    dataDir: Type.String({ default: '.qkm' }),
    /** `simulator`: simulated Quantis device (and simulators wherever hardware would be); `hardware`: real devices only. */
    mode: Type.Union([Type.Literal('simulator'), Type.Literal('hardware')], { default: 'simulator' }),
    /** pino's levels; validated here so that a typo is not reported in pino's own words. */
    logLevel: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info' },
    ),
    /** Region of this node for the posture policy's jurisdiction table (US, EU, CN, JP, AU, MULTI). */
    region: Type.String({ default: 'EU' }),
    /** Extra Host header values accepted besides the bind address (DNS-rebinding guard). */
    allowedHosts: Type.Array(Type.String(), { default: [] }),
    entropy: Type.Object(
      {
        /** Largest `GET /v1/entropy` request in bytes. */
        maxRequestBytes: Type.Integer({ minimum: 32, maximum: 1048576, default: 65536 }),
        /** node-cron expression for the scheduled reseed of the DRBG from the quantum sources. */
        reseedCron: Type.String({ default: '*/30 * * * * *' }),
        /** Reseed after this many output bytes. */
        reseedBytes: Type.Integer({ minimum: 1024, default: 1048576 }),
        /**
         * Requests of up to 256 bytes are served from one buffered generate call of this many
         * bytes (wiped on every reseed); 0 makes every request its own generate call.
         */
        outputBufferBytes: Type.Integer({ minimum: 0, maximum: 65536, default: 4096 }),
        /**
         * −log2 of the continuous health tests' false-positive probability α per sample
         * (SP 800-90B §4.4 recommends 20…40). 40: a healthy 4 Mbit/s device is not quarantined
         * by chance every half minute, as it would be at 20.
         */
        healthAlphaLog2: Type.Integer({ minimum: 20, maximum: 40, default: 40 }),
        /** Output rate of the simulated Quantis device in simulator mode (bytes/s; 500000 = 4 Mbit/s). */
        simulatedRateBytesPerSec: Type.Integer({ minimum: 1000, default: 500000 }),
        serial: Type.Array(SerialSourceConfig, { default: [] }),
      },
      { default: {}, additionalProperties: false },
    ),
    keys: Type.Object(
      {
        defaultTtlSeconds: Type.Integer({ minimum: 0, default: 3600 }),
        sweepCron: Type.String({ default: '*/15 * * * * *' }),
        /** Closed (taken/expired) keys' metadata is purged this long after closing; their audit records stay. */
        retentionSeconds: Type.Integer({ minimum: 0, default: 604800 }),
      },
      { default: {}, additionalProperties: false },
    ),
    api: Type.Object(
      {
        bodyLimit: Type.Integer({ minimum: 1024, default: 262144 }),
        rateLimitPerMinute: Type.Integer({ minimum: 1, default: 60000 }),
        /** Time for a whole request (headers and body) to arrive before 408 REQUEST_TIMEOUT, ms. */
        requestTimeoutMs: Type.Integer({ minimum: 100, default: 30000 }),
        /** Invalid tokens per client address per minute before the address is refused (429). */
        badTokensPerMinute: Type.Integer({ minimum: 1, default: 60 }),
      },
      { default: {}, additionalProperties: false },
    ),
    /** The status page (`GET /`): its history and its login. */
    statusPage: Type.Object(
      {
        /** `GET /v1/status/history`: one sample every this many seconds… */
        historyIntervalSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 5 }),
        /** …this many kept (default 720: one hour), the oldest dropped first. */
        historySamples: Type.Integer({ minimum: 2, maximum: 100_000, default: 720 }),
        /** Lifetime of a login (`POST /ui/login`), seconds. */
        loginSeconds: Type.Integer({ minimum: 60, maximum: 604_800, default: 28_800 }),
      },
      { default: {}, additionalProperties: false },
    ),
    qkd: Type.Optional(QkdConfigSchema),
    /** Posture-policy overrides (weights, scores, region rules, per-peer minimums); see src/session/policy.ts. */
    policy: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    /** Storage backend: embedded LevelDB in `<dataDir>/db` (default) or a shared etcd cluster. */
    store: Type.Optional(StoreConfigSchema),
    /**
     * Post-quantum library (issue #13): `liboqs-wasm` (Open Quantum Safe's WebAssembly liboqs,
     * default) or `noble` (@noble/post-quantum, pure TypeScript). Either way key generation from
     * seeds and encapsulation with quantum randomness run on noble (liboqs-js cannot take them).
     * `QKM_PQC_BACKEND` overrides it.
     */
    pqc: PqcConfigSchema,
    /**
     * The Provider this node publishes its governed agents to and fetches responder bundles from
     * (issue #12). `publicKey` is the Provider's ML-DSA-65 key (base64url, `qkm provider status`):
     * pinned, every Provider answer must verify against it.
     */
    provider: Type.Optional(
      Type.Object(
        {
          url: Type.String({ pattern: '^https?://' }),
          publicKey: Type.String({ pattern: '^[A-Za-z0-9_-]{2603}$' }),
          /** The URL peers reach this node's API at (default: http://<host>:<port>). */
          endpoint: Type.Optional(Type.String({ pattern: '^https?://' })),
          /** How often the node publishes its agents, policies and prekeys, seconds. */
          syncIntervalSeconds: Type.Integer({ minimum: 5, maximum: 86_400, default: 60 }),
          /** Replenish an agent's one-time prekeys at the Provider when fewer than this are left… */
          otkLowWater: Type.Integer({ minimum: 0, maximum: 10_000, default: 20 }),
          /** …back up to this many. */
          otkTarget: Type.Integer({ minimum: 1, maximum: 10_000, default: 50 }),
          timeoutMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 5000 }),
          /**
           * How long an initiator node the Provider vouched for is accepted without asking the
           * Provider again, seconds: a node removed at the Provider is refused here at most this
           * long after its removal.
           */
          vouchTtlSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 300 }),
        },
        { additionalProperties: false },
      ),
    ),
    /** Governed agents (issue #12): contact-policy budgets count per window of this length. */
    governance: Type.Object(
      {
        budgetWindowSeconds: Type.Integer({ minimum: 1, maximum: 31_536_000, default: 86_400 }),
        /** Access tokens issued after a governed handshake: uses and lifetime (s). */
        tokenMaxUses: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 100 }),
        tokenTtlSeconds: Type.Integer({ minimum: 1, maximum: 7_776_000, default: 604_800 }),
      },
      { default: {}, additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export type QkmConfig = Static<typeof ConfigSchema>;
export type QkdConfig = Static<typeof QkdConfigSchema>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (env.QKM_PORT !== undefined) {
    const port = Number(env.QKM_PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new ConfigError(`QKM_PORT must be a port number`);
    out.port = port;
  }
  if (env.QKM_HOST) out.host = env.QKM_HOST;
  if (env.QKM_DATA) out.dataDir = env.QKM_DATA;
  if (env.QKM_MODE) out.mode = env.QKM_MODE;
  if (env.QKM_LOG_LEVEL) out.logLevel = env.QKM_LOG_LEVEL;
  if (env.QKM_REGION) out.region = env.QKM_REGION;
  if (env.QKM_PQC_BACKEND) out.pqc = { backend: env.QKM_PQC_BACKEND };
  return out;
}

/** Builds a validated config from defaults, an optional file and the environment, plus explicit overrides. */
export function loadConfig(
  options: { env?: NodeJS.ProcessEnv; overrides?: Partial<QkmConfig> } = {},
): QkmConfig {
  const env = options.env ?? process.env;
  const early = { ...envOverrides(env), ...stripUndefined(options.overrides ?? {}) };
  return loadConfigFile(ConfigSchema, {
    what: 'configuration',
    early,
    defaultDataDir: '.qkm',
    defaultFileName: 'config.json',
    namedFile: env.QKM_CONFIG,
    namedFileVariable: 'QKM_CONFIG',
  }) as QkmConfig;
}

/**
 * The one way qkm's processes (appliance, Provider) read their configuration: defaults, then an
 * optional JSON file (the data dir's, or one the operator named), then the environment and
 * explicit overrides, validated with messages that say which values are allowed.
 */
export function loadConfigFile(
  schema: TSchema,
  o: {
    /** What the errors call it: "configuration", "Provider configuration". */
    what: string;
    early: Record<string, unknown>;
    defaultDataDir: string;
    defaultFileName: string;
    namedFile: string | undefined;
    namedFileVariable: string;
  },
): unknown {
  const dataDir = resolve(String(o.early.dataDir ?? o.defaultDataDir));
  const file = o.namedFile ? resolve(o.namedFile) : join(dataDir, o.defaultFileName);
  // The data dir's file is optional; a file the operator named is not: starting with defaults
  // instead of the settings they asked for would be silently wrong.
  if (o.namedFile && !existsSync(file)) {
    throw new ConfigError(`${o.namedFileVariable} names ${file}, which does not exist`);
  }
  let fromFile: Record<string, unknown> = {};
  if (existsSync(file)) {
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`${file}: not valid JSON (${(err as Error).message})`);
    }
  }
  const merged = Value.Default(schema, { ...fromFile, ...o.early, dataDir }) as unknown;
  const errors = [...Value.Errors(schema, merged)];
  if (errors.length > 0) {
    const source = existsSync(file) ? ` (${file} and the environment)` : '';
    throw new ConfigError(`invalid ${o.what}${source}: ${describeValueErrors(errors)}`);
  }
  return merged;
}

function stripUndefined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}
