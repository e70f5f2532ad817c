/**
 * The two-node setup with the KME pair and its link in a child process (how the benchmark runs
 * it): sessions still use QKD over mutual TLS, the link controls reach the child, and stopping
 * the setup ends the child.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type TwoNodeSetup,
  exhaustQkd,
  restoreQkd,
  startTwoNodeSetup,
  waitForQkdKeys,
  waitForQrng,
} from '../../src/demo/index.js';

let setup: TwoNodeSetup;

beforeAll(async () => {
  setup = await startTwoNodeSetup({ timeScale: 50, kmeProcess: true });
  await waitForQrng(setup, 'a');
  await waitForQkdKeys(setup);
}, 30_000);

afterAll(async () => {
  await setup?.stop();
});

async function establish() {
  const init = await setup.a.client.sessions.initiate({ peer: setup.b.nodeId });
  const acc = await setup.b.client.sessions.accept(init.handshake);
  expect(Buffer.from(acc.key).equals(Buffer.from(init.key))).toBe(true);
  return init;
}

describe('KME pair in a child process', () => {
  it('serves QKD keys to both nodes; stopping and restarting its link moves the posture', async () => {
    const kmeUrls = setup.describe().kmes.map((k) => k.url);
    expect(kmeUrls).toHaveLength(2);
    expect((await establish()).posture).toBe('QKD+PQC+QRNG');
    await exhaustQkd(setup);
    const fallback = await establish();
    expect(fallback.posture).toBe('PQC+QRNG');
    expect(fallback.provenance.reason).toMatch(/no keys in stock/);
    await restoreQkd(setup);
    expect((await establish()).posture).toBe('QKD+PQC+QRNG');
  }, 30_000);

  it('stop() ends the child: its KMEs no longer answer', async () => {
    const url = new URL(setup.describe().kmes[0]!.url);
    await setup.stop();
    const { connect } = await import('node:net');
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect({ host: url.hostname, port: Number(url.port) });
      s.once('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.once('error', () => resolve(true));
    });
    expect(refused).toBe(true);
  });
});
