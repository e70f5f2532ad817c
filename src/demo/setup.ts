import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generateSimCerts } from '../../simulators/kme/certs.js';
import { runKmePairFromCerts } from '../../simulators/kme/pair.js';
import { type KmePairControl, forkKmePair } from '../../simulators/kme/pair-process.js';
import { Appliance } from '../app.js';
import { type SimulatedAppliance, simulatedQuantis } from '../cli/simulator.js';
import { QkmClient } from '../client/client.js';
import { type QkmConfig, loadConfig } from '../core/config.js';
import type { EntropyServiceOptions } from '../entropy/service.js';
import { ProviderClient } from '../provider/client.js';
import { loadProviderConfig } from '../provider/config.js';
import { ProviderService } from '../provider/service.js';
import { toBase64url } from '../session/encoding.js';

/**
 * The two-node setup of the demo and the end-to-end tests, all on loopback: one BB84 link feeding
 * the ETSI 014 KME pair (kme-a serving sae-a, kme-b serving sae-b), and two qkm appliances, each
 * with its own data dir and ephemeral port, its own simulated Quantis, and its own KME as its QKD
 * key source. Without a Provider, each node is pinned as the other's peer through the admin API,
 * the way an operator would do it with `qkm peers add`. With a Provider, the nodes pin only the
 * Provider's key (config `provider.publicKey`) and are enrolled with it: governed sessions need
 * nothing else. The plain qkm/v1 sessions still need the nodes pinned to each other, so the demo
 * pins them for that part (`pinEachOther`) and unpins them again before the governed part.
 *
 * Both nodes are in region EU: DEFAULT_POLICY marks QKD in the EU as `domestic`, so QKD is
 * compliant only when both ends are in the EU. Putting the nodes in different regions would make
 * the QKD posture non-compliant rather than demonstrate it.
 */

export const DEMO_REGION = 'EU';

export interface NodeSpec {
  name: 'a' | 'b';
  saeId: string;
  kmeId: string;
}

const NODES: readonly NodeSpec[] = [
  { name: 'a', saeId: 'sae-a', kmeId: 'kme-a' },
  { name: 'b', saeId: 'sae-b', kmeId: 'kme-b' },
];

export interface TwoNodeSetupOptions {
  /** Where certs and data dirs go; default a fresh temp dir, removed by `stop()`. */
  baseDir?: string;
  /** Fibre length of the simulated BB84 link (default 25 km). */
  distanceKm?: number;
  /** Simulated seconds per real second of the BB84 link (default 20: ~110 keys/s at 25 km). */
  timeScale?: number;
  /** Extra config for both appliances (e.g. `api.rateLimitPerMinute` for the bench). */
  configOverrides?: Partial<QkmConfig>;
  /**
   * Run the KME pair and its link in a child process (as a KME is another machine), so its work
   * is not charged to the nodes' event loop. Default false: in this process.
   */
  kmeProcess?: boolean;
  /**
   * EntropyService tuning for both appliances. The default shortens the source monitor's back-off
   * so a quarantined or recovered Quantis is noticed within a fraction of a second.
   */
  entropyTuning?: Partial<EntropyServiceOptions>;
  /**
   * Also run a Provider (its own data dir and loopback port, in this process), configure both
   * nodes with its URL and pinned key, and enrol them with it (governed sessions, issue #12).
   */
  provider?: boolean;
  /**
   * Pin the nodes to each other (`qkm peers add` on both). Default: true without a Provider,
   * false with one (the nodes then pin only the Provider).
   */
  pinPeers?: boolean;
}

export interface DemoProvider {
  service: ProviderService;
  url: string;
  publicKey: string;
  /** The Provider administrator's client. */
  admin: ProviderClient;
}

export interface DemoNode {
  name: 'a' | 'b';
  appliance: SimulatedAppliance;
  /** The `default` agent (scopes entropy, keys, sessions). */
  client: QkmClient;
  /** The `admin` agent, used to pin the peer. */
  admin: QkmClient;
  nodeId: string;
  saeId: string;
  kmeId: string;
}

/** What `qkm demo --hold` prints: enough for a third party to drive the running setup. */
export interface SetupDescription {
  nodes: Array<{
    name: string;
    url: string;
    token_file: string;
    admin_token_file: string;
    node_id: string;
    region: string;
    sae_id: string;
    kme_id: string;
  }>;
  kmes: Array<{ id: string; url: string; saes: string[] }>;
  provider?: { url: string; provider_id: string; admin_token_file: string };
  link: { distance_km: number; time_scale: number; model_rate_bps: number };
  certs_dir: string;
}

export interface TwoNodeSetup {
  a: DemoNode;
  b: DemoNode;
  /** The KME pair and its BB84 link, in this process or in a child process. */
  kme: KmePairControl;
  /** The Provider, when started with `provider: true`. */
  provider?: DemoProvider;
  baseDir: string;
  describe(): SetupDescription;
  /** Stops both appliances, then the KME pair and the link; removes the temp dir if it made one. Idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_TUNING: Partial<EntropyServiceOptions> = {
  monitor: { backoff: { initialMs: 30, maxMs: 250, factor: 2 }, sentinelIntervalMs: 50 },
};

async function readToken(file: string): Promise<string> {
  return (await readFile(file, 'utf8')).trim();
}

export async function startTwoNodeSetup(options: TwoNodeSetupOptions = {}): Promise<TwoNodeSetup> {
  const ownsDir = options.baseDir === undefined;
  const baseDir = resolve(options.baseDir ?? (await mkdtemp(join(tmpdir(), 'qkm-demo-'))));
  const distanceKm = options.distanceKm ?? 25;
  const timeScale = options.timeScale ?? 20;
  const stops: Array<() => Promise<unknown>> = [];
  const stopAll = async () => {
    for (const fn of stops.splice(0).reverse()) await fn().catch(() => undefined);
    if (ownsDir) await rm(baseDir, { recursive: true, force: true });
  };
  try {
    const certsDir = join(baseDir, 'certs');
    const certs = await generateSimCerts(certsDir);
    const kme = await startKmeLink({
      certsDir,
      distanceKm,
      ports: { a: 0, b: 0 },
      link: { timeScale },
      inChildProcess: options.kmeProcess === true,
    });
    // kme.stop() also stops the link (the pair started it once listening).
    stops.push(() => kme.stop());

    let provider: DemoProvider | undefined;
    if (options.provider) {
      const service = await ProviderService.start({
        config: loadProviderConfig({
          env: {},
          overrides: { dataDir: join(baseDir, 'provider'), host: '127.0.0.1', port: 0, logLevel: 'silent' },
        }),
      });
      stops.push(() => service.close());
      const publicKey = toBase64url(service.identity.publicKey);
      provider = {
        service,
        url: service.url,
        publicKey,
        admin: new ProviderClient({
          url: service.url,
          publicKey,
          adminToken: await readToken(service.adminTokenFile),
        }),
      };
    }

    const kmeUrl = (id: string) => {
      const k = kme.description.kmes.find((x) => x.id === id);
      if (!k) throw new Error(`KME ${id} missing from the pair`);
      return k.url;
    };
    const nodes: DemoNode[] = [];
    for (const spec of NODES) {
      const sae = certs.saes[spec.saeId];
      if (!sae) throw new Error(`no certificate for ${spec.saeId}`);
      const config = loadConfig({
        env: {},
        overrides: {
          ...options.configOverrides,
          dataDir: join(baseDir, `node-${spec.name}`),
          host: '127.0.0.1',
          port: 0,
          region: DEMO_REGION,
          logLevel: 'silent',
          qkd: {
            kmeUrl: kmeUrl(spec.kmeId),
            kmeId: spec.kmeId,
            saeId: spec.saeId,
            caPath: certs.ca.cert,
            certPath: sae.cert,
            keyPath: sae.key,
            timeoutMs: 5000,
            fallbackTimeoutMs: 1000,
          },
          // The demo publishes on demand (POST /v1/provider/sync); the periodic job stays idle.
          ...(provider
            ? {
                provider: {
                  url: provider.url,
                  publicKey: provider.publicKey,
                  syncIntervalSeconds: 3600,
                  otkLowWater: 5,
                  otkTarget: 10,
                  timeoutMs: 5000,
                  vouchTtlSeconds: 300,
                },
              }
            : {}),
        },
      });
      const appliance = await Appliance.start({
        simulator: simulatedQuantis,
        config,
        entropyTuning: options.entropyTuning ?? DEFAULT_TUNING,
      });
      stops.push(() => appliance.close());
      const tokenFile = appliance.tokenFiles.default;
      const adminFile = appliance.tokenFiles.admin;
      if (!tokenFile || !adminFile) throw new Error('appliance did not create its token files');
      nodes.push({
        name: spec.name,
        appliance,
        client: new QkmClient({ url: appliance.url, token: await readToken(tokenFile) }),
        admin: new QkmClient({ url: appliance.url, token: await readToken(adminFile) }),
        nodeId: appliance.identity.nodeId,
        saeId: spec.saeId,
        kmeId: spec.kmeId,
      });
    }
    const [a, b] = nodes as [DemoNode, DemoNode];
    if (options.pinPeers ?? !provider) await pinEachOther({ a, b });
    // The Provider's administrator enrols both nodes by their identity bundles.
    for (const n of nodes) await provider?.admin.enrol(await n.client.identity(), `node ${n.name}`);

    let stopped: Promise<void> | undefined;
    return {
      a,
      b,
      kme,
      ...(provider ? { provider } : {}),
      baseDir,
      describe: () => ({
        nodes: nodes.map((n) => ({
          name: n.name,
          url: n.appliance.url,
          token_file: n.appliance.tokenFiles.default ?? '',
          admin_token_file: n.appliance.tokenFiles.admin ?? '',
          node_id: n.nodeId,
          region: DEMO_REGION,
          sae_id: n.saeId,
          kme_id: n.kmeId,
        })),
        kmes: kme.description.kmes.map((k) => ({ id: k.id, url: k.url, saes: k.saes })),
        ...(provider
          ? {
              provider: {
                url: provider.url,
                provider_id: provider.service.identity.providerId,
                admin_token_file: provider.service.adminTokenFile,
              },
            }
          : {}),
        link: {
          distance_km: distanceKm,
          time_scale: timeScale,
          model_rate_bps: kme.description.link.model_rate_bps,
        },
        certs_dir: certsDir,
      }),
      stop: () => {
        stopped ??= stopAll();
        return stopped;
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * Pins each node as the other's peer, from the public bundle served by the peer's own API, as an
 * operator would (`qkm peers add`). Idempotent: pinning the same bundle again changes nothing.
 */
export async function pinEachOther(setup: Pick<TwoNodeSetup, 'a' | 'b'>): Promise<void> {
  await setup.a.admin.peers.add(await setup.b.client.identity());
  await setup.b.admin.peers.add(await setup.a.client.identity());
}

/** Undoes `pinEachOther` (whichever pins exist): the nodes then know each other only through the Provider. */
export async function unpinEachOther(setup: Pick<TwoNodeSetup, 'a' | 'b'>): Promise<void> {
  for (const [node, peer] of [
    [setup.a, setup.b],
    [setup.b, setup.a],
  ] as const) {
    const pinned = await node.admin.peers.list<{ node_id: string }>();
    if (pinned.some((p) => p.node_id === peer.nodeId)) await node.admin.peers.remove(peer.nodeId);
  }
}

async function startKmeLink(
  o: Parameters<typeof runKmePairFromCerts>[0] & { inChildProcess: boolean },
): Promise<KmePairControl> {
  const { inChildProcess, ...options } = o;
  if (inChildProcess) return forkKmePair(options);
  const running = await runKmePairFromCerts(options);
  return {
    description: running.description,
    stopLink: async () => running.generator.stop(),
    restartLink: async () => {
      running.generator.resume();
      running.generator.start();
    },
    stop: () => running.stop(),
  };
}
