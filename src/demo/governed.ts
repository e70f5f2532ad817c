import { performance } from 'node:perf_hooks';
import { QkmApiError, QkmClient } from '../client/client.js';
import { waitForQrng } from './conditions.js';
import type { TwoNodeSetup } from './setup.js';

/**
 * The governed part of the demo (SAGA on qkm, issue #12): three agents on two nodes and one
 * Provider. Node A hosts alice@example.com:mail and mallory@evil.test:mail, node B hosts
 * bob@example.com:calendar, whose contact policy admits example.com agents and blocks mallory.
 * The nodes pin only the Provider, not each other. Both publish to the Provider; then
 * 1. alice → bob is allowed: node A gets Bob's bundle (one OTK, and node B's identity) from the
 *    Provider, the full qkm/v2 handshake runs, node B asks the Provider to vouch for node A, and
 *    hands Alice an access token;
 * 2. mallory → bob is blocked at the Provider (CONTACT_BLOCKED): no prekey, no budget spent;
 * 3. alice resumes with her token: a new session key without the Provider, ML-KEM or ML-DSA.
 */

export const DEMO_AGENTS = {
  alice: 'alice@example.com:mail',
  mallory: 'mallory@evil.test:mail',
  bob: 'bob@example.com:calendar',
} as const;

export interface GovernedRun {
  step: 'allowed' | 'blocked' | 'resumed';
  initiator: string;
  responder: string;
  /** What happened: `session`, `resumed` or the refusal's code. */
  outcome: string;
  /** Where it was decided (the Provider, node B, …). */
  decidedAt: string;
  keysEqual?: boolean;
  prekeyId?: string;
  lastResort?: boolean;
  tokenId?: string;
  tokenUse?: number;
  /** How each side knew the other node: `pinned`, or vouched for by the `provider` (initiator, responder). */
  peerTrust?: [string, string];
  /** OTKs Bob has at the Provider before → after the step. */
  otks?: [number, number];
  ms?: number;
  error?: string;
  ok: boolean;
}

export interface GovernedReport {
  provider: { url: string; providerId: string };
  runs: GovernedRun[];
  ok: boolean;
}

const since = (t0: number) => Math.round((performance.now() - t0) * 10) / 10;
const equal = (x: Uint8Array, y: Uint8Array) => x.length === y.length && x.every((v, i) => v === y[i]);

export async function runGovernedDemo(
  setup: TwoNodeSetup,
  options: { onProgress?: (stage: string) => void } = {},
): Promise<GovernedReport> {
  const say = options.onProgress ?? (() => undefined);
  const provider = setup.provider;
  if (!provider) throw new Error('the governed demo needs the setup started with provider: true');
  // Prekey seeds are quantum entropy only: both Quantis must have passed their start-up tests.
  await waitForQrng(setup, 'a');
  await waitForQrng(setup, 'b');

  say('demo: governed agents — alice and mallory on node a, bob on node b');
  const agent = async (node: TwoNodeSetup['a'], name: string, aid: string) =>
    new QkmClient({
      url: node.appliance.url,
      token: (await node.admin.agents.add(name, ['sessions'], aid)).token,
    });
  const alice = await agent(setup.a, 'alice', DEMO_AGENTS.alice);
  const mallory = await agent(setup.a, 'mallory', DEMO_AGENTS.mallory);
  const bob = await agent(setup.b, 'bob', DEMO_AGENTS.bob);
  await setup.b.admin.contacts.set(DEMO_AGENTS.bob, [
    { pattern: '*@example.com:*', budget: 5 },
    { pattern: DEMO_AGENTS.mallory, budget: -1 },
  ]);
  say('demo: both nodes publish their agents, policies and prekeys to the Provider');
  await setup.b.admin.provider.sync();
  await setup.a.admin.provider.sync();
  const bobStock = async () => (await setup.b.appliance.provider!.stock(DEMO_AGENTS.bob)).otks;

  const runs: GovernedRun[] = [];
  let token: Awaited<ReturnType<QkmClient['sessions']['confirm']>>['token'];

  say('demo: governed 1/3 alice → bob (allowed; bundle from the Provider)');
  {
    const before = await bobStock();
    const t0 = performance.now();
    try {
      // No `peer`: the Provider's bundle names bob's node (and vouches for its keys).
      const init = await alice.sessions.initiate({ responderAid: DEMO_AGENTS.bob });
      const acc = await bob.sessions.accept(init.handshake);
      const conf = await alice.sessions.confirm(init.session_id, acc.confirm, acc.token);
      token = conf.token;
      const gov = init.provenance.governance;
      const peerTrust: [string, string] = [
        gov?.peerTrust ?? 'pinned',
        acc.provenance.governance?.peerTrust ?? 'pinned',
      ];
      runs.push({
        step: 'allowed',
        initiator: DEMO_AGENTS.alice,
        responder: DEMO_AGENTS.bob,
        outcome: 'session',
        decidedAt: 'the Provider (bundle) and node b (accept)',
        keysEqual: equal(init.key, acc.key),
        ...(gov?.prekeyId ? { prekeyId: gov.prekeyId } : {}),
        lastResort: gov?.lastResort === true,
        ...(token ? { tokenId: token.id } : {}),
        peerTrust,
        otks: [before, await bobStock()],
        ms: since(t0),
        ok: equal(init.key, acc.key) && conf.confirmed && token !== undefined && init.peer === setup.b.nodeId,
      });
      init.key.fill(0);
      acc.key.fill(0);
    } catch (err) {
      runs.push(failed('allowed', DEMO_AGENTS.alice, err));
    }
  }

  say('demo: governed 2/3 mallory → bob (blocked by the contact policy at the Provider)');
  {
    const before = await bobStock();
    try {
      await mallory.sessions.initiate({ responderAid: DEMO_AGENTS.bob });
      runs.push({ ...failed('blocked', DEMO_AGENTS.mallory, new Error('the session was not refused')) });
    } catch (err) {
      const code = err instanceof QkmApiError ? err.code : String(err);
      const after = await bobStock();
      runs.push({
        step: 'blocked',
        initiator: DEMO_AGENTS.mallory,
        responder: DEMO_AGENTS.bob,
        outcome: code,
        decidedAt: 'the Provider',
        otks: [before, after],
        ok: code === 'CONTACT_BLOCKED' && after === before,
      });
    }
  }

  say('demo: governed 3/3 alice resumes with her access token (no Provider, no ML-KEM/ML-DSA)');
  {
    const before = await bobStock();
    const t0 = performance.now();
    try {
      if (!token) throw new Error('no token from step 1');
      const start = await alice.sessions.resume(token.id);
      const acc = await bob.sessions.acceptResume(start.resume);
      const done = await alice.sessions.completeResume(start.resume_id, acc.answer ?? '');
      const keysEqual = equal(acc.key, done.key);
      runs.push({
        step: 'resumed',
        initiator: DEMO_AGENTS.alice,
        responder: DEMO_AGENTS.bob,
        outcome: 'resumed',
        decidedAt: 'node b (token check)',
        keysEqual,
        tokenId: token.id,
        ...(typeof acc.use === 'number' ? { tokenUse: acc.use } : {}),
        otks: [before, await bobStock()],
        ms: since(t0),
        ok: keysEqual && (await bobStock()) === before,
      });
      acc.key.fill(0);
      done.key.fill(0);
    } catch (err) {
      runs.push(failed('resumed', DEMO_AGENTS.alice, err));
    }
  }

  return {
    provider: { url: provider.url, providerId: provider.service.identity.providerId },
    runs,
    ok: runs.every((r) => r.ok),
  };
}

function failed(step: GovernedRun['step'], initiator: string, err: unknown): GovernedRun {
  const error = err instanceof QkmApiError ? `${err.code}: ${err.message}` : (err as Error).message;
  return { step, initiator, responder: DEMO_AGENTS.bob, outcome: 'error', decidedAt: '-', error, ok: false };
}

/** The governed part of the human report. */
export function formatGovernedReport(report: GovernedReport): string {
  const lines = [`governed agents (qkm/v2) with the Provider at ${report.provider.url}`];
  for (const r of report.runs) {
    lines.push(
      `[${r.ok ? 'ok' : 'FAIL'}] ${r.step}: ${r.initiator} → ${r.responder}: ${r.outcome} (${r.decidedAt})`,
    );
    if (r.error) {
      lines.push(`    error: ${r.error}`);
      continue;
    }
    const parts: string[] = [];
    if (r.keysEqual !== undefined) parts.push(`keys equal ${r.keysEqual}`);
    if (r.prekeyId) parts.push(`one-time prekey ${r.prekeyId}${r.lastResort ? ' (last resort)' : ''}`);
    if (r.peerTrust) parts.push(`peer keys: a ${r.peerTrust[0]}, b ${r.peerTrust[1]}`);
    if (r.tokenId) parts.push(`token ${r.tokenId}${r.tokenUse !== undefined ? ` use ${r.tokenUse}` : ''}`);
    if (r.otks) parts.push(`bob's OTKs at the Provider ${r.otks[0]} → ${r.otks[1]}`);
    if (r.ms !== undefined) parts.push(`${r.ms} ms`);
    lines.push(`    ${parts.join('  ')}`);
  }
  return lines.join('\n');
}
