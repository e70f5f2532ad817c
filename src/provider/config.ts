import { type Static, Type } from '@sinclair/typebox';
import { ConfigError, PqcConfigSchema, StoreConfigSchema, loadConfigFile } from '../core/config.js';

/**
 * Configuration of `qkm provider start`: its own process, port and data dir, and the same
 * `store` section as the appliance (LevelDB in `<dataDir>/db` by default, or an etcd cluster).
 * Sources, lowest precedence first: defaults, `<dataDir>/provider.json` (or
 * `QKM_PROVIDER_CONFIG`), the environment (`QKM_PROVIDER_PORT`, `QKM_PROVIDER_HOST`,
 * `QKM_PROVIDER_DATA`), explicit overrides (CLI flags).
 */
export const ProviderConfigSchema = Type.Object(
  {
    host: Type.String({ default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 7400 }),
    dataDir: Type.String({ default: '.qkm-provider' }),
    logLevel: Type.String({ default: 'info' }),
    /** Extra Host header values accepted besides the bind address (DNS-rebinding guard). */
    allowedHosts: Type.Array(Type.String(), { default: [] }),
    store: Type.Optional(StoreConfigSchema),
    /** Post-quantum library for the Provider's signatures (as the appliance's `pqc`). */
    pqc: PqcConfigSchema,
    /** Contact-policy budgets count OTKs handed out per window of this length (seconds). */
    budgetWindowSeconds: Type.Integer({ minimum: 1, maximum: 31_536_000, default: 86_400 }),
    /**
     * Bundle requests one node may make per minute (429 RATE_LIMITED beyond): budgets bound what
     * each initiator agent obtains, this bounds a node that registers many initiators.
     */
    bundlesPerNodePerMinute: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1200 }),
    /** Signed node requests are accepted this far from the Provider's clock (seconds). */
    clockSkewSeconds: Type.Integer({ minimum: 5, maximum: 3600, default: 60 }),
    api: Type.Object(
      {
        /** A batch of 100 signed prekeys is about 600 KB of JSON. */
        bodyLimit: Type.Integer({ minimum: 1024, maximum: 16_777_216, default: 2_097_152 }),
        requestTimeoutMs: Type.Integer({ minimum: 100, default: 30_000 }),
      },
      { default: {}, additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export type ProviderConfig = Static<typeof ProviderConfigSchema>;

export function loadProviderConfig(
  options: { env?: NodeJS.ProcessEnv; overrides?: Partial<ProviderConfig> } = {},
): ProviderConfig {
  const env = options.env ?? process.env;
  const early: Record<string, unknown> = {};
  if (env.QKM_PROVIDER_PORT !== undefined) {
    const port = Number(env.QKM_PROVIDER_PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new ConfigError('QKM_PROVIDER_PORT must be a port number');
    early.port = port;
  }
  if (env.QKM_PROVIDER_HOST) early.host = env.QKM_PROVIDER_HOST;
  if (env.QKM_PROVIDER_DATA) early.dataDir = env.QKM_PROVIDER_DATA;
  if (env.QKM_PQC_BACKEND) early.pqc = { backend: env.QKM_PQC_BACKEND };
  for (const [k, v] of Object.entries(options.overrides ?? {})) if (v !== undefined) early[k] = v;
  return loadConfigFile(ProviderConfigSchema, {
    what: 'Provider configuration',
    early,
    defaultDataDir: '.qkm-provider',
    defaultFileName: 'provider.json',
    namedFile: env.QKM_PROVIDER_CONFIG,
    namedFileVariable: 'QKM_PROVIDER_CONFIG',
  }) as ProviderConfig;
}
