import { QkmApiError, type Posture } from '../client/client.js';
import { type ExchangeResult, establishAndExchange } from './agents.js';
import {
  exhaustQkd,
  quarantineQrng,
  restoreQkd,
  restoreQrng,
  waitForQkdKeys,
  waitForQrng,
} from './conditions.js';
import { type GovernedReport, formatGovernedReport, runGovernedDemo } from './governed.js';
import { type SetupDescription, type TwoNodeSetup, pinEachOther, unpinEachOther } from './setup.js';

/**
 * The demo script: one session per posture, strongest first, each under the condition that makes
 * the policy choose it (see conditions.ts), then everything restored.
 */

export interface PostureRun {
  /** The posture this step sets out to show. */
  target: Posture;
  /** What was done to the setup to reach it. */
  condition: string;
  /** The posture the nodes actually agreed (equal to `target` when the step worked). */
  posture?: Posture;
  degraded?: boolean;
  fallback?: boolean;
  reason?: string;
  qkd?: { used: boolean; keyIds: string[] };
  qrngUsed?: boolean;
  keysEqual?: boolean;
  confirmed?: boolean;
  messages?: ExchangeResult['messages'];
  timingsMs?: ExchangeResult['timingsMs'];
  /** `CODE: message` when the step failed. */
  error?: string;
  ok: boolean;
}

export interface DemoReport {
  setup: SetupDescription;
  runs: PostureRun[];
  /** With a Provider in the setup: the allowed, blocked and token-resumed governed sessions. */
  governed?: GovernedReport;
  ok: boolean;
}

function summarise(target: Posture, condition: string, r: ExchangeResult): PostureRun {
  const p = r.initiatorProvenance as Record<string, unknown> & {
    degraded: boolean;
    reason?: string;
    fallback?: boolean;
    qkd?: { used?: boolean; keyIds?: string[] };
    qrng?: { used?: boolean };
  };
  const ok =
    r.posture === target &&
    r.keysEqual &&
    r.confirmed &&
    r.messages.initiatorToResponder &&
    r.messages.responderToInitiator;
  return {
    target,
    condition,
    posture: r.posture,
    degraded: p.degraded,
    fallback: p.fallback ?? false,
    ...(p.reason ? { reason: p.reason } : {}),
    qkd: { used: p.qkd?.used === true, keyIds: p.qkd?.keyIds ?? [] },
    qrngUsed: p.qrng?.used === true,
    keysEqual: r.keysEqual,
    confirmed: r.confirmed,
    messages: r.messages,
    timingsMs: r.timingsMs,
    ok,
  };
}

async function step(
  target: Posture,
  condition: string,
  setup: TwoNodeSetup,
  minPosture: Posture | undefined,
): Promise<PostureRun> {
  try {
    const r = await establishAndExchange(
      {
        initiator: setup.a.client,
        responder: setup.b.client,
        responderNodeId: setup.b.nodeId,
        responderAgent: 'default',
      },
      minPosture ? { minPosture } : {},
    );
    return summarise(target, condition, r);
  } catch (err) {
    const error = err instanceof QkmApiError ? `${err.code}: ${err.message}` : (err as Error).message;
    return { target, condition, error, ok: false };
  }
}

export interface RunDemoOptions {
  /** Told each stage as it begins (the CLI's progress line on stderr). */
  onProgress?: (stage: string) => void;
}

export async function runDemo(setup: TwoNodeSetup, options: RunDemoOptions = {}): Promise<DemoReport> {
  const say = options.onProgress ?? (() => undefined);
  const runs: PostureRun[] = [];
  // With a Provider the nodes pin only the Provider; the plain qkm/v1 sessions below have no
  // Provider to vouch for the peer, so the operator pins the nodes for them (and unpins after).
  if (setup.provider) {
    say('demo: pinning the nodes to each other for the plain (qkm/v1) sessions');
    await pinEachOther(setup);
  }
  say('demo: waiting for the Quantis on node a to pass its start-up test');
  await waitForQrng(setup, 'a');
  say('demo: waiting for the BB84 link to stock QKD keys');
  await waitForQkdKeys(setup);
  say('demo: 1/3 QKD+PQC+QRNG session');
  runs.push(await step('QKD+PQC+QRNG', 'link up, Quantis healthy', setup, 'QKD+PQC+QRNG'));

  say('demo: stopping the BB84 link and consuming its stocked keys');
  const consumed = await exhaustQkd(setup);
  say('demo: 2/3 PQC+QRNG session');
  runs.push(
    await step(
      'PQC+QRNG',
      `BB84 link stopped and its ${consumed} stocked key(s) consumed`,
      setup,
      'PQC+QRNG',
    ),
  );
  say('demo: restoring the BB84 link');
  await restoreQkd(setup);

  say('demo: making the Quantis on node a stuck until the health tests quarantine it');
  await quarantineQrng(setup);
  say('demo: 3/3 PQC session');
  runs.push(await step('PQC', 'Quantis on node A stuck → quarantined by the health tests', setup, undefined));
  say('demo: restoring the Quantis');
  await restoreQrng(setup);

  if (setup.provider) {
    say('demo: unpinning the nodes: the governed sessions rely on the pinned Provider alone');
    await unpinEachOther(setup);
  }
  const governed = setup.provider ? await runGovernedDemo(setup, { onProgress: say }) : undefined;
  return {
    setup: setup.describe(),
    runs,
    ...(governed ? { governed } : {}),
    ok: runs.every((r) => r.ok) && (governed?.ok ?? true),
  };
}

const fmt = (n: number | undefined) => (n === undefined ? '-' : n.toFixed(1));

/** The short human report. */
export function formatReport(report: DemoReport): string {
  const lines: string[] = [];
  const [a, b] = report.setup.nodes;
  lines.push('qkm two-node demo (loopback)');
  for (const n of report.setup.nodes) {
    lines.push(`  node ${n.name}: ${n.url}  id ${n.node_id}  ${n.region}  ${n.sae_id}@${n.kme_id}`);
  }
  for (const k of report.setup.kmes) lines.push(`  ${k.id}: ${k.url} (${k.saes.join(', ')})`);
  const p = report.setup.provider;
  if (p) lines.push(`  provider: ${p.url}  id ${p.provider_id}`);
  lines.push(
    `  BB84 link: ${report.setup.link.distance_km} km, ${Math.round(report.setup.link.model_rate_bps)} bit/s ` +
      `(×${report.setup.link.time_scale})`,
  );
  lines.push('');
  lines.push(`agent on ${a?.name ?? 'a'} → agent on ${b?.name ?? 'b'}; times in ms`);
  for (const r of report.runs) {
    lines.push(`[${r.ok ? 'ok' : 'FAIL'}] ${r.target}  (${r.condition})`);
    if (r.error) {
      lines.push(`    error: ${r.error}`);
      continue;
    }
    lines.push(
      `    posture ${r.posture}  degraded ${r.degraded}  fallback ${r.fallback}  ` +
        `QKD ${r.qkd?.used ? `used (key ${r.qkd.keyIds.join(', ')})` : 'not used'}  QRNG ${r.qrngUsed ? 'used' : 'not used'}`,
    );
    if (r.reason) lines.push(`    reason: ${r.reason}`);
    lines.push(
      `    keys equal ${r.keysEqual}  confirmed ${r.confirmed}  sealed messages ` +
        `A→B ${r.messages?.initiatorToResponder ? 'ok' : 'FAILED'}, B→A ${r.messages?.responderToInitiator ? 'ok' : 'FAILED'}`,
    );
    const t = r.timingsMs;
    lines.push(
      `    initiate ${fmt(t?.initiate)}  accept ${fmt(t?.accept)}  confirm ${fmt(t?.confirm)}  ` +
        `agent keys ${fmt(t?.agentKeys)}  seal+open ${fmt(t?.sealOpenI2R)}/${fmt(t?.sealOpenR2I)}  total ${fmt(t?.total)}`,
    );
  }
  if (report.governed) {
    lines.push('');
    lines.push(formatGovernedReport(report.governed));
  }
  lines.push('');
  lines.push(
    report.ok
      ? report.governed
        ? 'all postures and governed sessions demonstrated'
        : 'all postures demonstrated'
      : 'some steps failed',
  );
  return lines.join('\n');
}
