/**
 * `session-resumed` benchmark (issue #12): establishment time of a token-resumed session over
 * loopback HTTP — resume (initiator node) → resume/accept (responder node) → resume/complete —
 * against a full governed (qkm/v2) one — initiate (two ML-KEM-768 encapsulations, ML-DSA-65
 * signature) → accept (verification, two decapsulations, the OTK destroyed, budget and token
 * written) → confirm (token received). Two appliances in this process (simulator mode, LevelDB,
 * synced writes), agents speaking through the SDK. Rounds interleave one full session with two
 * resumptions so drift hits both alike. Goal: p50(resumed) / p50(full) ≤ 0.25.
 */
import type { SignedPrekey } from '../../src/governance/prekeys.js';
import { BOB, startGovernedPair } from '../e2e/fixtures/governed-nodes.js';
import type { BenchRecord } from './types.js';

const ROUNDS = 60;
const WARMUP = 5;
const GOAL = 0.25;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** 95% percentile-bootstrap interval of median(a) / median(b). */
function ratioCi(a: number[], b: number[], n = 1000): [number, number] {
  const pick = (xs: number[]) => xs.map(() => xs[Math.floor(Math.random() * xs.length)]!);
  const rs = Array.from({ length: n }, () => median(pick(a)) / median(pick(b))).sort((x, y) => x - y);
  return [rs[Math.floor(n * 0.025)]!, rs[Math.floor(n * 0.975)]!];
}

export default async function run(): Promise<BenchRecord[]> {
  const pair = await startGovernedPair({ tokenMaxUses: 1_000_000, tokenTtlSeconds: 3600 });
  try {
    await pair.b.admin.contacts.set(BOB, [{ pattern: '*@example.com:*', budget: 1_000_000 }]);
    const alice = pair.a.agents.alice!;
    const bob = pair.b.agents.bob!;
    const otks: SignedPrekey[] = [];
    while (otks.length < ROUNDS + WARMUP)
      otks.push(...(await pair.b.admin.prekeys.publish<SignedPrekey>(BOB, 100)));
    const full: number[] = [];
    const resumed: number[] = [];
    let tokenId: string | undefined;
    for (let round = 0; round < ROUNDS + WARMUP; round++) {
      let t0 = performance.now();
      const init = await alice.sessions.initiate({
        peer: pair.b.nodeId,
        responderAid: BOB,
        prekey: otks[round]!,
      });
      const acc = await bob.sessions.accept(init.handshake);
      const conf = await alice.sessions.confirm(init.session_id, acc.confirm, acc.token);
      const tFull = performance.now() - t0;
      tokenId ??= conf.token!.id;
      for (let j = 0; j < 2; j++) {
        t0 = performance.now();
        const start = await alice.sessions.resume(tokenId);
        const r = await bob.sessions.acceptResume(start.resume);
        await alice.sessions.completeResume(start.resume_id, r.answer!);
        if (round >= WARMUP) resumed.push(performance.now() - t0);
      }
      if (round >= WARMUP) full.push(tFull);
    }
    const pFull = median(full);
    const pResumed = median(resumed);
    const ratio = pResumed / pFull;
    return [
      {
        bench: 'session-resumed',
        metric: 'full governed session p50 (initiate+accept+confirm, HTTP)',
        value: Number(pFull.toFixed(2)),
        unit: 'ms',
        note: `${full.length} sessions`,
      },
      {
        bench: 'session-resumed',
        metric: 'token-resumed session p50 (resume+accept+complete, HTTP)',
        value: Number(pResumed.toFixed(2)),
        unit: 'ms',
        baseline: Number(pFull.toFixed(2)),
        ratio: Number(ratio.toFixed(3)),
        ratioCi95: ratioCi(resumed, full).map((x) => Number(x.toFixed(3))) as [number, number],
        goal: `ratio ≤ ${GOAL}`,
        pass: ratio <= GOAL,
        note: `${resumed.length} resumptions`,
      },
    ];
  } finally {
    await pair.stop();
  }
}
