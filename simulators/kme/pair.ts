/**
 * A pair of simulated ETSI 014 KMEs fed by one key supply: each KME has its SAE listener and its
 * KME-to-KME listener (two ports), its own pool, and its own certificate from `certsDir` (layout
 * in `certs.ts`). kme-a is the primary (it makes every key allocation, see `kme-core.ts`).
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { LinkKeyGenerator, type LinkKeyGeneratorOptions } from '../bb84/generator.js';
import type { TlsMaterial } from './http-common.js';
import { urlOf } from './http-common.js';
import { KmeCore } from './kme-core.js';
import { buildInternalApi, PeerClient } from './peer-link.js';
import { buildSaeApi } from './sae-api.js';
import { type FeederStats, PairFeeder } from './supply.js';
import type { KeySupply, KmeLimits } from './types.js';

export const DEFAULT_LIMITS: Readonly<KmeLimits> = Object.freeze({
  maxKeyCount: 1000,
  maxKeyPerRequest: 128,
  minKeySize: 64,
  maxKeySize: 8192,
  maxSaeIdCount: 0,
});

/** One KME of the pair. Omitted fields take the defaults of its side (see {@link KmePairOptions}). */
export interface KmeSpec {
  /** KME ID = CN of `<id>.pem` in certsDir. */
  id?: string;
  /** SAE IDs served (CN of their client certificates). */
  saes?: string[];
  /** SAE API port; 0 = ephemeral. */
  port?: number;
  /** KME-to-KME port; default 0 (ephemeral). */
  internalPort?: number;
}

export interface KmePairOptions {
  /** Directory written by `generateSimCerts`: ca.pem, <kme>.pem, <kme>.key. */
  certsDir: string;
  /** Feeds both pools with the same blocks. Without one the pools stay empty. */
  supply?: KeySupply;
  /** Call `supply.start()` once listening (default true). `stop()` always calls `supply.stop()`. */
  startSupply?: boolean;
  /** Link key size in bits = pool unit = advertised `key_size`. Default: supply's `keySizeBits`, else 256. */
  keySizeBits?: number;
  /** Applied to both KMEs; see {@link DEFAULT_LIMITS}. */
  limits?: Partial<KmeLimits>;
  /** Listen address, default 127.0.0.1. */
  host?: string;
  /** Defaults: `{ id: 'kme-a', saes: ['sae-a'], port: 8001 }`. kme-a is the primary. */
  a?: KmeSpec;
  /** Defaults: `{ id: 'kme-b', saes: ['sae-b'], port: 8002 }`. */
  b?: KmeSpec;
  /** KME-to-KME request timeout, ms (default 5000). */
  peerTimeoutMs?: number;
}

export interface KmeHandle {
  readonly id: string;
  readonly saes: readonly string[];
  /** `https://127.0.0.1:<port>` of the SAE API (append `/api/v1/keys/...`). */
  readonly url: string;
  readonly port: number;
  /** The KME-to-KME listener (internal and admin routes). */
  readonly internalUrl: string;
  readonly internalPort: number;
  readonly role: 'primary' | 'secondary';
  /** The KME's logic and pool, for tests and the CLI's status line. */
  readonly core: KmeCore;
}

export interface KmePair {
  readonly a: KmeHandle;
  readonly b: KmeHandle;
  readonly supply: KeySupply | undefined;
  readonly feeder: PairFeeder | undefined;
  feederStats(): FeederStats | undefined;
  /** Stops the supply and closes all four listeners and the peer connections. Idempotent. */
  stop(): Promise<void>;
}

/** Reads the CA and a KME's certificate and key from a directory laid out as in certs.ts. */
export async function loadKmeTls(certsDir: string, kmeId: string): Promise<TlsMaterial> {
  const [ca, cert, key] = await Promise.all([
    readFile(join(certsDir, 'ca.pem'), 'utf8'),
    readFile(join(certsDir, `${kmeId}.pem`), 'utf8'),
    readFile(join(certsDir, `${kmeId}.key`), 'utf8'),
  ]);
  return { ca, cert, key };
}

function portOf(app: FastifyInstance): number {
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP');
  return address.port;
}

/** Starts both KMEs (internal listeners first, then SAE listeners), wires them and the supply. */
export async function startKmePair(options: KmePairOptions): Promise<KmePair> {
  const host = options.host ?? '127.0.0.1';
  const specA = { id: 'kme-a', saes: ['sae-a'], port: 8001, internalPort: 0, ...options.a };
  const specB = { id: 'kme-b', saes: ['sae-b'], port: 8002, internalPort: 0, ...options.b };
  if (specA.id === specB.id) throw new TypeError('the two KMEs need different IDs');
  const overlap = specA.saes.filter((s) => specB.saes.includes(s));
  if (overlap.length > 0) throw new TypeError(`an SAE belongs to one KME only: ${overlap.join(', ')}`);
  const supplySize = (options.supply as { keySizeBits?: unknown } | undefined)?.keySizeBits;
  const unitBits = options.keySizeBits ?? (typeof supplySize === 'number' ? supplySize : 256);
  const limits: KmeLimits = { ...DEFAULT_LIMITS, ...options.limits };

  const [tlsA, tlsB] = await Promise.all([
    loadKmeTls(options.certsDir, specA.id),
    loadKmeTls(options.certsDir, specB.id),
  ]);
  const coreA = new KmeCore({
    id: specA.id,
    saes: specA.saes,
    peerId: specB.id,
    peerSaes: specB.saes,
    role: 'primary',
    unitBits,
    limits,
  });
  const coreB = new KmeCore({
    id: specB.id,
    saes: specB.saes,
    peerId: specA.id,
    peerSaes: specA.saes,
    role: 'secondary',
    unitBits,
    limits,
  });

  const apps: FastifyInstance[] = [];
  const clients: PeerClient[] = [];
  let feeder: PairFeeder | undefined;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    options.supply?.stop?.();
    feeder?.detach();
    for (const c of clients) c.close();
    await Promise.allSettled(apps.map((app) => app.close()));
  };

  try {
    const internalA = buildInternalApi(coreA, tlsA);
    const internalB = buildInternalApi(coreB, tlsB);
    apps.push(internalA, internalB);
    await internalA.listen({ host, port: specA.internalPort });
    await internalB.listen({ host, port: specB.internalPort });
    const clientA = new PeerClient({
      url: urlOf(internalB, host),
      peerId: specB.id,
      tls: tlsA,
      timeoutMs: options.peerTimeoutMs,
    });
    const clientB = new PeerClient({
      url: urlOf(internalA, host),
      peerId: specA.id,
      tls: tlsB,
      timeoutMs: options.peerTimeoutMs,
    });
    clients.push(clientA, clientB);
    coreA.connectPeer(clientA);
    coreB.connectPeer(clientB);

    const saeA = buildSaeApi(coreA, tlsA);
    const saeB = buildSaeApi(coreB, tlsB);
    apps.push(saeA, saeB);
    await saeA.listen({ host, port: specA.port });
    await saeB.listen({ host, port: specB.port });

    if (options.supply !== undefined) {
      feeder = new PairFeeder(options.supply, [coreA.pool, coreB.pool]);
      if (options.startSupply !== false) options.supply.start?.();
    }

    const handle = (
      core: KmeCore,
      spec: typeof specA,
      sae: FastifyInstance,
      internal: FastifyInstance,
    ): KmeHandle => ({
      id: core.id,
      saes: [...spec.saes],
      url: urlOf(sae, host),
      port: portOf(sae),
      internalUrl: urlOf(internal, host),
      internalPort: portOf(internal),
      role: core.role,
      core,
    });
    return {
      a: handle(coreA, specA, saeA, internalA),
      b: handle(coreB, specB, saeB, internalB),
      supply: options.supply,
      feeder,
      feederStats: () => (feeder === undefined ? undefined : { ...feeder.stats }),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface RunKmePairOptions {
  certsDir: string;
  /** Fibre length of the simulated BB84 link, km (default 25). */
  distanceKm?: number;
  /** SAE API ports (defaults 8001 and 8002; 0 = ephemeral). */
  ports?: { a?: number; b?: number };
  /** SAEs served (defaults `['sae-a']` on kme-a, `['sae-b']` on kme-b); each needs its certificate in certsDir. */
  saes?: { a?: string[]; b?: string[] };
  /** Passed to the LinkKeyGenerator (scheme, timeScale, eavesdropper, …). */
  link?: Omit<LinkKeyGeneratorOptions, 'distanceKm'>;
  limits?: Partial<KmeLimits>;
}

/** What `qkm sim kme --json` prints. */
export interface KmePairDescription {
  kmes: Array<{
    id: string;
    url: string;
    saes: string[];
    internal_url: string;
    role: 'primary' | 'secondary';
  }>;
  link: { distance_km: number; scheme: string; key_size: number; model_rate_bps: number; qber: number };
  certs_dir: string;
  api_base: '/api/v1/keys/';
  /** Ready-made curl lines for a third party (run from any directory; paths are absolute). */
  curl: string[];
}

export interface RunningKmePair {
  description: KmePairDescription;
  pair: KmePair;
  generator: LinkKeyGenerator;
  stop(): Promise<void>;
}

/**
 * For `qkm sim kme --certs <dir> [--distance km] [--json]`: the default pair (kme-a/sae-a,
 * kme-b/sae-b) fed by one BB84 LinkKeyGenerator, and its JSON description. Runs until `stop()`.
 */
export async function runKmePairFromCerts(options: RunKmePairOptions): Promise<RunningKmePair> {
  const distanceKm = options.distanceKm ?? 25;
  // Absolute, so the printed curl lines work from any directory.
  const certsDir = resolve(options.certsDir);
  const generator = new LinkKeyGenerator({ ...options.link, distanceKm });
  const pair = await startKmePair({
    certsDir,
    supply: generator,
    keySizeBits: generator.keySizeBits,
    limits: options.limits,
    a: { port: options.ports?.a ?? 8001, saes: options.saes?.a ?? ['sae-a'] },
    b: { port: options.ports?.b ?? 8002, saes: options.saes?.b ?? ['sae-b'] },
  });
  const description: KmePairDescription = {
    kmes: [pair.a, pair.b].map((k) => ({
      id: k.id,
      url: k.url,
      saes: [...k.saes],
      internal_url: k.internalUrl,
      role: k.role,
    })),
    link: {
      distance_km: distanceKm,
      scheme: options.link?.scheme ?? 'vacuum-weak',
      key_size: generator.keySizeBits,
      model_rate_bps: generator.modelRateBps,
      qber: generator.blockQber,
    },
    certs_dir: certsDir,
    api_base: '/api/v1/keys/',
    curl: curlLines(certsDir, pair),
  };
  return { description, pair, generator, stop: () => pair.stop() };
}

/** The curl lines of the README, for this pair's URLs and certificate paths. */
export function curlLines(certsDir: string, pair: Pick<KmePair, 'a' | 'b'>): string[] {
  const saeA = pair.a.saes[0] ?? 'sae-a';
  const saeB = pair.b.saes[0] ?? 'sae-b';
  // Quote paths only when needed, so the common case reads like the README.
  const sh = (path: string) =>
    /^[A-Za-z0-9_./:-]+$/.test(path) ? path : `'${path.replaceAll("'", "'\\''")}'`;
  const file = (name: string) => sh(join(certsDir, name));
  const as = (sae: string) =>
    `curl --cacert ${file('ca.pem')} --cert ${file(`${sae}.pem`)} --key ${file(`${sae}.key`)}`;
  return [
    `${as(saeA)} ${pair.a.url}/api/v1/keys/${saeB}/status`,
    `${as(saeA)} '${pair.a.url}/api/v1/keys/${saeB}/enc_keys?number=2&size=256'`,
    `${as(saeA)} -H 'Content-Type: application/json' -d '{"number":1,"size":512}' ${pair.a.url}/api/v1/keys/${saeB}/enc_keys`,
    `${as(saeB)} '${pair.b.url}/api/v1/keys/${saeA}/dec_keys?key_ID=<key_ID>'`,
    `${as(saeB)} -H 'Content-Type: application/json' -d '{"key_IDs":[{"key_ID":"<key_ID>"}]}' ${pair.b.url}/api/v1/keys/${saeA}/dec_keys`,
  ];
}
