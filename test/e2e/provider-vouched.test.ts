import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { QkmApiError, QkmClient } from '../../src/client/client.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { ProviderClient } from '../../src/provider/client.js';
import { freePort } from '../helpers/etcd-cluster.js';
import { type ProviderProcess, startProviderProcess } from '../helpers/provider-process.js';
import { startProviderProxy } from '../helpers/provider-proxy.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Nodes that pin only the Provider (issue #12), end to end over loopback: `qkm provider start` in
 * its own process and three appliances configured with its URL and pinned key, none of them
 * pinning another. A and C reach the Provider directly; B (the responder in most steps) through
 * a proxy that can tamper with the Provider's answers about nodes, or drop the connection (the
 * Provider is down, as far as B can tell).
 */

const ALICE = 'alice@example.com:mail';
const BOB = 'bob@example.com:calendar';
const CAROL = 'carol@example.com:notes';

let dir: string;
let providerPort: number;
let provider: ProviderProcess;
let providerAdmin: ProviderClient;
let proxy: Server;
let proxyUrl: string;
/** `tamper`: flip a byte of the Provider's answers to GET /v1/nodes/:id; `down`: drop every request. */
let mode: 'pass' | 'tamper' | 'down' = 'pass';

interface Node {
  appliance: Appliance;
  admin: QkmClient;
  agent: QkmClient;
  nodeId: string;
}
let a: Node;
let b: Node;
let c: Node;
/** Started by the test of an unknown node. */
let d: Node | undefined;

async function startNode(name: string, providerUrl: string, agent: [string, string]): Promise<Node> {
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: join(dir, name),
      port: 0,
      logLevel: 'silent',
      mode: 'simulator',
      provider: {
        url: providerUrl,
        publicKey: provider.publicKey,
        syncIntervalSeconds: 3600,
        otkLowWater: 2,
        otkTarget: 4,
        timeoutMs: 3000,
        vouchTtlSeconds: 300,
      },
      api: { rateLimitPerMinute: 100_000 },
    } as never,
  });
  const appliance = await Appliance.start({
    simulator: simulatedQuantis,
    config,
    logger: createLogger({ level: 'silent' }),
  });
  await waitFor('quantum entropy', async () => !appliance.entropy.status().degraded, 20_000);
  const admin = new QkmClient({
    url: appliance.url,
    token: (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim(),
  });
  const { token } = await admin.agents.add(agent[0], ['sessions'], agent[1]);
  return {
    appliance,
    admin,
    agent: new QkmClient({ url: appliance.url, token }),
    nodeId: appliance.identity.nodeId,
  };
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err instanceof QkmApiError ? err.code : `unexpected: ${String(err)}`;
  }
}

async function rejections(node: Node): Promise<string[]> {
  const records = await node.admin.audit.export<{ type: string; details: { code?: string } }>({
    limit: 1000,
  });
  return records.filter((r) => r.type === 'session.rejected').map((r) => r.details.code ?? '');
}

/** A full governed session from `from` to `to`, with the key confirmed on both sides. */
async function session(from: Node, to: Node, responderAid: string) {
  const init = await from.agent.sessions.initiate({ responderAid });
  const acc = await to.agent.sessions.accept(init.handshake);
  const conf = await from.agent.sessions.confirm(init.session_id, acc.confirm, acc.token);
  expect(Buffer.from(init.key).equals(Buffer.from(acc.key))).toBe(true);
  expect(conf.confirmed).toBe(true);
  return { init, acc };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-vouched-e2e-'));
  const providerDir = join(dir, 'provider');
  await mkdir(providerDir, { recursive: true });
  providerPort = await freePort();
  provider = await startProviderProcess({ dir: providerDir, port: providerPort });
  providerAdmin = new ProviderClient({
    url: provider.url,
    publicKey: provider.publicKey,
    adminToken: provider.adminToken,
  });
  proxy = await startProviderProxy(() => providerPort, {
    drop: () => mode === 'down',
    upstreamError: 'drop',
    rewrite: (req, raw) => {
      if (mode !== 'tamper' || req.method !== 'GET' || !req.url?.startsWith('/v1/nodes/')) return;
      const i = raw.indexOf('"region":"') + 10;
      raw[i] = (raw[i] ?? 0) === 0x41 ? 0x42 : 0x41;
    },
  });
  const addr = proxy.address();
  proxyUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  a = await startNode('a', provider.url, ['alice', ALICE]);
  b = await startNode('b', proxyUrl, ['bob', BOB]);
  c = await startNode('c', provider.url, ['carol', CAROL]);
  for (const [n, label] of [
    [a, 'node A'],
    [b, 'node B'],
    [c, 'node C'],
  ] as const)
    await providerAdmin.enrol(await n.admin.identity(), label);
  await b.admin.contacts.set(BOB, [{ pattern: '*@example.com:*', budget: 100 }]);
  await a.admin.contacts.set(ALICE, [{ pattern: '*@example.com:*', budget: 100 }]);
  for (const n of [a, b, c]) await n.admin.provider.sync();
}, 150_000);

afterAll(async () => {
  for (const n of [a, b, c, d]) await n?.appliance.close().catch(() => undefined);
  if (proxy) {
    proxy.closeAllConnections();
    await new Promise((r) => proxy.close(r));
  }
  await provider?.stop();
  await rm(dir, { recursive: true, force: true });
}, 30_000);

describe('nodes that pin only the Provider', () => {
  it('no node pins another', async () => {
    for (const n of [a, b, c]) expect(await n.admin.peers.list()).toEqual([]);
  });

  it('a governed session works from A to B: each side takes the other node from the Provider', async () => {
    const { init, acc } = await session(a, b, BOB);
    expect(init.peer).toBe(b.nodeId);
    expect(init.peer_endpoint).toBe(b.appliance.url);
    expect(init.provenance.governance).toMatchObject({ responderAid: BOB, peerTrust: 'provider' });
    expect(acc.peer).toBe(a.nodeId);
    expect(acc.provenance.governance).toMatchObject({ initiatorAid: ALICE, peerTrust: 'provider' });
    expect((await b.admin.status()).peers).toEqual({ pinned: 0, vouched: 1 });
    // The responder's audit says how it knew the initiator.
    const accepted = (await b.admin.audit.export<{ type: string; details: Record<string, unknown> }>()).find(
      (r) => r.type === 'session.accepted' && r.details.session_id === acc.session_id,
    );
    expect(accepted?.details).toMatchObject({ peer: a.nodeId, peer_trust: 'provider' });
  }, 30_000);

  it('and from B to A; the access token it yields resumes a session with the vouched node', async () => {
    const { acc } = await session(b, a, ALICE);
    expect(acc.provenance.governance?.peerTrust).toBe('provider');
    const token = (await b.agent.sessions.tokens()).find((t) => t.token_id === acc.token?.id);
    expect(token).toBeDefined();
    const start = await b.agent.sessions.resume(token!.token_id);
    const resumed = await a.agent.sessions.acceptResume(start.resume);
    const done = await b.agent.sessions.completeResume(start.resume_id, resumed.answer ?? '');
    expect(Buffer.from(done.key).equals(Buffer.from(resumed.key))).toBe(true);
  }, 30_000);

  it('`peer`, when given, must be the node the Provider places the responder on', async () => {
    expect(await code(a.agent.sessions.initiate({ responderAid: BOB, peer: c.nodeId }))).toBe(
      'INVALID_PARAMETER',
    );
    const ok = await a.agent.sessions.initiate({ responderAid: BOB, peer: b.nodeId });
    expect(ok.peer).toBe(b.nodeId);
  }, 30_000);

  it('a tampered Provider answer about the initiator is refused, with an audit record', async () => {
    const init = await c.agent.sessions.initiate({ responderAid: BOB });
    mode = 'tamper';
    try {
      expect(await code(b.agent.sessions.accept(init.handshake))).toBe('PROVIDER_RESPONSE_INVALID');
    } finally {
      mode = 'pass';
    }
    expect(await rejections(b)).toContain('PROVIDER_RESPONSE_INVALID');
    // Nothing about C was cached from the bad answer: asked again, the Provider vouches for it.
    const { acc } = await session(c, b, BOB);
    expect(acc.provenance.governance?.peerTrust).toBe('provider');
  }, 30_000);

  it('a node the Provider does not know is refused (HANDSHAKE_UNKNOWN_PEER), with an audit record', async () => {
    // D: a node enrolled nowhere, which pins B and uses a prekey B's administrator gave it.
    d = await startNode('d', provider.url, ['dave', 'dave@example.com:mail']);
    await d.admin.peers.add(await b.admin.identity());
    const [prekey] = await b.admin.prekeys.publish(BOB, 1);
    const init = await d.agent.sessions.initiate({ peer: b.nodeId, responderAid: BOB, prekey });
    expect(await code(b.agent.sessions.accept(init.handshake))).toBe('HANDSHAKE_UNKNOWN_PEER');
    expect(await rejections(b)).toContain('HANDSHAKE_UNKNOWN_PEER');
  }, 60_000);

  it('with the Provider unreachable an unpinned initiator is refused (fail closed); a pinned one still works', async () => {
    // D is enrolled now, but B cannot reach the Provider to hear it.
    await providerAdmin.enrol(await d!.admin.identity(), 'node D');
    await d!.admin.provider.sync();
    const fromD = await d!.agent.sessions.initiate({ responderAid: BOB });
    const fromA = await a.agent.sessions.initiate({ responderAid: BOB });
    const fromC = await c.agent.sessions.initiate({ responderAid: BOB });
    mode = 'down';
    try {
      expect(await code(b.agent.sessions.accept(fromD.handshake))).toBe('PROVIDER_UNAVAILABLE');
      expect(await rejections(b)).toContain('PROVIDER_UNAVAILABLE');
      // Pinned by B's administrator: the pin takes precedence over the Provider's word.
      await b.admin.peers.add(await a.admin.identity());
      const acc = await b.agent.sessions.accept(fromA.handshake);
      expect(acc.provenance.governance?.peerTrust).toBe('pinned');
      // A vouch B holds keeps working until its TTL runs out (README, "Provider").
      const fromCached = await b.agent.sessions.accept(fromC.handshake);
      expect(fromCached.provenance.governance?.peerTrust).toBe('provider');
    } finally {
      mode = 'pass';
    }
    // Reachable again: D is vouched for.
    const again = await d!.agent.sessions.initiate({ responderAid: BOB });
    expect((await b.agent.sessions.accept(again.handshake)).provenance.governance?.peerTrust).toBe(
      'provider',
    );
  }, 60_000);
});
