import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/api/metrics.js';
import { QkdLinkBoard } from '../../src/core/qkd-links.js';
import type { ApplianceStatus } from '../../src/status.js';
import { FakeEntropy } from '../helpers/api-fakes.js';
import { promtoolAvailable, promtoolCheck } from '../helpers/promtool.js';

/** Metrics rendered from status snapshots: what a scrape says when a QKD link comes and goes. */

const entropy = new FakeEntropy();
const board = new QkdLinkBoard('kme-a', 'https://127.0.0.1:1');

const status = async (): Promise<ApplianceStatus> => ({
  version: 't',
  region: 'EU',
  mode: 'simulator',
  startedAt: new Date().toISOString(),
  uptimeSeconds: 1,
  degraded: false,
  reasons: [],
  entropy: entropy.status(),
  keys: { active: 0, taken: 0, expired: 0 },
  qkd: board.list(),
  sessions: {
    initiated: { PQC: 1, 'PQC+QRNG': 2, 'QKD+PQC+QRNG': 3 },
    initiatedDegraded: { PQC: 1, 'PQC+QRNG': 0, 'QKD+PQC+QRNG': 0 },
    refused: 1,
    accepted: { PQC: 0, 'PQC+QRNG': 0, 'QKD+PQC+QRNG': 2 },
    rejected: { HANDSHAKE_REPLAYED: 1 },
    abandoned: {},
    qkdKeysWasted: 2,
  },
  audit: { records: 9, sealedThrough: 8 },
  pqc: {
    backend: 'liboqs-wasm',
    signature: 'liboqs-wasm',
    kemDecaps: 'liboqs-wasm',
    kemEncaps: 'noble (caller randomness)',
    keygen: 'noble (from seed)',
    legacyVerified: 2,
  },
});

const metrics = createMetrics(status);
// A scrape shares one status snapshot among its gauges and drops it on the next turn of the event
// loop; scrapes over HTTP are always turns apart, back-to-back calls here need the turn made.
const scrape = async () => {
  await new Promise((r) => setImmediate(r));
  return metrics.registry.metrics();
};

describe('QKD link metrics', () => {
  it('shows the KME stock while the link is up, and no stock (not the last one) once it is down', async () => {
    board.record('sae-b', { answered: true, storedKeyCount: 42 });
    let text = await scrape();
    expect(text).toMatch(/^qkm_qkd_link_up\{peer_sae="sae-b"\} 1$/m);
    expect(text).toMatch(/^qkm_qkd_stored_keys\{peer_sae="sae-b"\} 42$/m);
    expect(text).toMatch(/^qkm_degraded\{component="qkd"\} 0$/m);

    board.record('sae-b', { answered: false, error: 'connect ECONNREFUSED' });
    expect(board.list()[0]).not.toHaveProperty('storedKeyCount');
    text = await scrape();
    expect(text).toMatch(/^qkm_qkd_link_up\{peer_sae="sae-b"\} 0$/m);
    expect(text).not.toMatch(/^qkm_qkd_stored_keys\{/m);
    // QKD down, entropy fine: the two components say so separately.
    expect(text).toMatch(/^qkm_degraded\{component="qkd"\} 1$/m);
    expect(text).toMatch(/^qkm_degraded\{component="entropy"\} 0$/m);

    board.record('sae-b', { answered: true, storedKeyCount: 7 });
    expect(await scrape()).toMatch(/^qkm_qkd_stored_keys\{peer_sae="sae-b"\} 7$/m);
  });

  it('entropy degraded, QKD fine: only the entropy component is 1', async () => {
    entropy.quantum = false;
    try {
      const text = await scrape();
      expect(text).toMatch(/^qkm_degraded\{component="entropy"\} 1$/m);
      expect(text).toMatch(/^qkm_degraded\{component="qkd"\} 0$/m);
    } finally {
      entropy.quantum = true;
    }
  });

  it('passes promtool check metrics with sessions, links and audit figures filled in', async (ctx) => {
    if (!promtoolAvailable()) ctx.skip('promtool is not installed (.ci/run installs prometheus)');
    board.record('sae-c', { answered: false, error: 'timeout' });
    const { code, output } = await promtoolCheck(await scrape());
    expect(output).toBe('');
    expect(code).toBe(0);
  });
});

describe('PQC backend metrics', () => {
  it('name the backend and the library of each step, and count legacy-form verifications', async () => {
    const text = await scrape();
    expect(text).toMatch(
      /^qkm_pqc_backend_info\{backend="liboqs-wasm",signature="liboqs-wasm",kem_decaps="liboqs-wasm",kem_encaps="noble \(caller randomness\)",keygen="noble \(from seed\)"\} 1$/m,
    );
    expect(text).toMatch(/^qkm_pqc_legacy_verifications_total 2$/m);
  });
});
