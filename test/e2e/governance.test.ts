import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { type QkmApiError, QkmClient } from '../../src/client/client.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { runCli } from '../cli/run-cli.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { type SignedPrekey, verifyPrekey } from '../../src/governance/prekeys.js';
import { fromBase64url } from '../../src/session/encoding.js';

/**
 * Governed agents on a real appliance over loopback HTTP (issue #12, layer 1): agent ids,
 * contact policies set and explained through the CLI and the API, budgets durable across a
 * restart.
 */

const BOB = 'bob@example.com:calendar';
const ALICE = 'alice@example.com:mail';
let dir: string;
let appliance: Appliance;
let admin: QkmClient;
let plain: QkmClient;

async function start(): Promise<Appliance> {
  const config = loadConfig({
    env: {},
    overrides: { dataDir: join(dir, 'data'), port: 0, logLevel: 'silent', mode: 'simulator' },
  });
  // A short window would make the test depend on the clock; the default (one day) is used.
  return Appliance.start({ simulator: simulatedQuantis, config, logger: createLogger({ level: 'silent' }) });
}

async function connect(): Promise<void> {
  admin = new QkmClient({
    url: appliance.url,
    token: (await readFile(appliance.tokenFiles.admin!, 'utf8')).trim(),
  });
  plain = new QkmClient({
    url: appliance.url,
    token: (await readFile(appliance.tokenFiles.default!, 'utf8')).trim(),
  });
}

const cli = (...args: string[]) => runCli('--url', appliance.url, '--data', join(dir, 'data'), ...args);

async function apiError(p: Promise<unknown>): Promise<{ status: number; code: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as QkmApiError;
    return { status: e.status, code: e.code };
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-gov-'));
  appliance = await start();
  await connect();
}, 60_000);

afterAll(async () => {
  await appliance?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('governed agents and contact policies', () => {
  it('qkm agent add --aid registers a governed id, unique on the node', async () => {
    const r = await cli('agent', 'add', 'bob', '--aid', 'bob@EXAMPLE.com:calendar');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`bob (${BOB})`);
    const dup = await cli('--json', 'agent', 'add', 'bob2', '--aid', BOB);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toContain('AID_EXISTS');
    const bad = await cli('agent', 'add', 'x', '--aid', 'not-an-id');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('AID_INVALID');
    expect((await admin.agents.list()).find((a) => a.name === 'bob')?.aid).toBe(BOB);
  });

  it('qkm policy contacts sets rules and explains decisions (most specific wins)', async () => {
    const set = await cli(
      '--json',
      'policy',
      'contacts',
      BOB,
      '--set',
      '*@example.com:*=2',
      'alice@*=-1',
      `${ALICE}=1`,
    );
    expect(set.code).toBe(0);
    expect(JSON.parse(set.stdout).rules).toEqual([
      { pattern: ALICE, budget: 1 },
      { pattern: '*@example.com:*', budget: 2 },
      { pattern: 'alice@*:*', budget: -1 },
    ]);
    const allowed = JSON.parse((await cli('--json', 'policy', 'contacts', BOB, '--initiator', ALICE)).stdout);
    expect(allowed).toMatchObject({ outcome: 'allowed', rule: { pattern: ALICE, budget: 1 }, remaining: 1 });
    const blocked = await cli('policy', 'contacts', BOB, '--initiator', 'alice@other.org:mail');
    expect(blocked.stdout).toContain("BLOCKED by 'alice@*:*'");
    const none = JSON.parse(
      (await cli('--json', 'policy', 'contacts', BOB, '--initiator', 'carol@other.org:x')).stdout,
    );
    expect(none).toMatchObject({ outcome: 'no-match', remaining: 0 });
    const human = await cli('policy', 'contacts', BOB);
    expect(human.stdout).toContain('3 rule(s), most specific first');
  });

  it('the API validates and refuses with catalogue codes; admin only; every change audited', async () => {
    expect(await apiError(plain.contacts.get(BOB))).toEqual({ status: 403, code: 'FORBIDDEN' });
    expect(await apiError(admin.contacts.get('carol@example.com:x'))).toEqual({
      status: 404,
      code: 'AID_NOT_FOUND',
    });
    expect(await apiError(admin.contacts.get('nope'))).toEqual({ status: 400, code: 'AID_INVALID' });
    expect(await apiError(admin.contacts.set(BOB, [{ pattern: 'alice@x.com', budget: 1 }]))).toEqual({
      status: 400,
      code: 'POLICY_INVALID',
    });
    expect(
      await apiError(
        admin.contacts.set(BOB, [
          { pattern: '*', budget: 1 },
          { pattern: '*@*:*', budget: 1 },
        ]),
      ),
    ).toEqual({ status: 400, code: 'POLICY_INVALID' });
    expect(await apiError(admin.contacts.decision(BOB, 'x'))).toEqual({ status: 400, code: 'AID_INVALID' });
    const records = await admin.audit.export<{ type: string; details: Record<string, unknown> }>();
    expect(records.some((r) => r.type === 'governance.policy_set' && r.details.aid === BOB)).toBe(true);
  });

  it('budgets are consumed durably: a restart does not reset them', async () => {
    expect(await appliance.contacts.consume(BOB, ALICE)).toMatchObject({ used: 1, remaining: 0 });
    await expect(appliance.contacts.consume(BOB, ALICE)).rejects.toMatchObject({
      code: 'CONTACT_BUDGET_EXHAUSTED',
    });
    await appliance.close();
    appliance = await start();
    await connect();
    const d = JSON.parse((await cli('--json', 'policy', 'contacts', BOB, '--initiator', ALICE)).stdout);
    expect(d).toMatchObject({ outcome: 'budget-exhausted', used: 1 });
    await expect(appliance.contacts.consume(BOB, ALICE)).rejects.toMatchObject({
      code: 'CONTACT_BUDGET_EXHAUSTED',
    });
    // Another initiator's budget under the same rule is its own.
    expect(await appliance.contacts.consume(BOB, 'dave@example.com:mail')).toMatchObject({
      used: 1,
      remaining: 1,
    });
  }, 60_000);

  it('the node publishes signed one-time prekeys and a last-resort prekey for its governed agents', async () => {
    const r = { prekeys: await admin.prekeys.publish<SignedPrekey>(BOB, 3) };
    expect(r.prekeys).toHaveLength(3);
    const bundle = await plain.identity<{ node_id: string; ml_dsa_65_public_key: string }>();
    const dsa = fromBase64url(bundle.ml_dsa_65_public_key);
    const [first] = r.prekeys;
    const { publicKey } = verifyPrekey(first, dsa, { aid: BOB, nodeId: bundle.node_id });
    const listed = { prekeys: await admin.prekeys.list<SignedPrekey>(BOB) };
    expect(listed.prekeys.map((p) => p.id).sort()).toEqual(r.prekeys.map((p) => p.id).sort());
    // Used once (through the node's store), it is gone from the list and refuses a second use.
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(publicKey);
    const d = await appliance.prekeys.decapsulate(first!.id, cipherText);
    expect(Buffer.from(d.sharedSecret).equals(Buffer.from(sharedSecret))).toBe(true);
    await expect(appliance.prekeys.decapsulate(first!.id, cipherText)).rejects.toMatchObject({
      code: 'PREKEY_CONSUMED',
    });
    expect(await admin.prekeys.list(BOB)).toHaveLength(2);
    const lr = await admin.prekeys.lastResort<SignedPrekey>(BOB);
    expect(verifyPrekey(lr, dsa, { aid: BOB, nodeId: bundle.node_id }).prekey.kind).toBe('last-resort');
    expect(await apiError(admin.prekeys.publish('carol@example.com:x', 1))).toEqual({
      status: 404,
      code: 'AID_NOT_FOUND',
    });
    expect(await apiError(admin.prekeys.publish(BOB, 101))).toEqual({
      status: 400,
      code: 'BAD_REQUEST',
    });
    expect(await apiError(plain.prekeys.list(BOB))).toEqual({ status: 403, code: 'FORBIDDEN' });
  });
});
