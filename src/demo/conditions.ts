import type { TwoNodeSetup } from './setup.js';

/**
 * The conditions the demo puts the setup in to show each posture. The policy always picks the
 * best admissible posture (a minimum can only raise it), so the lower postures are reached the
 * honest way: by taking away what the higher ones need, and the session reports the fallback.
 *
 * - QKD out of keys: stop the BB84 link and let the two SAEs consume the KMEs' stock through the
 *   ordinary ETSI 014 API (enc_keys on kme-a, then dec_keys on kme-b, so neither KME keeps
 *   undelivered keys). The policy then finds "no keys in stock" → PQC+QRNG, degraded.
 * - QRNG quarantined: the simulated Quantis on node A emits a stuck byte; the health tests
 *   quarantine it → PQC with OS randomness, degraded.
 */

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25).unref());
  }
}

function qkdOf(setup: TwoNodeSetup, node: 'a' | 'b') {
  const q = setup[node].appliance.qkd;
  if (!q) throw new Error(`node ${node} has no QKD key source`);
  return q;
}

/** Keys node A's KME holds for node B's SAE right now. */
export async function qkdStock(setup: TwoNodeSetup): Promise<number> {
  return (await qkdOf(setup, 'a').status(setup.b.saeId, { timeoutMs: 2000 })).storedKeyCount;
}

/** Waits until node A's KME has at least `min` keys for node B. */
export async function waitForQkdKeys(setup: TwoNodeSetup, min = 1, timeoutMs = 15_000): Promise<void> {
  await until(`${min} QKD key(s) in stock`, async () => (await qkdStock(setup)) >= min, timeoutMs);
}

/**
 * Stops the link and consumes every key in stock on both KMEs (bounded). Why stop rather than
 * pause: the pair's feeder resumes a paused link as soon as pool room frees up (it pauses the link
 * itself when the pools are full), which the draining here would trigger.
 */
export async function exhaustQkd(setup: TwoNodeSetup): Promise<number> {
  await setup.kme.stopLink();
  const a = qkdOf(setup, 'a');
  const b = qkdOf(setup, 'b');
  let consumed = 0;
  for (let round = 0; round < 50; round++) {
    const s = await a.status(setup.b.saeId, { timeoutMs: 2000 });
    if (s.storedKeyCount === 0) return consumed;
    const n = Math.min(s.storedKeyCount, s.maxKeyPerRequest);
    const keys = await a.getKeys(setup.b.saeId, { number: n, size: s.keySize });
    for (const k of keys) k.key.fill(0);
    const fetched = await b.getKeysById(
      setup.a.saeId,
      keys.map((k) => k.keyId),
    );
    for (const k of fetched) k.key.fill(0);
    consumed += keys.length;
  }
  throw new Error('the QKD stock did not run out');
}

/**
 * Restarts the link, waits for keys again and until node A's policy sees the link up: the
 * policy reuses a "link down" answer for up to a second (DEFAULT_QKD_DOWN_CACHE_MS).
 */
export async function restoreQkd(setup: TwoNodeSetup, timeoutMs = 15_000): Promise<void> {
  await setup.kme.restartLink();
  await waitForQkdKeys(setup, 1, timeoutMs);
  const { policy, peers } = setup.a.appliance;
  const peer = await peers.require(setup.b.nodeId);
  await until(
    "node A's policy to see the QKD link up",
    async () => (await policy.availability('QKD+PQC+QRNG', peer)).ok,
    timeoutMs,
  );
}

function quantisOf(setup: TwoNodeSetup, node: 'a' | 'b') {
  const q = setup[node].appliance.simulator;
  if (!q) throw new Error(`node ${node} has no simulated Quantis`);
  return q;
}

/** Whether node `node` has a healthy quantum entropy source now. */
export function quantumAvailable(setup: TwoNodeSetup, node: 'a' | 'b' = 'a'): boolean {
  return setup[node].appliance.entropy.status().quantumAvailable;
}

/** Makes node A's Quantis emit a stuck byte and waits until the health tests quarantine it. */
export async function quarantineQrng(setup: TwoNodeSetup, timeoutMs = 10_000): Promise<void> {
  quantisOf(setup, 'a').device.setFaults({ stuck: true });
  await until('the Quantis on node A to be quarantined', () => !quantumAvailable(setup, 'a'), timeoutMs);
}

/**
 * Clears the fault and re-seats the device (unplug, replug), then waits for a fresh start-up test
 * to re-admit the source. Why re-seat: with the appliance's default Quantis settings, clearing
 * the fault alone did not bring the source back within 20 s (its start-up retries kept failing
 * RCT), while a re-plug re-opens it at once — which is also what an operator would do.
 */
export async function restoreQrng(setup: TwoNodeSetup, timeoutMs = 10_000): Promise<void> {
  const { device } = quantisOf(setup, 'a');
  device.clearFaults();
  device.unplug();
  const detached = () =>
    setup.a.appliance.entropy.status().sources.some((s) => s.kind === 'quantum' && s.state === 'detached');
  await until('the Quantis on node A to be detached', detached, timeoutMs).catch(() => undefined);
  device.replug();
  await until('quantum entropy on node A', () => quantumAvailable(setup, 'a'), timeoutMs);
}

/** Waits until node `node` has quantum entropy (start-up tests passed). */
export async function waitForQrng(
  setup: TwoNodeSetup,
  node: 'a' | 'b' = 'a',
  timeoutMs = 10_000,
): Promise<void> {
  await until(`quantum entropy on node ${node}`, () => quantumAvailable(setup, node), timeoutMs);
}
