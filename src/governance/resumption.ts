import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  randomUUID,
  timingSafeEqual,
} from 'node:crypto';
import { QkmError } from '../core/errors.js';
import type { Provenance } from '../core/provenance.js';
import type { KeyStore } from '../keys/interface.js';
import { encodeFields, str, toBase64url, u64 } from '../session/encoding.js';
import type { RecordStore } from '../store/interface.js';
import { KeyedMutex } from '../store/keyed-mutex.js';

/**
 * Access-control tokens and resumed sessions (SAGA §IV-C, post-quantum; issue #12 layer 3).
 *
 * After a full handshake with session key K and transcript hash T, both ends derive
 *   RS = HKDF-SHA256(ikm = K, salt = T, info = "qkm/v2 resumption secret", 32)
 *   TK = HKDF-SHA256(ikm = K, salt = T, info = "qkm/v2 access token key", 32)
 * The responder issues a token: a record it keeps durably (id, initiator agent key hash, issue
 * and expiry time, max uses, uses so far) and RS in its KeyStore (encrypted under the KEK,
 * expiring with the token); the initiator gets the token body AES-256-GCM-sealed under TK
 * (so only the party holding K can read it), AAD = the token id.
 *
 * To resume, the initiator sends {token id, its agent key hash, a fresh 32-byte nonce N_i,
 * proof = HMAC-SHA256(RS, encode("qkm/v2 resume proof", id, hash, N_i))}. The responder checks,
 * in this order, consuming nothing on any refusal: the token exists (TOKEN_UNKNOWN), it was
 * issued to this agent (TOKEN_STOLEN), it has not expired (TOKEN_EXPIRED), uses remain
 * (TOKEN_EXHAUSTED), the proof verifies (TOKEN_INVALID), N_i is new (TOKEN_REPLAYED). Then it
 * counts the use durably, draws a fresh quantum salt S and both ends compute
 *   K' = HKDF-SHA256(ikm = RS, salt = S, info = SHA-256(transcript'), 32)
 *   transcript' = encode("qkm/v2 resume", id, hash, responder, N_i, S, use)
 * with a responder confirmation tag HMAC-SHA256(K', "qkm/v2 resume confirm"). No ML-KEM or
 * ML-DSA runs: the security of K' rests on RS (from the full hybrid handshake) and S.
 *
 * Forward secrecy note: RS is kept by the responder until the token expires or its last use,
 * then destroyed; until then, whoever holds the responder's store AND KEK and a recorded
 * resumption can recompute that K' (like TLS 1.3 tickets). Full sessions are not affected.
 */

export const RESUME_NONCE_BYTES = 32;
export const RESUME_SALT_BYTES = 32;
const KEY_BYTES = 32;
const RS_INFO = 'qkm/v2 resumption secret';
const TK_INFO = 'qkm/v2 access token key';
const PROOF_LABEL = 'qkm/v2 resume proof';
const TRANSCRIPT_LABEL = 'qkm/v2 resume';
const CONFIRM_LABEL = 'qkm/v2 resume confirm';

export interface TokenBody {
  /** Token id (UUID v4): also its nonce; the AEAD's associated data. */
  id: string;
  /** SHA-256 hex of the initiator agent's key (see `agentKeyHash`). */
  initiator: string;
  /** The responder agent (governed id or agent name) the token opens sessions with. */
  responder: string;
  issued: string;
  expires: string;
  maxUses: number;
}

export interface TokenRecord extends TokenBody {
  used: number;
  /** Governed id of the initiating agent (for the responder's policy at resumption). */
  initiatorAid?: string;
  /** Posture of the full session the token comes from (resumed sessions inherit its legs). */
  posture?: string;
  /** KeyStore id of RS. */
  secretId: string;
}

/**
 * The key an initiator agent is known by: SHA-256 over its node's identity public key and the
 * agent's name on that node, length-prefixed. A token is bound to it.
 */
export function agentKeyHash(nodePublicKey: Uint8Array, agent: string): string {
  return createHash('sha256')
    .update(encodeFields([str('qkm/v2 agent key'), nodePublicKey, str(agent)]))
    .digest('hex');
}

function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string | Uint8Array): Uint8Array {
  return new Uint8Array(
    hkdfSync('sha256', ikm, salt, typeof info === 'string' ? str(info) : info, KEY_BYTES),
  );
}

export function deriveResumptionSecret(sessionKey: Uint8Array, transcriptHash: Uint8Array): Uint8Array {
  return hkdf(sessionKey, transcriptHash, RS_INFO);
}

export function deriveTokenKey(sessionKey: Uint8Array, transcriptHash: Uint8Array): Uint8Array {
  return hkdf(sessionKey, transcriptHash, TK_INFO);
}

/**
 * AES-256-GCM(TK, iv, JSON(body), aad = id) as base64url(iv ‖ ct ‖ tag). JSON.stringify of the
 * body with its fields in TokenBody order. `iv` is random unless given (known-answer vectors).
 */
export function sealTokenBody(
  tokenKey: Uint8Array,
  body: TokenBody,
  iv: Uint8Array = randomBytes(12),
): string {
  const c = createCipheriv('aes-256-gcm', tokenKey, iv);
  c.setAAD(str(body.id));
  const ct = Buffer.concat([c.update(JSON.stringify(body), 'utf8'), c.final()]);
  return toBase64url(Buffer.concat([iv, ct, c.getAuthTag()]));
}

/** Opens a sealed token body; TOKEN_INVALID if it does not authenticate under `tokenKey`. */
export function openTokenBody(tokenKey: Uint8Array, id: string, sealed: string): TokenBody {
  try {
    const raw = Buffer.from(sealed, 'base64url');
    if (raw.length < 12 + 16 + 2) throw new Error('short');
    const d = createDecipheriv('aes-256-gcm', tokenKey, raw.subarray(0, 12));
    d.setAAD(str(id));
    d.setAuthTag(raw.subarray(raw.length - 16));
    const body = JSON.parse(
      Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]).toString('utf8'),
    ) as TokenBody;
    if (body.id !== id) throw new Error('id');
    return body;
  } catch {
    throw new QkmError('TOKEN_INVALID', 'the access token does not open under this session');
  }
}

export function resumeProof(rs: Uint8Array, id: string, initiator: string, nonce: Uint8Array): Uint8Array {
  return new Uint8Array(
    createHmac('sha256', rs)
      .update(encodeFields([str(PROOF_LABEL), str(id), str(initiator), nonce]))
      .digest(),
  );
}

export interface ResumeTranscript {
  id: string;
  initiator: string;
  responder: string;
  nonce: Uint8Array;
  salt: Uint8Array;
  /** 1-based index of this use. */
  use: number;
}

export function resumeTranscript(t: ResumeTranscript): Uint8Array {
  return encodeFields([
    str(TRANSCRIPT_LABEL),
    str(t.id),
    str(t.initiator),
    str(t.responder),
    t.nonce,
    t.salt,
    u64(t.use),
  ]);
}

/** K' and the responder's confirmation tag. */
export function resumedKey(rs: Uint8Array, t: ResumeTranscript): { key: Uint8Array; confirm: Uint8Array } {
  const info = new Uint8Array(createHash('sha256').update(resumeTranscript(t)).digest());
  const key = hkdf(rs, t.salt, info);
  const confirm = new Uint8Array(createHmac('sha256', key).update(str(CONFIRM_LABEL)).digest());
  return { key, confirm };
}

export interface TokenIssuerOptions {
  tokens: RecordStore<TokenRecord>;
  /** Resume nonces seen, per token (replay cache; entries die with their token). */
  nonces: RecordStore<{ at: string }>;
  keys: KeyStore;
  /** Fresh salt for each resumption; the appliance draws it from quantum entropy. */
  salt: (bytes: number) => Promise<{ data: Uint8Array; provenance: Provenance }>;
  /**
   * true when no other process writes `tokens` and `nonces` (LevelDB's directory lock, the
   * memory backend). The replay read under the token's lock is then exact, and a resumption's
   * nonce is written with a plain put, in the same sync round as the use count. false (a store
   * shared by several appliances, etcd): the request is claimed by `putIfAbsent` and the use
   * by compare-and-swap (`update`), two more rounds that keep replays and the quota exact
   * across processes. Default false.
   */
  exclusive?: boolean;
  now?: () => number;
}

export interface IssueRequest {
  sessionKey: Uint8Array;
  transcriptHash: Uint8Array;
  initiator: string;
  responder: string;
  maxUses: number;
  ttlSeconds: number;
  /** Provenance of the session the token comes from (kept with RS). */
  provenance: Provenance;
  initiatorAid?: string;
  posture?: string;
}

export interface ResumeRequest {
  id: string;
  initiator: string;
  nonce: Uint8Array;
  proof: Uint8Array;
}

export interface ResumeResult {
  key: Uint8Array;
  confirm: Uint8Array;
  salt: Uint8Array;
  use: number;
  remaining: number;
  provenance: Provenance;
}

export const MAX_TOKEN_USES = 1_000_000;
export const MAX_TOKEN_TTL_SECONDS = 90 * 86_400;

/** The responder's side: issues tokens, enforces their expiry and quota durably, resumes. */
export class TokenIssuer {
  private readonly now: () => number;
  private readonly lock = new KeyedMutex();

  constructor(private readonly o: TokenIssuerOptions) {
    this.now = o.now ?? Date.now;
  }

  async issue(r: IssueRequest): Promise<{ id: string; sealed: string; body: TokenBody }> {
    if (!Number.isSafeInteger(r.maxUses) || r.maxUses < 1 || r.maxUses > MAX_TOKEN_USES)
      throw new QkmError('INVALID_PARAMETER', `max uses must be an integer from 1 to ${MAX_TOKEN_USES}`);
    if (!Number.isSafeInteger(r.ttlSeconds) || r.ttlSeconds < 1 || r.ttlSeconds > MAX_TOKEN_TTL_SECONDS)
      throw new QkmError('INVALID_PARAMETER', `token lifetime must be 1 to ${MAX_TOKEN_TTL_SECONDS} seconds`);
    const id = randomUUID();
    const issued = new Date(this.now());
    const expires = new Date(issued.getTime() + r.ttlSeconds * 1000);
    const body: TokenBody = {
      id,
      initiator: r.initiator,
      responder: r.responder,
      issued: issued.toISOString(),
      expires: expires.toISOString(),
      maxUses: r.maxUses,
    };
    const rs = deriveResumptionSecret(r.sessionKey, r.transcriptHash);
    const tk = deriveTokenKey(r.sessionKey, r.transcriptHash);
    const secretId = randomUUID();
    try {
      await this.o.keys.put({
        meta: {
          id: secretId,
          size: KEY_BYTES,
          purpose: 'session',
          created: body.issued,
          expires: body.expires,
          label: `resumption secret of access token ${id}`,
          provenance: r.provenance,
        },
        material: rs,
      });
      await this.o.tokens.put(id, {
        ...body,
        used: 0,
        secretId,
        ...(r.initiatorAid ? { initiatorAid: r.initiatorAid } : {}),
        ...(r.posture ? { posture: r.posture } : {}),
      });
      return { id, sealed: sealTokenBody(tk, body), body };
    } finally {
      rs.fill(0);
      tk.fill(0);
    }
  }

  /**
   * Deletes tokens expired more than `graceMs` ago (default one day), with their resume nonces
   * and resumption secret; returns how many. Within the grace period an expired token still
   * answers TOKEN_EXPIRED; after it, TOKEN_UNKNOWN. Bounded per call (`limit` tokens examined).
   */
  async prune(graceMs = 86_400_000, limit = 10_000): Promise<number> {
    const now = this.now();
    let n = 0;
    for (const [id, rec] of await this.o.tokens.entries(undefined, { limit })) {
      if (now < Date.parse(rec.expires) + graceMs) continue;
      await this.lock.run(id, async () => {
        for (const [k] of await this.o.nonces.entries(`${id} `)) await this.o.nonces.del(k);
        await this.o.keys.delete(rec.secretId).catch(() => undefined);
        await this.o.tokens.del(id);
      });
      n++;
    }
    return n;
  }

  async record(id: string): Promise<TokenRecord | undefined> {
    return this.o.tokens.get(id);
  }

  /**
   * One resumed session, or a refusal with a distinct code (see the module comment); a refusal
   * consumes nothing. The use is durable before the key is returned.
   *
   * Latency: after the token record, every read the checks need (the caller's `precheck`, RS,
   * the nonce's replay entry) is issued at once, and the results are then judged in the
   * documented order, so a refusal's code is the same as if they had run one by one; reads
   * consume nothing, and the quantum salt is drawn only once every check has passed.
   */
  async resume(
    r: ResumeRequest,
    /**
     * Durable writes of the caller's own (the session record, the audit record), made together
     * with the use count so they share its sync; the key is returned only once all are durable.
     */
    alongside?: (result: ResumeResult) => Promise<unknown>,
    /**
     * The caller's checks of the token record (which agent it opens, the contact policy), judged
     * before the token's own; it throws to refuse. Runs under the token's lock, on the same read.
     */
    precheck?: (rec: TokenRecord) => Promise<void>,
  ): Promise<ResumeResult> {
    if (r.nonce.length !== RESUME_NONCE_BYTES)
      throw new QkmError('INVALID_PARAMETER', `the resume nonce must be ${RESUME_NONCE_BYTES} bytes`);
    return this.lock.run(r.id, async () => {
      const rec = await this.o.tokens.get(r.id);
      if (!rec) throw new QkmError('TOKEN_UNKNOWN', 'no such access token on this node');
      const nonceKey = `${rec.id} ${toBase64url(r.nonce)}`;
      const [pre, secret, seen] = await Promise.allSettled([
        precheck ? precheck(rec) : Promise.resolve(),
        this.readSecret(rec),
        this.o.nonces.get(nonceKey),
      ]);
      const rs = secret.status === 'fulfilled' ? secret.value.material : undefined;
      try {
        if (pre.status === 'rejected') throw pre.reason;
        if (rec.initiator !== r.initiator)
          throw new QkmError('TOKEN_STOLEN', 'the access token was issued to another agent');
        if (this.now() >= Date.parse(rec.expires))
          throw new QkmError('TOKEN_EXPIRED', `the access token expired at ${rec.expires}`);
        if (rec.used >= rec.maxUses)
          throw new QkmError('TOKEN_EXHAUSTED', `the access token's ${rec.maxUses} uses are spent`);
        if (!rs) throw (secret as PromiseRejectedResult).reason;
        const expected = resumeProof(rs, rec.id, rec.initiator, r.nonce);
        if (r.proof.length !== expected.length || !timingSafeEqual(expected, r.proof))
          throw new QkmError('TOKEN_INVALID', 'the resume proof does not verify');
        // A replay is caught by a read (no write, so a flood of replays costs no syncs); the
        // nonce's entry is then written together with the use count and the caller's records,
        // one sync for all. Under this token's lock the read is exact for this process; on a
        // store other processes share, putIfAbsent still decides between them (see `exclusive`).
        if (seen.status === 'rejected') throw seen.reason;
        if (seen.value) throw new QkmError('TOKEN_REPLAYED', 'this resume request was already answered');
        const seenAt = { at: new Date(this.now()).toISOString() };
        // On a store other processes share (etcd: several appliances behind one address), this
        // process's lock orders nothing across them: the request is claimed by put-if-absent
        // (one answer per request) and the use by compare-and-swap (the quota holds across
        // processes), both before the key exists. On an exclusive store the lock makes the
        // reads above exact, and the writes share one sync with the caller's records below.
        const use = this.o.exclusive ? rec.used + 1 : await this.claimUse(rec, nonceKey, seenAt);
        const salt = await this.o.salt(RESUME_SALT_BYTES);
        const { key, confirm } = resumedKey(rs, {
          id: rec.id,
          initiator: rec.initiator,
          responder: rec.responder,
          nonce: r.nonce,
          salt: salt.data,
          use,
        });
        const result: ResumeResult = {
          key,
          confirm,
          salt: salt.data,
          use,
          remaining: rec.maxUses - use,
          provenance: salt.provenance,
        };
        try {
          await Promise.all([
            ...(this.o.exclusive
              ? [this.o.nonces.put(nonceKey, seenAt), this.o.tokens.put(rec.id, { ...rec, used: use })]
              : []),
            alongside?.(result),
          ]);
        } catch (err) {
          key.fill(0);
          throw err;
        }
        // The last use destroys RS: nothing can be derived from the token any more.
        if (use >= rec.maxUses) await this.o.keys.delete(rec.secretId).catch(() => undefined);
        return result;
      } finally {
        rs?.fill(0);
      }
    });
  }

  /**
   * Shared store: claims the request (put-if-absent of its nonce), then one use of the token by
   * compare-and-swap, refusing past the quota. A refused claim gives the nonce back, so a
   * refusal still consumes nothing. Returns the use number claimed.
   */
  private async claimUse(rec: TokenRecord, nonceKey: string, seenAt: { at: string }): Promise<number> {
    if (!(await this.o.nonces.putIfAbsent(nonceKey, seenAt)))
      throw new QkmError('TOKEN_REPLAYED', 'this resume request was already answered');
    try {
      const claimed = await this.o.tokens.update(rec.id, (cur) => {
        if (!cur) throw new QkmError('TOKEN_UNKNOWN', 'no such access token on this node');
        if (cur.used >= cur.maxUses)
          throw new QkmError('TOKEN_EXHAUSTED', `the access token's ${cur.maxUses} uses are spent`);
        return { ...cur, used: cur.used + 1 };
      });
      return claimed.used;
    } catch (err) {
      await this.o.nonces.del(nonceKey).catch(() => undefined);
      throw err;
    }
  }

  private async readSecret(rec: TokenRecord) {
    try {
      return await this.o.keys.read(rec.secretId, new Date(this.now()));
    } catch (err) {
      if ((err as QkmError).code === 'KEY_EXPIRED')
        throw new QkmError('TOKEN_EXPIRED', `the access token expired at ${rec.expires}`);
      throw err;
    }
  }
}

/** The initiator's side of a token: what it keeps after the full handshake. */
export function acceptIssuedToken(
  sessionKey: Uint8Array,
  transcriptHash: Uint8Array,
  id: string,
  sealed: string,
): { body: TokenBody; rs: Uint8Array } {
  const tk = deriveTokenKey(sessionKey, transcriptHash);
  try {
    return { body: openTokenBody(tk, id, sealed), rs: deriveResumptionSecret(sessionKey, transcriptHash) };
  } finally {
    tk.fill(0);
  }
}
