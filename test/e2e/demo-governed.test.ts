import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEMO_AGENTS,
  type GovernedReport,
  type TwoNodeSetup,
  formatGovernedReport,
  runGovernedDemo,
  startTwoNodeSetup,
} from '../../src/demo/index.js';

/**
 * `qkm demo`'s governed part over loopback: three agents on two nodes and one Provider — an
 * allowed session (bundle from the Provider), a blocked one (refused at the Provider, nothing
 * spent) and a token-resumed one (no Provider, no prekey).
 */

let setup: TwoNodeSetup;
let report: GovernedReport;

beforeAll(async () => {
  setup = await startTwoNodeSetup({ provider: true, timeScale: 50 });
  report = await runGovernedDemo(setup);
}, 90_000);

afterAll(async () => {
  await setup?.stop();
}, 30_000);

describe('qkm demo: governed agents with one Provider', () => {
  it('shows an allowed, a blocked and a token-resumed session', () => {
    expect(report.runs.map((r) => [r.step, r.initiator, r.outcome, r.ok])).toEqual([
      ['allowed', DEMO_AGENTS.alice, 'session', true],
      ['blocked', DEMO_AGENTS.mallory, 'CONTACT_BLOCKED', true],
      ['resumed', DEMO_AGENTS.alice, 'resumed', true],
    ]);
    const [allowed, blocked, resumed] = report.runs;
    // One OTK per full handshake; none for a refusal or a resumption.
    expect(allowed?.otks?.[1]).toBe((allowed?.otks?.[0] ?? 0) - 1);
    expect(blocked?.otks?.[1]).toBe(blocked?.otks?.[0]);
    expect(resumed?.otks?.[1]).toBe(resumed?.otks?.[0]);
    expect(resumed).toMatchObject({ keysEqual: true, tokenId: allowed?.tokenId, tokenUse: 1 });
    // The nodes pin only the Provider: each takes the other node's keys from it.
    expect(allowed?.peerTrust).toEqual(['provider', 'provider']);
    expect(report.ok).toBe(true);
    const text = formatGovernedReport(report);
    expect(text).toContain(
      `[ok] blocked: ${DEMO_AGENTS.mallory} → ${DEMO_AGENTS.bob}: CONTACT_BLOCKED (the Provider)`,
    );
  });

  it('the nodes pin only the Provider, not each other', async () => {
    expect(await setup.a.admin.peers.list()).toEqual([]);
    expect(await setup.b.admin.peers.list()).toEqual([]);
    expect(formatGovernedReport(report)).toContain('peer keys: a provider, b provider');
  });

  it('both nodes are enrolled and published to the Provider', async () => {
    const status = await setup.provider!.admin.status();
    expect(status).toMatchObject({ nodes: 2, agents: 3 });
  });
});
