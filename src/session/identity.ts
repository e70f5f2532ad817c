import { randomUUID } from 'node:crypto';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { type Static, Type } from '@sinclair/typebox';
import { QkmError } from '../core/errors.js';
import type { Provenance } from '../core/provenance.js';
import type { EntropyProvider } from '../entropy/types.js';
import { signTagged, verifyTagged } from '../pqc/domain.js';
import {
  ML_DSA_65_LENGTHS,
  ML_KEM_768_LENGTHS,
  mlDsa65KeygenFromSeed,
  mlKem768Encapsulate,
  mlKem768KeygenFromSeed,
} from '../pqc/index.js';
import type { RecordStore, StorageBackend } from '../store/interface.js';
import { EncodingError, encodeFields, fromBase64url, str, toBase64url, toHex, u8 } from './encoding.js';

/**
 * Node identity: an ML-DSA-65 signing key pair and an ML-KEM-768 key pair, both generated
 * from seeds drawn from the EntropyProvider (FIPS 204 §6.1 ξ = 32 bytes; FIPS 203 §7.1
 * d ‖ z = 64 bytes). The 96 seed bytes are the only secret stored (in the KeyStore, purpose
 * `identity`, encrypted at rest); the key pairs are re-derived from them on load.
 */

/**
 * 2: the self-signature is in the domain-tagged form (src/pqc/domain.ts: empty FIPS 204 context
 * over u8(len tag) ‖ tag ‖ bytes). Version 1 bundles (tag as the FIPS 204 context) still verify.
 */
export const BUNDLE_VERSION = 2;
/** Bundle versions `verifyBundle` reads: 1 (legacy context-string signature), 2. */
const BUNDLE_VERSIONS = new Set([1, 2]);
/**
 * ML-DSA-65 domain tags, one per signed structure, so a signature made for one purpose can never
 * verify as another. Signed as u8(len) ‖ tag ‖ message with the empty FIPS 204 context
 * (src/pqc/domain.ts); before handshake v3 / bundle v2 they were the FIPS 204 context strings.
 */
export const DSA_CONTEXT = {
  bundle: str('qkm/v1 identity-bundle'),
  handshake: str('qkm/v1 handshake'),
  audit: str('qkm/v1 audit-seal'),
  message: str('qkm/v1 message'),
} as const;

const DSA_SEED_BYTES = 32;
const KEM_SEED_BYTES = 64;
export const IDENTITY_SEED_BYTES = DSA_SEED_BYTES + KEM_SEED_BYTES;
/** Node ids are the first 16 bytes (128 bits) of SHA3-256(ML-DSA-65 public key), lowercase hex. */
const NODE_ID_BYTES = 16;

const REGION_RE = /^[A-Z][A-Z0-9_-]{0,31}$/;
// ETSI 014 SAE/KME ids are free-form strings; we only bound them and refuse control characters.
const ETSI_ID_RE = /^[\x20-\x7e]{1,256}$/;

export interface KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

/** A node's own identity, secrets included. Lives in memory only; never serialise it. */
export interface NodeIdentity {
  nodeId: string;
  region: string;
  saeId?: string;
  kmeId?: string;
  /** ISO-8601. */
  created: string;
  signing: KeyPair;
  kem: KeyPair;
  /** KeyStore id of the seed material. */
  keyId: string;
  /** Where the seeds came from. */
  provenance: Provenance;
  /** The self-signed public bundle (signed once, at creation). */
  bundle: IdentityBundle;
}

/**
 * The public, self-signed identity document a node hands to its peers (JSON). The one
 * definition: the API and the Provider serve it with this schema, the SDK types it from it.
 */
export const IdentityBundleSchema = Type.Object(
  {
    version: Type.Union([Type.Literal(1), Type.Literal(2)], {
      description:
        '2: domain-tagged signature; 1: made before that change (FIPS 204 context), still accepted',
    }),
    node_id: Type.String(),
    region: Type.String(),
    ml_dsa_65_public_key: Type.String({ description: 'base64url, 1952 bytes decoded' }),
    ml_kem_768_public_key: Type.String({ description: 'base64url, 1184 bytes decoded' }),
    sae_id: Type.Optional(Type.String()),
    kme_id: Type.Optional(Type.String()),
    created: Type.String(),
    signature: Type.String({
      description:
        'base64url ML-DSA-65 signature, tag "qkm/v1 identity-bundle", over the canonical encoding (README, "Session protocol")',
    }),
  },
  { description: 'Self-signed public identity bundle (ML-DSA-65 over the canonical encoding)' },
);
export type IdentityBundle = Static<typeof IdentityBundleSchema>;

/** A bundle that passed `verifyBundle`, with decoded keys. */
export interface VerifiedBundle {
  bundle: IdentityBundle;
  nodeId: string;
  region: string;
  saeId?: string;
  kmeId?: string;
  dsaPublicKey: Uint8Array;
  kemPublicKey: Uint8Array;
}

export function nodeIdOf(dsaPublicKey: Uint8Array): string {
  return toHex(sha3_256(dsaPublicKey).subarray(0, NODE_ID_BYTES));
}

/** Deterministic key pairs from the 96 seed bytes (32 for ML-DSA-65 ‖ 64 for ML-KEM-768). */
export function deriveIdentityKeys(seed: Uint8Array): { signing: KeyPair; kem: KeyPair } {
  if (seed.length !== IDENTITY_SEED_BYTES)
    throw new RangeError(`identity seed must be ${IDENTITY_SEED_BYTES} bytes`);
  // From the seed (quantum entropy): noble when the backend cannot take a seed (src/pqc/index.ts).
  const signing = mlDsa65KeygenFromSeed(seed.slice(0, DSA_SEED_BYTES));
  const kem = mlKem768KeygenFromSeed(seed.slice(DSA_SEED_BYTES));
  return { signing, kem };
}

// Optional strings are encoded as one field: 0x00 when absent, 0x01 ‖ UTF-8 when present,
// so "absent" and "empty" cannot be confused.
function optStr(v: string | undefined): Uint8Array {
  if (v === undefined) return u8(0);
  const s = str(v);
  const out = new Uint8Array(1 + s.length);
  out[0] = 1;
  out.set(s, 1);
  return out;
}

/** The bytes the bundle signature covers (README, "Session protocol (qkm/v1)" §2). */
export function bundleSigningBytes(b: Omit<IdentityBundle, 'signature'>): Uint8Array {
  return encodeFields([
    str('qkm/v1 identity-bundle'),
    u8(b.version),
    str(b.node_id),
    str(b.region),
    fromBase64url(b.ml_dsa_65_public_key),
    fromBase64url(b.ml_kem_768_public_key),
    optStr(b.sae_id),
    optStr(b.kme_id),
    str(b.created),
  ]);
}

export interface IdentityParams {
  region: string;
  saeId?: string;
  kmeId?: string;
  created: string;
}

/** Builds and self-signs the bundle. `deterministic` only for known-answer vectors. */
export function makeBundle(
  keys: { signing: KeyPair; kem: KeyPair },
  params: IdentityParams,
  opts: { deterministic?: boolean } = {},
): IdentityBundle {
  validateParams(params);
  const unsigned: Omit<IdentityBundle, 'signature'> = {
    version: BUNDLE_VERSION,
    node_id: nodeIdOf(keys.signing.publicKey),
    region: params.region,
    ml_dsa_65_public_key: toBase64url(keys.signing.publicKey),
    ml_kem_768_public_key: toBase64url(keys.kem.publicKey),
    ...(params.saeId === undefined ? {} : { sae_id: params.saeId }),
    ...(params.kmeId === undefined ? {} : { kme_id: params.kmeId }),
    created: params.created,
  };
  const sig = signTagged(DSA_CONTEXT.bundle, bundleSigningBytes(unsigned), keys.signing.secretKey, {
    deterministic: opts.deterministic === true,
  });
  return { ...unsigned, signature: toBase64url(sig) };
}

function validateParams(p: IdentityParams): void {
  if (typeof p.region !== 'string' || !REGION_RE.test(p.region)) {
    throw new QkmError('INVALID_PARAMETER', 'region must be an upper-case code such as US, EU or MULTI');
  }
  for (const [name, v] of [
    ['sae_id', p.saeId],
    ['kme_id', p.kmeId],
  ] as const) {
    if (v !== undefined && (typeof v !== 'string' || !ETSI_ID_RE.test(v))) {
      throw new QkmError('INVALID_PARAMETER', `${name} must be 1-256 printable ASCII characters`);
    }
  }
  if (Number.isNaN(Date.parse(p.created)))
    throw new QkmError('INVALID_PARAMETER', 'created must be ISO-8601');
}

const BUNDLE_KEYS = new Set([
  'version',
  'node_id',
  'region',
  'ml_dsa_65_public_key',
  'ml_kem_768_public_key',
  'sae_id',
  'kme_id',
  'created',
  'signature',
]);

/**
 * Strictly validates a bundle (parsed JSON or a JSON string) and its self-signature.
 * Throws QkmError BUNDLE_INVALID with the first reason found.
 */
export function verifyBundle(input: unknown): VerifiedBundle {
  const bad = (why: string): never => {
    throw new QkmError('BUNDLE_INVALID', `identity bundle invalid: ${why}`);
  };
  let obj: unknown = input;
  if (typeof input === 'string') {
    try {
      obj = JSON.parse(input);
    } catch {
      bad('not JSON');
    }
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return bad('not an object');
  const b = obj as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!BUNDLE_KEYS.has(k)) bad(`unknown field ${k}`);
  if (typeof b.version !== 'number' || !BUNDLE_VERSIONS.has(b.version)) bad('unsupported version');
  for (const k of [
    'node_id',
    'region',
    'ml_dsa_65_public_key',
    'ml_kem_768_public_key',
    'created',
    'signature',
  ]) {
    if (typeof b[k] !== 'string') bad(`${k} missing`);
  }
  for (const k of ['sae_id', 'kme_id'])
    if (b[k] !== undefined && typeof b[k] !== 'string') bad(`${k} not a string`);
  const bundle = b as unknown as IdentityBundle;
  try {
    validateParams({
      region: bundle.region,
      saeId: bundle.sae_id,
      kmeId: bundle.kme_id,
      created: bundle.created,
    });
  } catch (e) {
    bad((e as Error).message);
  }
  let dsaPk: Uint8Array;
  let kemPk: Uint8Array;
  let sig: Uint8Array;
  try {
    dsaPk = fromBase64url(bundle.ml_dsa_65_public_key, 'ml_dsa_65_public_key');
    kemPk = fromBase64url(bundle.ml_kem_768_public_key, 'ml_kem_768_public_key');
    sig = fromBase64url(bundle.signature, 'signature');
  } catch (e) {
    return bad(e instanceof EncodingError ? e.message : 'bad encoding');
  }
  if (dsaPk.length !== ML_DSA_65_LENGTHS.publicKey) bad('ml_dsa_65_public_key has the wrong length');
  if (kemPk.length !== ML_KEM_768_LENGTHS.publicKey) bad('ml_kem_768_public_key has the wrong length');
  if (sig.length !== ML_DSA_65_LENGTHS.signature) bad('signature has the wrong length');
  if (nodeIdOf(dsaPk) !== bundle.node_id) bad('node_id does not match the ML-DSA public key');
  try {
    // FIPS 203 §7.2 encapsulation-key modulus check: a malformed key would only fail later.
    mlKem768Encapsulate(kemPk);
  } catch {
    bad('ml_kem_768_public_key is not a valid encapsulation key');
  }
  // The version (signed) says the form: no bundle is checked in both.
  const form = bundle.version === 1 ? 'legacy-context' : 'tagged';
  if (!verifyTagged(DSA_CONTEXT.bundle, sig, bundleSigningBytes(bundle), dsaPk, [form])) {
    bad('self-signature does not verify');
  }
  return {
    bundle: { ...bundle },
    nodeId: bundle.node_id,
    region: bundle.region,
    ...(bundle.sae_id === undefined ? {} : { saeId: bundle.sae_id }),
    ...(bundle.kme_id === undefined ? {} : { kmeId: bundle.kme_id }),
    dsaPublicKey: dsaPk,
    kemPublicKey: kemPk,
  };
}

/** Non-secret record kept next to the seed material (namespace `identity`). */
export interface IdentityMetaRecord {
  key_id: string;
  node_id: string;
  created: string;
  provenance: Provenance;
  bundle: IdentityBundle;
}

export interface RetiredIdentityRecord {
  node_id: string;
  retired_at: string;
  bundle: IdentityBundle;
}

export interface IdentityManagerOptions {
  store: StorageBackend;
  entropy: EntropyProvider;
  /** Epoch ms; defaults to Date.now. */
  clock?: () => number;
}

export interface InitIdentityOptions {
  region: string;
  saeId?: string;
  kmeId?: string;
  /** Refuse to create the identity from anything but quantum entropy (default false: OS fallback, flagged). */
  requireQuantum?: boolean;
}

/**
 * Creates, persists and loads this node's identity. One current identity per store; `rotate`
 * replaces it and keeps the old public bundle (`retired()`), so old signatures stay checkable.
 */
export class IdentityManager {
  private readonly meta: RecordStore<IdentityMetaRecord | RetiredIdentityRecord>;
  private readonly clock: () => number;
  private loaded: NodeIdentity | undefined;

  constructor(private readonly opts: IdentityManagerOptions) {
    this.meta = opts.store.records('identity');
    this.clock = opts.clock ?? Date.now;
  }

  /** Creates the identity. Rejects KEY_EXISTS if one exists (use `rotate`). */
  async init(params: InitIdentityOptions): Promise<NodeIdentity> {
    if ((await this.meta.get('current')) !== undefined) {
      throw new QkmError('KEY_EXISTS', 'this node already has an identity; rotate it instead');
    }
    return this.create(params);
  }

  /** The current identity, loaded from the store (cached), or undefined before `init`. */
  async load(): Promise<NodeIdentity | undefined> {
    if (this.loaded) return this.loaded;
    const rec = (await this.meta.get('current')) as IdentityMetaRecord | undefined;
    if (!rec) return undefined;
    const { material } = await this.opts.store.keys.read(rec.key_id);
    const keys = deriveIdentityKeys(material);
    material.fill(0);
    if (nodeIdOf(keys.signing.publicKey) !== rec.node_id) {
      throw new QkmError('INTERNAL', 'stored identity seed does not match its metadata');
    }
    this.loaded = toIdentity(rec, keys);
    return this.loaded;
  }

  /** Like `load` but throws NOT_FOUND when there is no identity yet. */
  async require(): Promise<NodeIdentity> {
    const id = await this.load();
    if (!id) throw new QkmError('NOT_FOUND', 'this node has no identity yet (run qkm init)');
    return id;
  }

  /** New key pairs; the old bundle is kept under `retired:<node_id>` and its seed destroyed. */
  async rotate(params?: Partial<InitIdentityOptions>): Promise<NodeIdentity> {
    const old = await this.require();
    const next = await this.create({
      region: params?.region ?? old.region,
      saeId: params?.saeId ?? old.saeId,
      kmeId: params?.kmeId ?? old.kmeId,
      requireQuantum: params?.requireQuantum ?? false,
    });
    await this.meta.put(`retired:${old.nodeId}`, {
      node_id: old.nodeId,
      retired_at: new Date(this.clock()).toISOString(),
      bundle: old.bundle,
    });
    await this.opts.store.keys.delete(old.keyId);
    return next;
  }

  async retired(): Promise<IdentityBundle[]> {
    const rows = await this.meta.entries('retired:');
    return rows.map(([, r]) => (r as RetiredIdentityRecord).bundle);
  }

  private async create(params: InitIdentityOptions): Promise<NodeIdentity> {
    const created = new Date(this.clock()).toISOString();
    validateParams({ region: params.region, saeId: params.saeId, kmeId: params.kmeId, created });
    const { bytes, provenance } = await this.opts.entropy.getEntropy(IDENTITY_SEED_BYTES, {
      require: params.requireQuantum ? 'quantum' : 'any',
      predictionResistance: true,
    });
    const keys = deriveIdentityKeys(bytes);
    const keyId = randomUUID();
    await this.opts.store.keys.put({
      meta: { id: keyId, size: bytes.length, purpose: 'identity', created, expires: null, provenance },
      material: bytes,
    });
    bytes.fill(0);
    const bundle = makeBundle(keys, {
      region: params.region,
      saeId: params.saeId,
      kmeId: params.kmeId,
      created,
    });
    const rec: IdentityMetaRecord = { key_id: keyId, node_id: bundle.node_id, created, provenance, bundle };
    await this.meta.put('current', rec);
    this.loaded = toIdentity(rec, keys);
    return this.loaded;
  }
}

function toIdentity(rec: IdentityMetaRecord, keys: { signing: KeyPair; kem: KeyPair }): NodeIdentity {
  return {
    nodeId: rec.node_id,
    region: rec.bundle.region,
    ...(rec.bundle.sae_id === undefined ? {} : { saeId: rec.bundle.sae_id }),
    ...(rec.bundle.kme_id === undefined ? {} : { kmeId: rec.bundle.kme_id }),
    created: rec.created,
    signing: keys.signing,
    kem: keys.kem,
    keyId: rec.key_id,
    provenance: rec.provenance,
    bundle: rec.bundle,
  };
}

/** Builds an in-memory identity straight from a seed (known-answer vectors, tests). */
export function identityFromSeed(
  seed: Uint8Array,
  params: IdentityParams,
  provenance: Provenance,
  opts: { deterministic?: boolean } = {},
): NodeIdentity {
  const keys = deriveIdentityKeys(seed);
  const bundle = makeBundle(keys, params, opts);
  return toIdentity(
    { key_id: 'in-memory', node_id: bundle.node_id, created: params.created, provenance, bundle },
    keys,
  );
}
