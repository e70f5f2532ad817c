import { randomUUID } from 'node:crypto';
import { QkmError, isQkmError } from '../core/errors.js';
import type { Provenance } from '../core/provenance.js';
import type { KeyStore } from '../keys/interface.js';
import { signTagged, verifyTagged } from '../pqc/domain.js';
import { mlKem768Decapsulate, mlKem768KeygenFromSeed } from '../pqc/index.js';
import { encodeFields, fromBase64url, str, toBase64url } from '../session/encoding.js';
import type { RecordStore } from '../store/interface.js';
import { canonicalAid } from './aid.js';
import { type Static, Type } from '@sinclair/typebox';

/**
 * ML-KEM-768 one-time prekeys (OTKs) of governed agents, and one medium-term last-resort
 * prekey per agent (issue #12 layer 2, library).
 *
 * Each prekey is a statement signed by the node's ML-DSA-65 identity (tag "qkm/v2 prekey" in the
 * tagged form of src/pqc/domain.ts; the older FIPS 204 context form still verifies) that binds the public key to the agent id, the node, its kind and validity:
 *   sign(encode("qkm/v2 prekey", kind, aid, node_id, id, ml_kem_768_public_key, created, expires))
 * The secret side is stored as the 64-byte ML-KEM key-generation seed (FIPS 203 (d, z)) in the
 * node's KeyStore, encrypted under the KEK. An OTK's seed is TAKEN (atomically destroyed) by the
 * one decapsulation that uses it, so once a session has used an OTK, nothing the responder keeps
 * — store and KEK together — can decapsulate that session's ciphertext again: forward secrecy.
 * The last-resort prekey is read, not taken (it serves while no OTK is left); decapsulations
 * with it are flagged `lastResort: true` so provenance can say so.
 */

export const PREKEY_VERSION = 2;
export const PREKEY_CONTEXT = str('qkm/v2 prekey');
const SEED_BYTES = 64;
export const DEFAULT_OTK_TTL_SECONDS = 30 * 86_400;
export const DEFAULT_LAST_RESORT_TTL_SECONDS = 30 * 86_400;
export const MAX_BATCH = 100;

export type PrekeyKind = 'otk' | 'last-resort';

/**
 * The public, signed statement (what the Provider stores and hands out): one schema for the
 * node's routes, the Provider's and the SDK's types.
 */
export const SignedPrekeySchema = Type.Object({
  v: Type.Literal(PREKEY_VERSION),
  kind: Type.Union([Type.Literal('otk'), Type.Literal('last-resort')]),
  id: Type.String(),
  aid: Type.String(),
  node_id: Type.String(),
  ml_kem_768_public_key: Type.String(),
  created: Type.String(),
  expires: Type.String(),
  signature: Type.String(),
});
export type SignedPrekey = Static<typeof SignedPrekeySchema>;

/** What the node keeps about its own prekeys (not secret; the seed is in the KeyStore). */
export interface PrekeyRecord {
  prekey: SignedPrekey;
  seedId: string;
  /** When an OTK was used (its seed is destroyed); kept so a reuse says PREKEY_CONSUMED. */
  used?: string;
}

/** Index record: prekey id → key of its `PrekeyRecord`, so a decapsulation is two reads, not a scan. */
export interface PrekeyIndexEntry {
  key: string;
}

export interface PrekeySigner {
  nodeId: string;
  signing: { publicKey: Uint8Array; secretKey: Uint8Array };
}

export function prekeySigningBytes(p: Omit<SignedPrekey, 'signature' | 'v'>): Uint8Array {
  return encodeFields([
    PREKEY_CONTEXT,
    str(p.kind),
    str(p.aid),
    str(p.node_id),
    str(p.id),
    fromBase64url(p.ml_kem_768_public_key, 'ml_kem_768_public_key'),
    str(p.created),
    str(p.expires),
  ]);
}

/**
 * Checks a prekey handed out for `aid` by node `dsaPublicKey` (pinned, or vouched for by the
 * Provider): signature, binding to the agent id, kind, validity at `now`. Returns its ML-KEM
 * public key; throws PREKEY_INVALID (or PREKEY_EXPIRED).
 */
export function verifyPrekey(
  input: unknown,
  dsaPublicKey: Uint8Array,
  expected: { aid: string; nodeId: string },
  now = Date.now(),
): { prekey: SignedPrekey; publicKey: Uint8Array } {
  const p = input as SignedPrekey;
  const bad = (why: string) => new QkmError('PREKEY_INVALID', `the prekey ${why}`);
  if (typeof p !== 'object' || p === null || p.v !== PREKEY_VERSION) throw bad('has no known version');
  for (const f of [
    'kind',
    'id',
    'aid',
    'node_id',
    'ml_kem_768_public_key',
    'created',
    'expires',
    'signature',
  ] as const)
    if (typeof p[f] !== 'string') throw bad(`lacks ${f}`);
  if (p.kind !== 'otk' && p.kind !== 'last-resort') throw bad('has an unknown kind');
  if (p.aid !== canonicalAid(expected.aid)) throw bad('is bound to another agent');
  if (p.node_id !== expected.nodeId) throw bad('is signed for another node');
  let publicKey: Uint8Array;
  let ok = false;
  try {
    publicKey = fromBase64url(p.ml_kem_768_public_key, 'ml_kem_768_public_key');
    const { signature, v: _v, ...unsigned } = p;
    // Tagged form (src/pqc/domain.ts); prekeys signed before it, under the FIPS 204 context, still verify.
    ok = verifyTagged(
      PREKEY_CONTEXT,
      fromBase64url(signature, 'signature'),
      prekeySigningBytes(unsigned),
      dsaPublicKey,
      ['tagged', 'legacy-context'],
    );
  } catch {
    throw bad('is malformed');
  }
  if (!ok) throw bad('signature does not verify');
  if (publicKey.length !== 1184) throw bad('key is not an ML-KEM-768 public key');
  if (now >= Date.parse(p.expires))
    throw new QkmError('PREKEY_EXPIRED', `the prekey expired at ${p.expires}`);
  return { prekey: p, publicKey };
}

export interface PrekeyStoreOptions {
  signer: PrekeySigner;
  keys: KeyStore;
  records: RecordStore<PrekeyRecord>;
  /** Its own namespace (the appliance: `prekey-ids`): prekey id → record key. */
  index: RecordStore<PrekeyIndexEntry>;
  /** Fresh key-generation seed material (the appliance: quantum entropy). */
  seed: (bytes: number) => Promise<{ data: Uint8Array; provenance: Provenance }>;
  now?: () => number;
}

/** The node's own prekeys: publish batches, the last-resort prekey, decapsulate-and-destroy. */
export class PrekeyStore {
  private readonly now: () => number;

  constructor(private readonly o: PrekeyStoreOptions) {
    this.now = o.now ?? Date.now;
  }

  /** `count` fresh OTKs for `aid`, signed; their seeds stored encrypted. */
  async publishBatch(
    aid: string,
    count: number,
    ttlSeconds = DEFAULT_OTK_TTL_SECONDS,
  ): Promise<SignedPrekey[]> {
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_BATCH)
      throw new QkmError('INVALID_PARAMETER', `a batch holds 1 to ${MAX_BATCH} one-time prekeys`);
    const canonical = canonicalAid(aid);
    const out: SignedPrekey[] = [];
    for (let i = 0; i < count; i++) out.push(await this.create(canonical, 'otk', ttlSeconds));
    return out;
  }

  /** The agent's current last-resort prekey, made on first use or when the old one expired. */
  async lastResort(aid: string, ttlSeconds = DEFAULT_LAST_RESORT_TTL_SECONDS): Promise<SignedPrekey> {
    const canonical = canonicalAid(aid);
    const current = await this.o.records.get(lastResortKey(canonical));
    if (current && this.now() < Date.parse(current.prekey.expires)) return current.prekey;
    return this.create(canonical, 'last-resort', ttlSeconds);
  }

  /** The OTKs of `aid` not used yet. */
  async unused(aid: string): Promise<SignedPrekey[]> {
    return (await this.o.records.entries(`otk ${canonicalAid(aid)} `))
      .filter(([, r]) => !r.used)
      .map(([, r]) => r.prekey);
  }

  /**
   * Decapsulates `ciphertext` with prekey `id`. For an OTK, its seed is taken (destroyed) first,
   * atomically: a second use rejects PREKEY_CONSUMED. Unknown id: PREKEY_NOT_FOUND; past its
   * expiry: PREKEY_EXPIRED. A ciphertext that does not decapsulate still consumes the OTK
   * (ML-KEM decapsulation never fails outright; the confirmation step catches a wrong key).
   */
  async decapsulate(
    id: string,
    ciphertext: Uint8Array,
  ): Promise<{ sharedSecret: Uint8Array; lastResort: boolean; aid: string }> {
    const rec = await this.find(id);
    if (!rec) throw new QkmError('PREKEY_NOT_FOUND', 'no such prekey on this node');
    if (rec.used) throw new QkmError('PREKEY_CONSUMED', 'the one-time prekey was already used');
    const lastResort = rec.prekey.kind === 'last-resort';
    let seed: Uint8Array;
    try {
      seed = lastResort
        ? (await this.o.keys.read(rec.seedId, new Date(this.now()))).material
        : (await this.o.keys.take(rec.seedId, new Date(this.now()))).material;
    } catch (err) {
      if (isQkmError(err, 'KEY_ALREADY_TAKEN') || isQkmError(err, 'KEY_NOT_FOUND'))
        throw new QkmError('PREKEY_CONSUMED', 'the one-time prekey was already used');
      if (isQkmError(err, 'KEY_EXPIRED'))
        throw new QkmError('PREKEY_EXPIRED', `the prekey expired at ${rec.prekey.expires}`);
      throw err;
    }
    if (!lastResort)
      await this.o.records.put(otkKey(rec.prekey.aid, id), {
        ...rec,
        used: new Date(this.now()).toISOString(),
      });
    const { secretKey } = mlKem768KeygenFromSeed(seed);
    try {
      if (ciphertext.length !== 1088)
        throw new QkmError('HANDSHAKE_MALFORMED', 'the prekey ciphertext is not an ML-KEM-768 ciphertext');
      return { sharedSecret: mlKem768Decapsulate(ciphertext, secretKey), lastResort, aid: rec.prekey.aid };
    } finally {
      seed.fill(0);
      secretKey.fill(0);
    }
  }

  /** What the node knows about prekey `id` (public facts only), without touching its secret. */
  async state(
    id: string,
  ): Promise<{ aid: string; kind: PrekeyKind; expires: string; used: boolean } | undefined> {
    const rec = await this.find(id);
    if (!rec) return undefined;
    return { aid: rec.prekey.aid, kind: rec.prekey.kind, expires: rec.prekey.expires, used: !!rec.used };
  }

  private async find(id: string): Promise<PrekeyRecord | undefined> {
    if (typeof id !== 'string' || id.length === 0 || id.length > 128) return undefined;
    const entry = await this.o.index.get(id);
    const rec = entry ? await this.o.records.get(entry.key) : undefined;
    return rec?.prekey.id === id ? rec : undefined;
  }

  private async create(aid: string, kind: PrekeyKind, ttlSeconds: number): Promise<SignedPrekey> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 60 || ttlSeconds > 90 * 86_400)
      throw new QkmError('INVALID_PARAMETER', 'a prekey lives 60 s to 90 days');
    const seed = await this.o.seed(SEED_BYTES);
    const id = randomUUID();
    const seedId = randomUUID();
    const created = new Date(this.now());
    const expires = new Date(created.getTime() + ttlSeconds * 1000);
    const { publicKey, secretKey } = mlKem768KeygenFromSeed(seed.data);
    secretKey.fill(0);
    const unsigned = {
      kind,
      id,
      aid,
      node_id: this.o.signer.nodeId,
      ml_kem_768_public_key: toBase64url(publicKey),
      created: created.toISOString(),
      expires: expires.toISOString(),
    };
    const signature = signTagged(
      PREKEY_CONTEXT,
      prekeySigningBytes(unsigned),
      this.o.signer.signing.secretKey,
    );
    const prekey: SignedPrekey = { v: PREKEY_VERSION, ...unsigned, signature: toBase64url(signature) };
    try {
      await this.o.keys.put({
        meta: {
          id: seedId,
          size: SEED_BYTES,
          purpose: 'session',
          created: unsigned.created,
          expires: unsigned.expires,
          label: `${kind === 'otk' ? 'one-time' : 'last-resort'} prekey ${id} of ${aid}`,
          provenance: seed.provenance,
        },
        material: seed.data,
      });
    } finally {
      seed.data.fill(0);
    }
    const key = kind === 'otk' ? otkKey(aid, id) : lastResortKey(aid);
    // Index first: an index entry whose record was never written resolves to "not found".
    await this.o.index.put(id, { key });
    await this.o.records.put(key, { prekey, seedId });
    return prekey;
  }
}

function otkKey(aid: string, id: string): string {
  return `otk ${aid} ${id}`;
}

function lastResortKey(aid: string): string {
  return `last-resort ${aid}`;
}
