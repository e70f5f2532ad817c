/**
 * `session-floor` bench (information): the fastest an establishment could be with qkm's
 * guarantees and none of its logic — the `session` bench's primitive chain (same backend, same
 * yields) plus what durability-before-answering and the two API requests cost on this machine:
 * - the initiator's synced batch (session + audit record), started before the ML-DSA signature
 *   and awaited after it, as src/session/initiator.ts does;
 * - the responder's synced batch (replay entry + session + audit record), started after the
 *   verification (nothing is written for an unverified handshake) and awaited after the
 *   decapsulation, as src/session/responder.ts does;
 * - two loopback HTTP/1.1 keep-alive POSTs to a bare Fastify route, ~6 KB of JSON each way
 *   (a handshake), one after the initiator's step and one after the responder's.
 * Ratio = floor p50 / chain p50, interleaved in one run: the best `session` could reach against
 * its 1.3 goal. Alongside: one synced LevelDB batch and one bare round trip, each alone.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ClassicLevel } from 'classic-level';
import Fastify from 'fastify';
import { taggedMessage } from '../../src/pqc/domain.js';
import {
  mlDsa65KeygenFromSeed,
  mlDsa65Sign,
  mlDsa65Verify,
  mlKem768Decapsulate,
  mlKem768Encapsulate,
  mlKem768KeygenFromSeed,
  usePqcBackend,
} from '../../src/pqc/index.js';
import type { BenchRecord } from './types.js';

const BENCH = 'session-floor';
const WARMUP = 100;
const RUNS = 500;
/** A handshake's JSON: ML-DSA-65 signature (3309 B) + body (~1300 B), base64url. */
const HANDSHAKE_CHARS = 6200;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil(s.length / 2) - 1)] as number;
};
const round = (x: number) => Math.round(x * 1000) / 1000;
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export default async function run(): Promise<BenchRecord[]> {
  await usePqcBackend('liboqs-wasm');
  const dir = await mkdtemp(join(tmpdir(), 'qkm-floor-'));
  const db = new ClassicLevel<string, string>(join(dir, 'db'));
  await db.open();
  const app = Fastify({ logger: false });
  const answer = { handshake: 'y'.repeat(HANDSHAKE_CHARS) };
  app.post('/v1/x', async () => answer);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  const agent = new Agent({ keepAlive: true });
  const payload = JSON.stringify({ handshake: 'y'.repeat(HANDSHAKE_CHARS) });
  const roundTrip = () =>
    new Promise<void>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/v1/x',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            JSON.parse(Buffer.concat(chunks).toString('utf8'));
            resolve();
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  const kem = mlKem768KeygenFromSeed(new Uint8Array(randomBytes(64)));
  const dsa = mlDsa65KeygenFromSeed(new Uint8Array(randomBytes(32)));
  const body = new Uint8Array(randomBytes(1300));
  const tag = new TextEncoder().encode('qkm/v1 handshake');
  let n = 0;
  const put = (size: number) => ({ type: 'put' as const, key: `k${n++}`, value: 'x'.repeat(size) });

  /** The chain; with `floor`, plus the two synced batches and the two round trips where qkm has them. */
  async function once(floor: boolean): Promise<number> {
    const seed = new Uint8Array(randomBytes(32));
    await yieldToLoop();
    const t = performance.now();
    const { cipherText } = mlKem768Encapsulate(kem.publicKey, seed);
    await yieldToLoop();
    hkdfSync('sha256', randomBytes(64), randomBytes(32), body.subarray(0, 40), 32);
    const a = floor ? db.batch([put(1400), put(1000)], { sync: true }) : undefined;
    await yieldToLoop();
    const sig = mlDsa65Sign(taggedMessage(tag, body), dsa.secretKey);
    await a;
    if (floor) await roundTrip();
    await yieldToLoop();
    mlDsa65Verify(sig, taggedMessage(tag, body), dsa.publicKey);
    const b = floor ? db.batch([put(25), put(600), put(600)], { sync: true }) : undefined;
    await yieldToLoop();
    mlKem768Decapsulate(cipherText, kem.secretKey);
    await b;
    if (floor) await roundTrip();
    return performance.now() - t;
  }

  const chain: number[] = [];
  const floor: number[] = [];
  const fsync: number[] = [];
  const http: number[] = [];
  try {
    for (let i = 0; i < WARMUP; i++) {
      await once(false);
      await once(true);
    }
    for (let i = 0; i < RUNS; i++) {
      chain.push(await once(false));
      floor.push(await once(true));
      let t = performance.now();
      await db.batch([put(1400), put(1000)], { sync: true });
      fsync.push(performance.now() - t);
      t = performance.now();
      await roundTrip();
      http.push(performance.now() - t);
    }
  } finally {
    agent.destroy();
    await app.close();
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
  const c = median(chain);
  const f = median(floor);
  return [
    {
      bench: BENCH,
      metric:
        'floor p50: primitive chain + two synced batches + two bare loopback HTTP round trips (information)',
      value: round(f),
      unit: 'ms',
      baseline: round(c),
      ratio: round(f / c),
      note:
        `${RUNS} of each, interleaved; the session bench's goal is ≤ 1.3 of the chain (${round(1.3 * c)} ms here); ` +
        `one synced LevelDB batch p50 ${round(median(fsync))} ms, one bare round trip p50 ${round(median(http))} ms`,
    },
  ];
}
