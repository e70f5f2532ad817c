import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { QkmApiError, QkmClient } from '../../src/client/client.js';
import { loadConfig } from '../../src/core/config.js';
import { isQkmError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import type { SignedPrekey } from '../../src/governance/prekeys.js';
import { ProviderClient } from '../../src/provider/client.js';
import { HEADER, signRequest } from '../../src/provider/wire.js';
import { toBase64url } from '../../src/session/encoding.js';
import { runCli } from '../cli/run-cli.js';
import { freePort } from '../helpers/etcd-cluster.js';
import { type ProviderProcess, startProviderProcess } from '../helpers/provider-process.js';
import { startProviderProxy } from '../helpers/provider-proxy.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The Provider end to end over loopback HTTP (issue #12): `qkm provider start` in its own
 * process, two appliances configured with its URL and pinned key. Node A reaches the Provider
 * through a proxy that can tamper with answers; node B directly.
 */

const BOB = 'bob@example.com:calendar';
const ALICE = 'alice@example.com:mail';
const EVE = 'eve@evil.example:mail';

let dir: string;
let providerDir: string;
let providerPort: number;
let provider: ProviderProcess;
let proxy: Server;
let proxyUrl: string;
let tamper = false;
let a: Appliance;
let b: Appliance;
let adminA: QkmClient;
let adminB: QkmClient;

async function startNode(name: string, providerUrl: string): Promise<Appliance> {
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
        timeoutMs: 5000,
        vouchTtlSeconds: 300,
      },
    },
  });
  const appliance = await Appliance.start({
    simulator: simulatedQuantis,
    config,
    logger: createLogger({ level: 'silent' }),
  });
  await waitFor('quantum entropy', async () => !appliance.entropy.status().degraded, 20_000);
  return appliance;
}

async function admin(appliance: Appliance): Promise<QkmClient> {
  return new QkmClient({
    url: appliance.url,
    token: (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim(),
  });
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    if (err instanceof QkmApiError) return err.code;
    return isQkmError(err) ? err.code : `unexpected: ${String(err)}`;
  }
}

const providerCli = (...args: string[]) => runCli(...args, '--dir', providerDir);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-provider-e2e-'));
  providerDir = join(dir, 'provider');
  await mkdir(providerDir, { recursive: true });
  providerPort = await freePort();
  provider = await startProviderProcess({ dir: providerDir, port: providerPort });
  // With `tamper` set, flips one character of every answer's body.
  proxy = await startProviderProxy(() => providerPort, {
    rewrite: (_req, raw) => {
      if (!tamper || raw.length <= 2) return;
      const i = raw.indexOf('"', 1) + 1;
      raw[i] = (raw[i] ?? 0) === 0x61 ? 0x62 : 0x61;
    },
  });
  const addr = proxy.address();
  proxyUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  a = await startNode('a', proxyUrl);
  b = await startNode('b', provider.url);
  adminA = await admin(a);
  adminB = await admin(b);
  await adminA.agents.add('alice', ['sessions'], ALICE);
  await adminA.agents.add('eve', ['sessions'], EVE);
  await adminB.agents.add('bob', ['sessions'], BOB);
  await adminB.contacts.set(BOB, [
    { pattern: ALICE, budget: 3 },
    { pattern: '*@evil.example:*', budget: -1 },
  ]);
}, 150_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  if (proxy) {
    proxy.closeAllConnections();
    await new Promise((r) => proxy.close(r));
  }
  await provider?.stop();
  await rm(dir, { recursive: true, force: true });
}, 30_000);

describe('the Provider between two nodes', () => {
  it('an unenrolled node is refused; the administrator enrols nodes with qkm provider enrol-node', async () => {
    expect(await code(adminB.provider.sync())).toBe('NODE_NOT_ENROLLED');
    const enrolB = await runCli(
      '--url',
      b.url,
      '--data',
      join(dir, 'b'),
      'provider',
      'enrol-node',
      '--label',
      'node B',
      '--dir',
      providerDir,
    );
    expect(enrolB.stderr).toBe('');
    expect(enrolB.stdout).toContain(`enrolled node ${b.identity.nodeId} (node B)`);
    const enrolA = await runCli(
      '--url',
      a.url,
      '--data',
      join(dir, 'a'),
      'provider',
      'enrol-node',
      '--label',
      'node A',
      '--dir',
      providerDir,
    );
    expect(enrolA.code).toBe(0);
    const status = await providerCli('--json', 'provider', 'status');
    expect(JSON.parse(status.stdout)).toMatchObject({
      nodes: 2,
      publicKey: provider.publicKey,
      enrolled: [expect.objectContaining({ label: expect.any(String) }), expect.anything()],
    });
  }, 30_000);

  it('qkm provider sync publishes agents, policies and a batch of signed prekeys', async () => {
    const r = await runCli('--url', b.url, '--data', join(dir, 'b'), 'provider', 'sync');
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(
      `${BOB}: 4 one-time prekeys at the Provider (4 published now), last-resort prekey uploaded`,
    );
    const again = await adminB.provider.sync<{
      agents: Array<{ published: number; lastResortUploaded: boolean }>;
    }>();
    expect(again.agents).toEqual([
      expect.objectContaining({ published: 0, lastResortUploaded: false, otks: 4 }),
    ]);
    await adminA.provider.sync();
  }, 60_000);

  it('an initiator node gets one verified bundle per request, each with a different OTK of the responder', async () => {
    const published = new Set((await adminB.prekeys.list<SignedPrekey>(BOB)).map((p) => p.id));
    const first = await a.provider!.bundle(BOB, ALICE);
    const second = await a.provider!.bundle(BOB, ALICE);
    expect(first).toMatchObject({
      agent: { aid: BOB, node_id: b.identity.nodeId, endpoint: b.url },
      node: { identity: b.identity.bundle },
      lastResort: false,
      decision: { used: 1, remaining: 2 },
    });
    expect(second.decision).toMatchObject({ used: 2, remaining: 1 });
    expect(first.prekey.id).not.toBe(second.prekey.id);
    expect(published.has(first.prekey.id) && published.has(second.prekey.id)).toBe(true);
    // A blocked initiator gets nothing and spends nothing.
    expect(await code(a.provider!.bundle(BOB, EVE))).toBe('CONTACT_BLOCKED');
    expect((await b.provider!.stock(BOB)).otks).toBe(2);
  });

  it('the budget runs out at the Provider; the responder replenishes below the low-water mark', async () => {
    await a.provider!.bundle(BOB, ALICE);
    expect(await code(a.provider!.bundle(BOB, ALICE))).toBe('CONTACT_BUDGET_EXHAUSTED');
    expect((await b.provider!.stock(BOB)).otks).toBe(1);
    const r = await adminB.provider.sync<{ agents: Array<{ published: number; otks: number }> }>();
    expect(r.agents[0]).toMatchObject({ published: 3, otks: 4 });
  }, 30_000);

  it('unsigned and forged node requests are refused', async () => {
    const body = JSON.stringify({ responder: BOB, initiator: ALICE });
    const unsigned = await fetch(`${provider.url}/v1/bundles`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(unsigned.status).toBe(401);
    expect(((await unsigned.json()) as { error: string }).error).toBe('UNAUTHORIZED');
    // Someone with a key of their own claims to be node A.
    const impostor = new ProviderClient({
      url: provider.url,
      publicKey: provider.publicKey,
      signer: { nodeId: a.identity.nodeId, signing: { secretKey: b.identity.signing.secretKey } },
    });
    expect(await code(impostor.bundle(BOB, ALICE))).toBe('UNAUTHORIZED');
    const timestamp = String(Date.now());
    const nonce = toBase64url(new Uint8Array(randomBytes(24)));
    const sig = signRequest(
      {
        method: 'POST',
        path: '/v1/bundles',
        nodeId: a.identity.nodeId,
        timestamp,
        nonce,
        body: Buffer.from(body),
      },
      a.identity.signing.secretKey,
    );
    const altered = await fetch(`${provider.url}/v1/bundles`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [HEADER.node]: a.identity.nodeId,
        [HEADER.timestamp]: timestamp,
        [HEADER.nonce]: nonce,
        [HEADER.signature]: sig,
      },
      body: JSON.stringify({ responder: BOB, initiator: EVE }),
    });
    expect(altered.status).toBe(401);
  });

  it('a tampered answer is refused by the node (the Provider signature covers it)', async () => {
    tamper = true;
    try {
      expect(await code(a.provider!.identity())).toBe('PROVIDER_RESPONSE_INVALID');
      expect(await code(a.provider!.stock(ALICE))).toBe('PROVIDER_RESPONSE_INVALID');
      expect(await code(adminA.provider.sync())).toBe('PROVIDER_RESPONSE_INVALID');
    } finally {
      tamper = false;
    }
    expect((await a.provider!.identity()).provider_id).toBe(provider.providerId);
  }, 30_000);

  it('a Provider killed with -9 and restarted keeps its identity, directory, stock and budgets', async () => {
    const before = JSON.parse((await providerCli('--json', 'provider', 'status')).stdout);
    await provider.kill();
    expect(await code(b.provider!.stock(BOB))).toBe('PROVIDER_UNAVAILABLE');
    // Through the proxy the node gets an unsigned 502: untrusted, whatever it says.
    expect(await code(a.provider!.bundle(BOB, ALICE))).toBe('PROVIDER_RESPONSE_INVALID');
    provider = await startProviderProcess({ dir: providerDir, port: providerPort });
    expect(provider.publicKey).toBe(before.publicKey);
    const after = JSON.parse((await providerCli('--json', 'provider', 'status')).stdout);
    expect(after).toMatchObject({ nodes: 2, agents: 3, otks: before.otks, lastResort: before.lastResort });
    // Alice spent her budget of 3 before the restart; the restart does not give it back.
    expect(await code(a.provider!.bundle(BOB, ALICE))).toBe('CONTACT_BUDGET_EXHAUSTED');
  }, 60_000);
});
