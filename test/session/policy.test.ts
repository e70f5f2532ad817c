import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY, type PolicyPeer, PosturePolicy } from '../../src/session/policy.js';
import { FakeEntropy } from './fakes.js';

const peer = (region: string, extra: Partial<PolicyPeer> = {}): PolicyPeer => ({
  nodeId: 'c'.repeat(32),
  region,
  saeId: 'sae-peer',
  kmeId: 'kme-peer',
  ...extra,
});

function policy(region: string, opts: { qkdUp?: boolean; quantum?: boolean; config?: object } = {}) {
  const entropy = new FakeEntropy();
  entropy.quantum = opts.quantum ?? true;
  return new PosturePolicy({
    region,
    saeId: 'sae-me',
    entropy,
    qkdAvailability: async () => ((opts.qkdUp ?? true) ? { up: true } : { up: false, reason: 'link down' }),
    ...(opts.config ? { config: opts.config } : {}),
  });
}

describe('posture policy', () => {
  it('picks the strongest admissible posture with the default weights', async () => {
    const d = await policy('EU').decide(peer('EU'));
    expect(d).toMatchObject({ posture: 'QKD+PQC+QRNG', fallback: false, minimum: 'PQC' });
    expect(d.table.map((r) => r.score)).toEqual([0.57, 0.75, 0.87]);
  });

  it.each([
    ['EU', 'EU', true],
    ['EU', 'US', false],
    ['US', 'US', true],
    ['CN', 'JP', true],
    ['CN', 'EU', false],
    ['AU', 'AU', false],
    ['MULTI', 'MULTI', true],
    ['MULTI', 'CN', false],
    ['XX', 'XX', false],
  ])('QKD compliance %s ↔ %s: %s', async (a, b, ok) => {
    const rows = await policy(a).explain(peer(b));
    expect(rows[2]!.compliant).toBe(ok);
    expect(rows[0]!).toMatchObject({ compliant: true, why: 'admissible' }); // PQC everywhere
  });

  it('unknown regions fall back to PQC only, with the reason', async () => {
    const d = await policy('XX').decide(peer('EU'));
    expect(d.posture).toBe('PQC');
    expect(d.reason).toMatch(/QRNG not permitted in XX/);
  });

  it('pair agreements override region rules', async () => {
    const p = policy('EU', { config: { pairs: [{ a: 'JP', b: 'EU', qkd: true }] } });
    expect((await p.decide(peer('JP'))).posture).toBe('QKD+PQC+QRNG');
    const q = policy('CN', { config: { pairs: [{ a: 'CN', b: 'JP', qkd: false, note: 'no treaty' }] } });
    expect((await q.explain(peer('JP')))[2]!.why).toMatch(/no treaty/);
  });

  it('falls back when QKD is down or quantum entropy is unhealthy, and says why', async () => {
    const d = await policy('EU', { qkdUp: false }).decide(peer('EU'));
    expect(d).toMatchObject({ posture: 'PQC+QRNG', fallback: true });
    expect(d.reason).toBe('QKD+PQC+QRNG not admissible: link down');
    expect(d.table[2]).toMatchObject({ compliant: true, available: false, outage: true });
    const e = await policy('EU', { quantum: false }).decide(peer('EU'));
    expect(e.posture).toBe('PQC');
    expect(e.reason).toMatch(/no healthy quantum entropy source/);
    const noSae = await policy('EU').decide(peer('EU', { saeId: undefined }));
    expect(noSae.reason).toMatch(/no SAE\/KME id/);
  });

  it('minimums: per peer, global, requested; POSTURE_UNAVAILABLE below them', async () => {
    const p = policy('EU', {
      qkdUp: false,
      config: { peers: { ['c'.repeat(32)]: { minPosture: 'PQC+QRNG' } } },
    });
    expect(p.minimumFor(peer('EU'))).toBe('PQC+QRNG');
    expect(p.minimumFor(peer('EU', { minPosture: 'QKD+PQC+QRNG' }))).toBe('QKD+PQC+QRNG');
    await expect(p.decide(peer('EU'), 'QKD+PQC+QRNG')).rejects.toMatchObject({
      code: 'POSTURE_UNAVAILABLE',
      status: 503,
      message: expect.stringMatching(/QKD\+PQC\+QRNG: link down/),
    });
    const q = policy('EU', { quantum: false, config: { minPosture: 'PQC+QRNG' } });
    await expect(q.decide(peer('EU'))).rejects.toMatchObject({ code: 'POSTURE_UNAVAILABLE' });
  });

  it('weights decide: a latency-heavy config prefers PQC', async () => {
    const p = policy('EU', { config: { weights: { security: 0.1, latency: 1, cost: 1 } } });
    const d = await p.decide(peer('EU'));
    expect(d.posture).toBe('PQC');
    expect(d.fallback).toBe(false);
    expect(DEFAULT_POLICY.minPosture).toBe('PQC');
  });

  it('explain rows carry every column', async () => {
    const rows = await policy('AU').explain(peer('AU'), 'PQC+QRNG');
    expect(rows).toEqual([
      {
        posture: 'PQC',
        sec: 0.6,
        lat: 0.1,
        cost: 0.1,
        score: 0.57,
        compliant: true,
        available: true,
        outage: false,
        admissible: false,
        why: 'below the minimum PQC+QRNG',
      },
      {
        posture: 'PQC+QRNG',
        sec: 0.8,
        lat: 0.15,
        cost: 0.2,
        score: 0.75,
        compliant: true,
        available: true,
        outage: false,
        admissible: true,
        why: 'admissible',
      },
      {
        posture: 'QKD+PQC+QRNG',
        sec: 1,
        lat: 0.4,
        cost: 0.5,
        score: 0.87,
        compliant: false,
        available: false,
        outage: false,
        admissible: false,
        why: 'QKD not permitted in AU (QKD under review)',
      },
    ]);
  });
});
