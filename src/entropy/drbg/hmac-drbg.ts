/** HMAC_DRBG after NIST SP 800-90A Rev.1 §10.1.2, on `node:crypto` HMAC. */
import { createHmac } from 'node:crypto';
import { DrbgBase, resolveReseedInterval } from './base.js';
import {
  type DrbgHash,
  HASH_DRBG_MAX_RESEED_INTERVAL,
  type HashParams,
  hashFamilyLimits,
  hashParams,
} from './hashes.js';

export interface HmacDrbgOptions {
  hash: DrbgHash;
  /** Smaller reseed interval than the maximum 2^48. */
  reseedInterval?: number;
}

const BYTE_00 = Buffer.from([0x00]);
const BYTE_01 = Buffer.from([0x01]);

export class HmacDrbg extends DrbgBase {
  readonly name: string;
  readonly #h: HashParams;
  #key: Buffer;
  #v: Buffer;

  constructor(options: HmacDrbgOptions) {
    const name = `HMAC_DRBG(${String(options?.hash)})`;
    const h = hashParams('HMAC_DRBG', options?.hash);
    super(
      hashFamilyLimits(h),
      resolveReseedInterval(name, options.reseedInterval, HASH_DRBG_MAX_RESEED_INTERVAL),
    );
    this.name = name;
    this.#h = h;
    this.#key = Buffer.alloc(h.outLen);
    this.#v = Buffer.alloc(h.outLen);
  }

  protected _instantiate(entropy: Uint8Array, nonce: Uint8Array, personalization: Uint8Array): void {
    // §10.1.2.3: Key = 0x00…00, V = 0x01…01, then Update(seed_material).
    this.#key = Buffer.alloc(this.#h.outLen, 0x00);
    this.#v = Buffer.alloc(this.#h.outLen, 0x01);
    this.#update([entropy, nonce, personalization]);
  }

  protected _reseed(entropy: Uint8Array, additionalInput: Uint8Array): void {
    this.#update([entropy, additionalInput]);
  }

  protected _generate(nBytes: number, additionalInput: Uint8Array): Uint8Array {
    const provided = [additionalInput];
    if (additionalInput.length > 0) this.#update(provided);
    const out = Buffer.alloc(nBytes);
    for (let off = 0; off < nBytes; off += this.#h.outLen) {
      this.#v = this.#mac(this.#key, [this.#v]);
      this.#v.copy(out, off, 0, Math.min(this.#h.outLen, nBytes - off));
    }
    this.#update(provided);
    return out;
  }

  protected _zeroise(): void {
    // Best effort: overwrites Key and V. JavaScript cannot wipe the HMAC contexts OpenSSL made
    // from the key (freed by the garbage collector) or copies V8 may have made.
    this.#key.fill(0);
    this.#v.fill(0);
  }

  /** HMAC_DRBG_Update (§10.1.2.2); `provided` is the concatenation of its parts. */
  #update(provided: Uint8Array[]): void {
    const empty = provided.every((p) => p.length === 0);
    this.#step(BYTE_00, provided);
    if (empty) return;
    this.#step(BYTE_01, provided);
  }

  /** K = HMAC(K, V || tag || provided); V = HMAC(K, V). */
  #step(tag: Uint8Array, provided: Uint8Array[]): void {
    const k = this.#mac(this.#key, [this.#v, tag, ...provided]);
    this.#key.fill(0);
    this.#key = k;
    const v = this.#mac(this.#key, [this.#v]);
    this.#v.fill(0);
    this.#v = v;
  }

  #mac(key: Uint8Array, parts: Uint8Array[]): Buffer {
    const m = createHmac(this.#h.node, key);
    for (const p of parts) m.update(p);
    return m.digest();
  }
}
