import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/app.js';
import { simulatedQuantis } from '../../src/cli/simulator.js';
import { loadConfig } from '../../src/core/config.js';
import { isQkmError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';

/**
 * kill -9 under load, three times, then a clean start: the audit log and the key store must
 * agree — every key has its `key.created`, every taken key exactly one `key.taken` — and no
 * acknowledged key is lost or taken twice.
 */

const FIXTURE = resolve(import.meta.dirname, 'fixtures/appliance-load.ts');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-audit-crash-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the load child and SIGKILLs it once it has acknowledged `killAfter` operations. */
function runAndKill(
  dataDir: string,
  killAfter: number,
): Promise<{ created: string[]; taken: string[]; taking: string[] }> {
  return new Promise((resolvePromise, reject) => {
    // `node --import tsx` (not `npx tsx`): a SIGKILL must reach the process holding the store.
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dataDir], {
      cwd: resolve(import.meta.dirname, '../..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const created: string[] = [];
    const taken: string[] = [];
    const taking: string[] = [];
    let buffer = '';
    let stderr = '';
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
    guard.unref();
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const [verb, id] = buffer.slice(0, nl).split(' ');
        buffer = buffer.slice(nl + 1);
        if (verb === 'created' && id) created.push(id);
        if (verb === 'taken' && id) taken.push(id);
        if (verb === 'taking' && id) taking.push(id);
      }
      if (created.length + taken.length >= killAfter && child.exitCode === null) child.kill('SIGKILL');
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL') reject(new Error(`child ended (${code}) without being killed: ${stderr}`));
      else resolvePromise({ created, taken, taking });
    });
  });
}

describe('audit and key store after kill -9 under load', () => {
  it('agree after three crashes, with no acknowledged key lost and none taken twice', async () => {
    const dataDir = join(dir, 'data');
    const created: string[] = [];
    const taken: string[] = [];
    const taking: string[] = [];
    for (let round = 0; round < 3; round++) {
      const r = await runAndKill(dataDir, 150 + round * 37);
      created.push(...r.created);
      taken.push(...r.taken);
      taking.push(...r.taking);
    }
    expect(created.length).toBeGreaterThan(200);

    const appliance = await Appliance.start({
      simulator: simulatedQuantis,
      config: loadConfig({
        env: {},
        overrides: { dataDir, port: 0, logLevel: 'silent', mode: 'simulator' },
      }),
      logger: createLogger({ level: 'silent' }),
    });
    try {
      // Keys made through POST /v1/keys (the node's identity key is not one of them).
      const keys = await appliance.keys.list({ limit: 1000, purpose: 'symmetric' });
      const byId = new Map(keys.map((k) => [k.id, k]));
      // No acknowledged key lost; every acknowledged take stuck.
      for (const id of created) expect(byId.has(id), id).toBe(true);
      for (const id of taken) expect(byId.get(id)?.state, id).toBe('taken');

      const records = await appliance.audit.records();
      const count = (type: string, id: string) =>
        records.filter((r) => r.type === type && r.details.key_id === id).length;
      for (const k of keys) {
        expect(count('key.created', k.id), `key.created ${k.id}`).toBe(1);
        expect(count('key.taken', k.id), `key.taken ${k.id}`).toBe(k.state === 'taken' ? 1 : 0);
      }
      // Taken keys stay taken: never handed out twice.
      for (const k of keys.filter((k) => k.state === 'taken').slice(0, 50)) {
        const err = await appliance.keys.take(k.id).catch((e: unknown) => e);
        expect(isQkmError(err, 'KEY_ALREADY_TAKEN')).toBe(true);
      }
      // Takes in flight at a kill: the retry with the same Idempotency-Key delivers the key —
      // its held bytes if the take had committed, a fresh take if it had not. None is lost.
      const token = (await readFile(appliance.tokenFiles.default!, 'utf8')).trim();
      const done = new Set(taken);
      const inFlight = taking.filter((id) => !done.has(id));
      if (process.env.QKM_TEST_VERBOSE) console.log('takes in flight at the kills:', inFlight.length);
      // Six workers, two in three of their steps a take: every kill catches some mid-take.
      expect(inFlight.length).toBeGreaterThan(0);
      for (const id of inFlight) {
        const res = await fetch(`${appliance.url}/v1/keys/${id}/take`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'idempotency-key': `crash-${id}` },
        });
        expect(res.status, id).toBe(200);
        expect(Buffer.from(((await res.json()) as { key: string }).key, 'base64')).toHaveLength(32);
      }
      // Whatever the crashes left unrecorded was reconciled, and that is on record too.
      const reconciled = records.filter((r) => r.details.reconciled === true);
      if (reconciled.length > 0) expect(records.some((r) => r.type === 'audit.reconciled')).toBe(true);
    } finally {
      await appliance.close();
    }
  }, 180_000);
});
