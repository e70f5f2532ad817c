/**
 * The KME-to-KME stream on its own: it checks the peer's KME ID, reports the peer's refusals as
 * ETSI errors, and reconnects after the connection drops.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSimCerts } from '../../simulators/kme/certs.js';
import { EtsiHttpError } from '../../simulators/kme/errors.js';
import { KmeCore } from '../../simulators/kme/kme-core.js';
import { DEFAULT_LIMITS, loadKmeTls } from '../../simulators/kme/pair.js';
import { buildInternalApi, PeerClient } from '../../simulators/kme/peer-link.js';
import { ManualKeySupply } from '../../simulators/kme/supply.js';
import type { TlsMaterial } from '../../simulators/kme/http-common.js';

let dir: string;
let tlsA: TlsMaterial;
let tlsB: TlsMaterial;
const apps: FastifyInstance[] = [];
const clients: PeerClient[] = [];

const secondary = () =>
  new KmeCore({
    id: 'kme-b',
    saes: ['sae-b'],
    peerId: 'kme-a',
    peerSaes: ['sae-a'],
    role: 'secondary',
    unitBits: 256,
    limits: DEFAULT_LIMITS,
  });

async function serve(core: KmeCore, port = 0): Promise<{ app: FastifyInstance; url: string }> {
  const app = buildInternalApi(core, tlsB);
  apps.push(app);
  await app.listen({ host: '127.0.0.1', port });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { app, url: `https://127.0.0.1:${address.port}` };
}

function client(url: string, peerId = 'kme-b'): PeerClient {
  const c = new PeerClient({ url, peerId, tls: tlsA, timeoutMs: 3000 });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-kme-peer-'));
  await generateSimCerts(dir);
  tlsA = await loadKmeTls(dir, 'kme-a');
  tlsB = await loadKmeTls(dir, 'kme-b');
});

afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.allSettled(apps.map((a) => a.close()));
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('PeerClient ↔ internal listener', () => {
  it('assigns over the stream, relays refusals as EtsiHttpError, and reconnects after a drop', async () => {
    const core = secondary();
    const link = new ManualKeySupply().push(3);
    core.pool.accept(link);
    const first = await serve(core);
    const peer = client(first.url);
    const assign = (keyId: string) =>
      peer.assign({ master_SAE_ID: 'sae-a', slave_SAE_IDs: ['sae-b'], keys: [{ key_ID: keyId, size: 256 }] });

    await assign(link[0]!.keyId);
    expect(core.pool.reservedKeyCount).toBe(1);
    // Pipelined calls on the one connection.
    await Promise.all([
      assign(link[1]!.keyId),
      expect(assign('not-a-unit')).rejects.toBeInstanceOf(EtsiHttpError),
    ]);
    expect(core.pool.reservedKeyCount).toBe(2);

    const port = Number(new URL(first.url).port);
    await first.app.close();
    await expect(assign(link[2]!.keyId)).rejects.toThrow();
    expect(core.pool.storedCount).toBe(1);
    await serve(core, port);
    await assign(link[2]!.keyId);
    expect(core.pool.reservedKeyCount).toBe(3);
  });

  it('refuses a listener whose certificate does not name the expected peer KME', async () => {
    const { url } = await serve(secondary());
    await expect(
      client(url, 'kme-x').assign({ master_SAE_ID: 'sae-a', slave_SAE_IDs: ['sae-b'], keys: [] }),
    ).rejects.toThrow(/kme-x/);
  });
});
