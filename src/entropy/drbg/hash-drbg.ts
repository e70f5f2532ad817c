/** Hash_DRBG after NIST SP 800-90A Rev.1 §10.1.1, with Hash_df (§10.3.1), on `node:crypto`. */
import { createHash } from 'node:crypto';
import { DrbgBase, resolveReseedInterval } from './base.js';
import { addInto, addNumberInto } from './bytes.js';
import {
  type DrbgHash,
  HASH_DRBG_MAX_RESEED_INTERVAL,
  type HashParams,
  hashFamilyLimits,
  hashParams,
} from './hashes.js';

export interface HashDrbgOptions {
  hash: DrbgHash;
  /** Smaller reseed interval than the maximum 2^48. */
  reseedInterval?: number;
}

const B00 = Buffer.from([0x00]);
const B01 = Buffer.from([0x01]);
const B02 = Buffer.from([0x02]);
const B03 = Buffer.from([0x03]);

export class HashDrbg extends DrbgBase {
  readonly name: string;
  readonly #h: HashParams;
  #v: Buffer;
  #c: Buffer;

  constructor(options: HashDrbgOptions) {
    const name = `Hash_DRBG(${String(options?.hash)})`;
    const h = hashParams('Hash_DRBG', options?.hash);
    super(
      hashFamilyLimits(h),
      resolveReseedInterval(name, options.reseedInterval, HASH_DRBG_MAX_RESEED_INTERVAL),
    );
    this.name = name;
    this.#h = h;
    this.#v = Buffer.alloc(h.seedLen);
    this.#c = Buffer.alloc(h.seedLen);
  }

  protected _instantiate(entropy: Uint8Array, nonce: Uint8Array, personalization: Uint8Array): void {
    // §10.1.1.2: V = Hash_df(seed_material, seedlen); C = Hash_df(0x00 || V, seedlen).
    this.#setV(this.#hashDf([entropy, nonce, personalization]));
  }

  protected _reseed(entropy: Uint8Array, additionalInput: Uint8Array): void {
    // §10.1.1.3: seed_material = 0x01 || V || entropy_input || additional_input.
    this.#setV(this.#hashDf([B01, this.#v, entropy, additionalInput]));
  }

  protected _generate(nBytes: number, additionalInput: Uint8Array): Uint8Array {
    const v = this.#v;
    if (additionalInput.length > 0) {
      // §10.1.1.4 step 2: w = Hash(0x02 || V || additional_input); V = (V + w) mod 2^seedlen.
      const w = this.#hash([B02, v, additionalInput]);
      addInto(v, w);
      w.fill(0);
    }
    const out = this.#hashgen(nBytes);
    // Steps 4-5: H = Hash(0x03 || V); V = (V + H + C + reseed_counter) mod 2^seedlen.
    const hh = this.#hash([B03, v]);
    addInto(v, hh);
    addInto(v, this.#c);
    addNumberInto(v, this.reseedCounter);
    hh.fill(0);
    return out;
  }

  protected _zeroise(): void {
    // Best effort: overwrites V and C; JavaScript cannot wipe copies V8 or OpenSSL made.
    this.#v.fill(0);
    this.#c.fill(0);
  }

  #setV(seed: Buffer): void {
    this.#v.fill(0);
    this.#c.fill(0);
    this.#v = seed;
    this.#c = this.#hashDf([B00, seed]);
  }

  /** Hashgen (§10.1.1.4): Hash(data), Hash(data + 1), … with data starting at V. */
  #hashgen(nBytes: number): Buffer {
    const out = Buffer.alloc(nBytes);
    const data = Buffer.from(this.#v);
    for (let off = 0; off < nBytes; off += this.#h.outLen) {
      const w = this.#hash([data]);
      w.copy(out, off, 0, Math.min(w.length, nBytes - off));
      w.fill(0);
      addNumberInto(data, 1);
    }
    data.fill(0);
    return out;
  }

  /** Hash_df (§10.3.1) to seedlen bytes: Hash(counter || no_of_bits_to_return || input), counter = 1, 2, … */
  #hashDf(input: Uint8Array[]): Buffer {
    const { seedLen, outLen } = this.#h;
    const out = Buffer.alloc(Math.ceil(seedLen / outLen) * outLen);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(seedLen * 8, 1);
    for (let i = 0, off = 0; off < seedLen; i++, off += outLen) {
      prefix[0] = i + 1;
      this.#hash([prefix, ...input]).copy(out, off);
    }
    const seed = Buffer.from(out.subarray(0, seedLen));
    out.fill(0);
    return seed;
  }

  #hash(parts: Uint8Array[]): Buffer {
    const h = createHash(this.#h.node);
    for (const p of parts) h.update(p);
    return h.digest();
  }
}
