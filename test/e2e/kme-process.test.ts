/**
 * The child-process KME pair's lifecycle (sessions through it are covered by two-node.test.ts,
 * which runs the same setup): stopping the setup ends the child, and so does the parent's death.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TwoNodeSetup, startTwoNodeSetup, waitForQkdKeys } from '../../src/demo/index.js';

let setup: TwoNodeSetup;

beforeAll(async () => {
  setup = await startTwoNodeSetup({ timeScale: 50, kmeProcess: true });
  await waitForQkdKeys(setup);
}, 30_000);

afterAll(async () => {
  await setup?.stop();
});

describe('KME pair in a child process', () => {
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

  it('a parent killed with SIGKILL does not leave its KME child behind', async () => {
    const fixture = fileURLToPath(new URL('./fixtures/kme-parent.ts', import.meta.url));
    const tsx = createRequire(import.meta.url).resolve('tsx');
    const parent = spawn(process.execPath, ['--import', tsx, fixture], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const [line] = (await once(createInterface({ input: parent.stdout! }), 'line')) as [string];
    const childPid = Number(line);
    expect(Number.isInteger(childPid) && childPid > 0).toBe(true);
    // Running, not a zombie: an orphan's exit status may never be collected where PID 1 does not reap.
    const alive = (pid: number) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
      } catch {
        return false;
      }
    };
    expect(alive(childPid)).toBe(true);
    parent.kill('SIGKILL');
    await once(parent, 'exit');
    const deadline = Date.now() + 10_000;
    while (alive(childPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(alive(childPid)).toBe(false);
  }, 30_000);
});

describe('a KME that dies while sessions run', () => {
  it('the next session falls back visibly, and the status says the link is down (not at the next poll)', async () => {
    const s = await startTwoNodeSetup({ timeScale: 50, kmeProcess: true });
    try {
      await waitForQkdKeys(s);
      const before = await s.a.client.sessions.initiate({ responderAgent: 'default', peer: s.b.nodeId });
      expect(before.posture).toBe('QKD+PQC+QRNG');
      await s.b.client.sessions.accept(before.handshake);
      expect((await s.a.client.status()).degraded).toBe(false);

      process.kill(s.kme.pid!, 'SIGKILL');
      const after = await s.a.client.sessions.initiate({ responderAgent: 'default', peer: s.b.nodeId });
      expect(after.posture).toBe('PQC+QRNG');
      expect(after.provenance).toMatchObject({ degraded: true, fallback: true });
      const acc = await s.b.client.sessions.accept(after.handshake);
      expect(Buffer.from(acc.key).equals(Buffer.from(after.key))).toBe(true);
      // Seen by the session, not by the next 10 s poll.
      const status = await s.a.client.status();
      expect(status.degraded).toBe(true);
      expect(status.qkd).toEqual([expect.objectContaining({ peerSaeId: s.b.saeId, up: false })]);
      expect(status.reasons.join('; ')).toMatch(/QKD link to sae-b is down/);
    } finally {
      await s.stop();
    }
  }, 30_000);

  it('a KME that stops answering delays one session by the fallback deadline (1 s), not the KME deadline (5 s)', async () => {
    const s = await startTwoNodeSetup({ timeScale: 50, kmeProcess: true });
    const pid = s.kme.pid!;
    try {
      await waitForQkdKeys(s);
      const before = await s.a.client.sessions.initiate({ responderAgent: 'default', peer: s.b.nodeId });
      expect(before.posture).toBe('QKD+PQC+QRNG');
      await s.b.client.sessions.accept(before.handshake);

      // Frozen, not dead: connections stay open and requests are taken in, but nothing answers.
      process.kill(pid, 'SIGSTOP');
      const t0 = performance.now();
      const first = await s.a.client.sessions.initiate({ responderAgent: 'default', peer: s.b.nodeId });
      const firstMs = performance.now() - t0;
      expect(first.posture).toBe('PQC+QRNG');
      expect(first.provenance).toMatchObject({ degraded: true, fallback: true });
      expect(first.provenance.reason).toMatch(/KME|QKD/);
      // Bounded by qkd.fallbackTimeoutMs, not by qkd.timeoutMs (5000) or its retries.
      expect(firstMs).toBeLessThan(4000);
      const acc = await s.b.client.sessions.accept(first.handshake);
      expect(Buffer.from(acc.key).equals(Buffer.from(first.key))).toBe(true);

      // The unanswered enc_keys is the "down" answer: the next session does not wait at all
      // for the KME (nor for a status request to it).
      const second = await s.a.client.sessions.initiate({ responderAgent: 'default', peer: s.b.nodeId });
      expect(second.posture).toBe('PQC+QRNG');
      expect((await s.a.client.status()).degraded).toBe(true);
    } finally {
      process.kill(pid, 'SIGCONT');
      await s.stop();
    }
  }, 30_000);
});
