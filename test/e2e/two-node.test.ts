/**
 * End to end over real loopback HTTP: two qkm appliances, the ETSI 014 KME pair over mutual TLS
 * and the BB84 link — the same setup as `qkm demo`. Agents use only the client SDK.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QkmApiError, QkmClient } from '../../src/client/client.js';
import { SecureMessageError, open, seal } from '../../src/client/secure-message.js';
import {
  SessionChannelError,
  agentKeyContext,
  announceAgentKey,
  fingerprintFromContext,
  generateAgentKeys,
  openSessionChannel,
} from '../../src/client/session-channel.js';
import {
  type TwoNodeSetup,
  establishAndExchange,
  formatReport,
  runDemo,
  exhaustQkd,
  quarantineQrng,
  restoreQkd,
  restoreQrng,
  startTwoNodeSetup,
  waitForQkdKeys,
  waitForQrng,
} from '../../src/demo/index.js';
import { promtoolAvailable, promtoolCheck } from '../helpers/promtool.js';

let setup: TwoNodeSetup;
let a: QkmClient;
let b: QkmClient;
let peerB: string;

type Prov = {
  degraded: boolean;
  fallback: boolean;
  reason?: string;
  qkd: { used: boolean; keyIds: string[]; initiatorKmeId?: string; responderKmeId?: string };
  qrng: { used: boolean };
  pqc: { randomness: string };
};
const prov = (p: unknown) => p as Prov;

async function apiError(p: Promise<unknown>): Promise<QkmApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof QkmApiError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

function flipByte(handshake: string, at: (len: number) => number): string {
  const raw = Buffer.from(handshake, 'base64url');
  const i = at(raw.length);
  raw[i] = (raw[i] ?? 0) ^ 0x01;
  return raw.toString('base64url');
}

beforeAll(async () => {
  // A fast link (×50 ≈ 280 keys/s at 25 km) so the QKD stock refills within a second; the KME
  // pair in its own process, as `qkm demo` runs it.
  setup = await startTwoNodeSetup({ timeScale: 50, kmeProcess: true });
  a = setup.a.client;
  b = setup.b.client;
  peerB = setup.b.nodeId;
  await waitForQrng(setup, 'a');
  await waitForQrng(setup, 'b');
  await waitForQkdKeys(setup);
}, 20_000);

afterAll(async () => {
  await setup?.stop();
});

describe('two nodes on loopback', () => {
  it('describe() names both nodes, their token files, SAE ids and both KMEs', () => {
    const d = setup.describe();
    expect(d.nodes.map((n) => [n.name, n.sae_id, n.kme_id, n.region])).toEqual([
      ['a', 'sae-a', 'kme-a', 'EU'],
      ['b', 'sae-b', 'kme-b', 'EU'],
    ]);
    for (const n of d.nodes) {
      expect(n.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(n.token_file).toMatch(/tokens/);
    }
    expect(d.kmes.map((k) => k.id)).toEqual(['kme-a', 'kme-b']);
    expect(d.kmes.every((k) => k.url.startsWith('https://127.0.0.1:'))).toBe(true);
  });

  it('QKD+PQC+QRNG: equal keys, QKD leg used with the same key ID on both sides, confirm succeeds', async () => {
    const r = await establishAndExchange(
      { initiator: a, responder: b, responderNodeId: peerB, responderAgent: 'default' },
      { minPosture: 'QKD+PQC+QRNG' },
    );
    expect(r.posture).toBe('QKD+PQC+QRNG');
    expect(r.keysEqual).toBe(true);
    expect(r.confirmed).toBe(true);
    expect(r.messages).toEqual({ initiatorToResponder: true, responderToInitiator: true });
    const pi = prov(r.initiatorProvenance);
    const pr = prov(r.responderProvenance);
    expect(pi.degraded).toBe(false);
    expect(pi.qkd.used).toBe(true);
    expect(pi.qkd.keyIds).toHaveLength(1);
    expect(pi.qkd.keyIds[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(pi.qkd).toMatchObject({ initiatorKmeId: 'kme-a', responderKmeId: 'kme-b' });
    expect(pr.qkd.used).toBe(true);
    expect(pr.qkd.keyIds).toEqual(pi.qkd.keyIds);
    expect(pi.qrng.used).toBe(true);
    expect(pi.pqc.randomness).toBe('quantum');
  });

  it('over HTTP only the named responder agent accepts and only the initiating agent confirms', async () => {
    const adminToken = async (n: 'a' | 'b') =>
      (await readFile(setup[n].appliance.tokenFiles.admin!, 'utf8')).trim();
    const bAdmin = new QkmClient({ url: setup.b.appliance.url, token: await adminToken('b') });
    const aAdmin = new QkmClient({ url: setup.a.appliance.url, token: await adminToken('a') });
    const carol = new QkmClient({
      url: setup.b.appliance.url,
      token: (await bAdmin.agents.add('carol')).token,
    });
    const dave = new QkmClient({
      url: setup.a.appliance.url,
      token: (await aAdmin.agents.add('dave')).token,
    });
    const init = await a.sessions.initiate({ responderAgent: 'default', peer: peerB });
    const wrong = await apiError(carol.sessions.accept(init.handshake));
    expect([wrong.status, wrong.code]).toEqual([403, 'HANDSHAKE_WRONG_AGENT']);
    const acc = await b.sessions.accept(init.handshake);
    expect(acc.peer_agent).toBe('default');
    const other = await apiError(dave.sessions.confirm(init.session_id, acc.confirm));
    expect([other.status, other.code]).toEqual([404, 'SESSION_NOT_FOUND']);
    expect((await a.sessions.confirm(init.session_id, acc.confirm)).confirmed).toBe(true);
  });

  it('a tampered handshake is rejected with a specific 4xx code and burns no QKD key; a replay gets 409', async () => {
    const init = await a.sessions.initiate({
      responderAgent: 'default',
      peer: peerB,
      minPosture: 'QKD+PQC+QRNG',
    });
    expect(prov(init.provenance).qkd.used).toBe(true);
    // Last byte: inside the ML-DSA signature.
    const badSig = await apiError(b.sessions.accept(flipByte(init.handshake, (n) => n - 1)));
    expect(badSig.status).toBe(401);
    expect(badSig.code).toBe('HANDSHAKE_BAD_SIGNATURE');
    // Middle of the signed body: inside the ML-KEM ciphertext.
    const badBody = await apiError(
      b.sessions.accept(flipByte(init.handshake, (n) => 4 + Math.floor((n - 3317) / 2))),
    );
    expect(badBody.status).toBeGreaterThanOrEqual(400);
    expect(badBody.status).toBeLessThan(500);
    expect(['HANDSHAKE_BAD_SIGNATURE', 'HANDSHAKE_MALFORMED']).toContain(badBody.code);
    const garbage = await apiError(b.sessions.accept('not-a-handshake'));
    expect(garbage).toMatchObject({ status: 400, code: 'HANDSHAKE_MALFORMED' });

    // The genuine handshake still completes: the rejections fetched no QKD key on B's side.
    const acc = await b.sessions.accept(init.handshake);
    expect(Buffer.from(acc.key).equals(Buffer.from(init.key))).toBe(true);
    expect(prov(acc.provenance).qkd.keyIds).toEqual(prov(init.provenance).qkd.keyIds);
    expect((await a.sessions.confirm(init.session_id, acc.confirm)).confirmed).toBe(true);

    const replay = await apiError(b.sessions.accept(init.handshake));
    expect(replay).toMatchObject({ status: 409, code: 'HANDSHAKE_REPLAYED' });
  });

  it('a wrong confirm tag is not accepted', async () => {
    const init = await a.sessions.initiate({ responderAgent: 'default', peer: peerB });
    const acc = await b.sessions.accept(init.handshake);
    const wrong = Buffer.from(acc.confirm, 'base64url');
    wrong[0] = (wrong[0] ?? 0) ^ 1;
    const err = await apiError(a.sessions.confirm(init.session_id, wrong.toString('base64url')));
    expect(err.status).toBeGreaterThanOrEqual(400);
    expect(err.status).toBeLessThan(500);
    expect(err.code).toBe('CONFIRM_MISMATCH');
  });

  it('sealed messages round-trip both ways; tampered, replayed or mis-announced ones are rejected', async () => {
    const iKeys = generateAgentKeys();
    const rKeys = generateAgentKeys();
    const init = await a.sessions.initiate({
      responderAgent: 'default',
      peer: peerB,
      context: agentKeyContext(iKeys.publicKey),
    });
    const acc = (await b.sessions.accept(init.handshake)) as Awaited<
      ReturnType<QkmClient['sessions']['accept']>
    > & {
      context: string;
    };
    const iS = { sessionId: init.session_id, key: init.key, role: 'initiator' as const };
    const rS = { sessionId: acc.session_id, key: acc.key, role: 'responder' as const };
    const fp = fingerprintFromContext(acc.context);
    expect(fp).toBeDefined();
    const ich = openSessionChannel({
      session: iS,
      keys: iKeys,
      peerAnnouncement: announceAgentKey(rS, rKeys),
    });
    const rch = openSessionChannel({
      session: rS,
      keys: rKeys,
      peerAnnouncement: announceAgentKey(iS, iKeys),
      ...(fp ? { expectedPeerFingerprint: fp } : {}),
    });

    const m1 = seal(ich, 'ping', 'aad-1');
    expect(Buffer.from(open(rch, m1, 'aad-1').payload).toString()).toBe('ping');
    const m2 = seal(rch, 'pong');
    expect(Buffer.from(open(ich, m2).payload).toString()).toBe('pong');

    expect(() => open(rch, m1, 'aad-1')).toThrow(expect.objectContaining({ code: 'MESSAGE_REPLAYED' }));
    const m3 = seal(ich, 'second');
    for (const at of [m3.length - 1, Math.floor(m3.length / 2), 40]) {
      const t = m3.slice();
      t[at] = (t[at] ?? 0) ^ 0x80;
      expect(() => open(rch, t)).toThrow(SecureMessageError);
    }
    expect(Buffer.from(open(rch, m3).payload).toString()).toBe('second');

    // An announcement from an agent that does not hold K, or a key other than the one in the
    // signed handshake context, is refused.
    const intruder = generateAgentKeys();
    const forged = announceAgentKey({ ...iS, key: new Uint8Array(32) }, intruder);
    expect(() => openSessionChannel({ session: rS, keys: rKeys, peerAnnouncement: forged })).toThrow(
      expect.objectContaining({ code: 'AGENT_KEY_BAD_TAG' }),
    );
    const swapped = announceAgentKey(iS, intruder);
    expect(() =>
      openSessionChannel({
        session: rS,
        keys: rKeys,
        peerAnnouncement: swapped,
        ...(fp ? { expectedPeerFingerprint: fp } : {}),
      }),
    ).toThrow(SessionChannelError);
  });

  it('QKD out of keys: falls back to PQC+QRNG, degraded, with the reason; a QKD minimum gets 503', async () => {
    await exhaustQkd(setup);
    try {
      const r = await establishAndExchange({
        initiator: a,
        responder: b,
        responderNodeId: peerB,
        responderAgent: 'default',
      });
      expect(r.posture).toBe('PQC+QRNG');
      expect(r.keysEqual).toBe(true);
      expect(r.confirmed).toBe(true);
      const p = prov(r.initiatorProvenance);
      expect(p).toMatchObject({ degraded: true, fallback: true });
      expect(p.reason).toMatch(/no keys in stock/);
      expect(p.qkd.used).toBe(false);
      expect(p.qrng.used).toBe(true);
      const refused = await apiError(
        a.sessions.initiate({ responderAgent: 'default', peer: peerB, minPosture: 'QKD+PQC+QRNG' }),
      );
      expect(refused).toMatchObject({ status: 503, code: 'POSTURE_UNAVAILABLE' });
    } finally {
      await restoreQkd(setup);
    }
    const back = await a.sessions.initiate({ responderAgent: 'default', peer: peerB });
    expect(back.posture).toBe('QKD+PQC+QRNG');
    await b.sessions.accept(back.handshake);
  });

  it('Quantis on node A stuck: quarantined, next session is PQC with OS randomness and degraded; a QRNG minimum gets 503', async () => {
    await quarantineQrng(setup);
    try {
      const r = await establishAndExchange({
        initiator: a,
        responder: b,
        responderNodeId: peerB,
        responderAgent: 'default',
      });
      expect(r.posture).toBe('PQC');
      expect(r.keysEqual).toBe(true);
      expect(r.confirmed).toBe(true);
      expect(r.messages).toEqual({ initiatorToResponder: true, responderToInitiator: true });
      const p = prov(r.initiatorProvenance);
      expect(p).toMatchObject({ degraded: true, fallback: true });
      expect(p.reason).toMatch(/quantum entropy/);
      expect(p.qrng.used).toBe(false);
      expect(p.pqc.randomness).toBe('os');
      const refused = await apiError(
        a.sessions.initiate({ responderAgent: 'default', peer: peerB, minPosture: 'PQC+QRNG' }),
      );
      expect(refused).toMatchObject({ status: 503, code: 'POSTURE_UNAVAILABLE' });
    } finally {
      await restoreQrng(setup);
    }
    const back = await a.sessions.initiate({
      responderAgent: 'default',
      peer: peerB,
      minPosture: 'PQC+QRNG',
    });
    expect(prov(back.provenance).qrng.used).toBe(true);
    await b.sessions.accept(back.handshake);
  }, 20_000);

  it('runDemo (what `qkm demo` prints) reaches every posture with equal keys and working messages', async () => {
    const stages: string[] = [];
    const report = await runDemo(setup, { onProgress: (s) => stages.push(s) });
    // The CLI's progress lines: one per stage, in order, each session numbered.
    expect(stages.filter((s) => / \d\/3 /.test(s))).toEqual([
      'demo: 1/3 QKD+PQC+QRNG session',
      'demo: 2/3 PQC+QRNG session',
      'demo: 3/3 PQC session',
    ]);
    expect(stages).toHaveLength(9);
    expect(report.runs.map((r) => [r.target, r.posture])).toEqual([
      ['QKD+PQC+QRNG', 'QKD+PQC+QRNG'],
      ['PQC+QRNG', 'PQC+QRNG'],
      ['PQC', 'PQC'],
    ]);
    expect(report.runs.map((r) => r.degraded)).toEqual([false, true, true]);
    expect(report.ok).toBe(true);
    const text = formatReport(report);
    expect(text).toMatch(/all postures demonstrated/);
    expect(text).not.toMatch(/FAIL/);
  }, 20_000);

  it('status and metrics show what the sessions came to: fallbacks, refusals, rejected handshakes', async () => {
    const sa = (await a.status()).sessions;
    const sb = (await b.status()).sessions;
    // The suite above ran every posture, degraded fallbacks, 503 refusals and rejected handshakes.
    expect(sa.initiated['QKD+PQC+QRNG']).toBeGreaterThan(0);
    expect(sa.initiatedDegraded['PQC+QRNG']).toBeGreaterThan(0);
    expect(sa.initiatedDegraded.PQC).toBeGreaterThan(0);
    expect(sa.refused).toBeGreaterThanOrEqual(2);
    expect(sb.accepted['QKD+PQC+QRNG']).toBeGreaterThan(0);
    expect(Object.values(sb.rejected).reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
    // Both nodes run the default PQC backend, and say so.
    expect((await a.status()).pqc.backend).toBe('liboqs-wasm');
    expect((await b.status()).pqc.backend).toBe('liboqs-wasm');
    const token = (await readFile(setup.a.appliance.tokenFiles.default!, 'utf8')).trim();
    const metrics = await (
      await fetch(`${setup.a.appliance.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })
    ).text();
    expect(metrics).toContain(
      `qkm_sessions_initiated_total{posture="PQC+QRNG",degraded="true"} ${sa.initiatedDegraded['PQC+QRNG']}`,
    );
    expect(metrics).toMatch(new RegExp(`^qkm_sessions_refused_total ${sa.refused}$`, 'm'));
    expect(metrics).toMatch(/^qkm_qkd_link_up\{peer_sae="[^"]+"\} 1$/m);
    // With QKD links, sessions and seals filled in, the exposition is still Prometheus-clean.
    if (promtoolAvailable()) expect(await promtoolCheck(metrics)).toEqual({ code: 0, output: '' });
  });
});
