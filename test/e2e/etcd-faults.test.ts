import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QkmClient } from '../../src/client/client.js';
import { tokenFile } from '../../src/core/datadir.js';
import { EtcdCluster, etcdUnavailableReason } from '../helpers/etcd-cluster.js';

/**
 * Fault campaign: three qkm appliances (child processes) on one 3-member etcd cluster, under
 * concurrent create/take load over real HTTP; in each round one etcd member and one appliance
 * are killed with SIGKILL and later restarted. Properties: no key is served twice, every
 * acknowledged key is either taken exactly once or (for a take whose answer was lost) gone —
 * never missing while it should be active — and the clients of the surviving appliances keep
 * working (the longest gap between their successes is printed as the unavailability window).
 */

const SKIP = etcdUnavailableReason();
const FIXTURE = resolve(import.meta.dirname, 'fixtures/etcd-appliance.ts');
const ROUNDS = 3;
/** Bound on the wait for the survivors' first success after a kill (a hung cluster fails the run). */
const SURVIVOR_DEADLINE_MS = 20_000;

interface Node {
  name: string;
  dir: string;
  proc: ChildProcess | undefined;
  url: string | undefined;
}

let cluster: EtcdCluster;
let root: string;
const nodes: Node[] = [];
const prefix = 'fault/';
let token: string;

function startNode(n: Node): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', FIXTURE, n.dir, cluster.endpoints.join(','), prefix, n.name],
      { cwd: resolve(import.meta.dirname, '../..'), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`appliance ${n.name} did not start: ${stderr}`));
    }, 25_000);
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const m = /ready (\S+)/.exec(chunk);
      if (m) {
        clearTimeout(guard);
        n.url = m[1];
        resolvePromise();
      }
    });
    child.on('exit', () => {
      if (n.proc === child) {
        n.proc = undefined;
        n.url = undefined;
      }
    });
    n.proc = child;
  });
}

async function killNode(n: Node): Promise<void> {
  const p = n.proc;
  if (!p || p.exitCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
}

describe.skipIf(SKIP !== undefined)('etcd fault campaign: 3 appliances on a 3-member cluster', () => {
  beforeAll(async () => {
    cluster = await EtcdCluster.start();
    root = await mkdtemp(join(tmpdir(), 'qkm-etcd-faults-'));
    for (const name of ['a', 'b', 'c'])
      nodes.push({ name, dir: join(root, name), proc: undefined, url: undefined });
    await startNode(nodes[0]!);
    // Every appliance sharing the store needs the same KEK and the same agent tokens.
    for (const n of nodes.slice(1)) await cp(nodes[0]!.dir, n.dir, { recursive: true });
    await Promise.all(nodes.slice(1).map(startNode));
    token = (await readFile(tokenFile(nodes[0]!.dir, 'default'), 'utf8')).trim();
  }, 60_000);

  afterAll(async () => {
    for (const n of nodes) await killNode(n);
    await cluster?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  }, 30_000);

  it('kill -9 of an etcd member and an appliance, repeatedly: 0 served twice, 0 acknowledged lost', async () => {
    const created = new Set<string>();
    /** Takes that were sent but whose answer never came (the appliance or the link died). */
    const ambiguous = new Set<string>();
    const served = new Map<string, string>();
    let doubles = 0;
    let stop = false;
    let down: string | undefined;
    const lastOk = new Map<string, number>();
    const windows: number[] = [];
    const roundOk = new Map<string, number>();

    const worker = async (n: Node, w: number) => {
      while (!stop) {
        const url = n.url;
        if (url === undefined) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        const client = new QkmClient({ url, token });
        try {
          const meta = await client.keys.create({ size: 32 });
          created.add(meta.id);
          // Take through another appliance: the cluster, not the process, holds the key.
          const other = nodes[(nodes.indexOf(n) + 1 + (w % 2)) % nodes.length]!;
          const takeUrl = other.url ?? url;
          try {
            const got = await new QkmClient({ url: takeUrl, token }).keys.take(meta.id);
            const digest = createHash('sha256').update(got.key).digest('hex');
            if (served.has(meta.id)) doubles++;
            served.set(meta.id, digest);
          } catch (err) {
            ambiguous.add(meta.id);
            throw err;
          }
          const now = performance.now();
          if (down !== undefined && n.name !== down) {
            const prev = lastOk.get(n.name);
            if (prev !== undefined) windows.push(now - prev);
            roundOk.set(n.name, (roundOk.get(n.name) ?? 0) + 1);
          }
          lastOk.set(n.name, now);
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    };
    const load = nodes.flatMap((n) => [0, 1].map((w) => worker(n, w)));

    const rounds: Array<{
      member: number;
      appliance: string;
      survivorsOk: number;
      firstOkMs: number | undefined;
    }> = [];
    for (let r = 0; r < ROUNDS; r++) {
      await new Promise((res) => setTimeout(res, 1500));
      const member = r % 3;
      const victim = nodes[(r + 1) % 3]!;
      roundOk.clear();
      down = victim.name;
      await Promise.all([cluster.kill(member), killNode(victim)]);
      // Survivors must serve while the member and the appliance stay down. How soon is a
      // timing figure (a leader kill costs an election plus the in-flight calls' deadline,
      // longer on a loaded 2-core runner), so it is printed, not asserted: the wait is bounded
      // only to fail a run where they never recover.
      const killedAt = performance.now();
      const survivorsTotal = () => [...roundOk.values()].reduce((a, b) => a + b, 0);
      while (survivorsTotal() === 0 && performance.now() - killedAt < SURVIVOR_DEADLINE_MS)
        await new Promise((res) => setTimeout(res, 50));
      const firstOkMs = survivorsTotal() === 0 ? undefined : Math.round(performance.now() - killedAt);
      await new Promise((res) => setTimeout(res, 1000));
      const survivorsOk = survivorsTotal();
      rounds.push({ member, appliance: victim.name, survivorsOk, firstOkMs });
      cluster.restart(member);
      await startNode(victim);
      down = undefined;
      await cluster.waitHealthy();
    }
    await new Promise((res) => setTimeout(res, 1000));
    stop = true;
    await Promise.all(load);

    // Every acknowledged key not yet served: either it is still active and can be taken now
    // (exactly once), or an answer was lost in flight and the store says it was taken.
    const client = new QkmClient({ url: nodes[0]!.url!, token });
    let lost = 0;
    for (const id of created) {
      if (served.has(id)) continue;
      try {
        await client.keys.take(id);
        served.set(id, 'late');
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (!(code === 'KEY_ALREADY_TAKEN' && ambiguous.has(id))) lost++;
      }
    }
    const window = windows.length === 0 ? 0 : Math.max(...windows);
    console.log(
      `etcd faults: ${ROUNDS} rounds, ${created.size} keys acknowledged, ${served.size} served, ` +
        `${ambiguous.size} ambiguous takes, doubles=${doubles} lost=${lost}, ` +
        `survivor unavailability window max ${window.toFixed(0)} ms; rounds ${JSON.stringify(rounds)}`,
    );
    expect(doubles).toBe(0);
    expect(lost).toBe(0);
    expect(created.size).toBeGreaterThan(20);
    // The clients of the surviving appliances kept working while a member and an appliance were down.
    for (const r of rounds) expect(r.survivorsOk).toBeGreaterThan(0);
  }, 150_000);
});

if (SKIP !== undefined) {
  describe('etcd fault campaign', () => {
    it.skip(`skipped: ${SKIP}`, () => undefined);
  });
}
