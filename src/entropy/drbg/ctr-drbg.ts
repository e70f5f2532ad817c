/**
 * CTR_DRBG after NIST SP 800-90A Rev.1 §10.2.1, with AES-128/192/256 or 3-key TDEA, with or
 * without the derivation function (Block_Cipher_df, §10.3.2), on `node:crypto`.
 *
 * The counter field is the whole block (ctr_len = blocklen), the choice the CAVP vectors use.
 * For AES the generate loop is one `aes-*-ctr` stream over zero bytes starting at V+1: OpenSSL's
 * CTR mode increments the full 128-bit block as a big-endian integer with carry, which is the
 * same sequence V+1, V+2, … that §10.2.1.5 step 4 encrypts; afterwards V is advanced by the
 * number of blocks produced (including a partial last block), exactly as the spec loop would.
 */
import { createCipheriv } from 'node:crypto';
import { checkBytes, DrbgBase, type DrbgLimits, MAX_INPUT_BYTES, resolveReseedInterval } from './base.js';
import { addNumberInto, concatBytes, u32be, xorInto } from './bytes.js';

export type CtrCipher = 'aes-128' | 'aes-192' | 'aes-256' | 'tdea';

export interface CtrDrbgOptions {
  cipher: CtrCipher;
  /** Use the derivation function (Block_Cipher_df). Without it, entropy input is exactly seedlen. */
  df: boolean;
  /** Smaller reseed interval than the mechanism maximum (2^48 AES, 2^32 TDEA). */
  reseedInterval?: number;
}

interface CipherParams {
  readonly label: string;
  /** keylen in bytes as SP 800-90A counts it (TDEA: 168 bits = 21 bytes). */
  readonly keyLen: number;
  readonly blockLen: number;
  readonly seedLen: number;
  readonly strength: number;
  readonly ecb: string;
  readonly cbc: string;
  /** OpenSSL CTR cipher for the fast generate path; TDEA has none. */
  readonly ctr?: string;
  readonly maxRequestBytes: number;
  readonly maxReseedInterval: number;
}

// SP 800-90A Table 3.
const PARAMS: Record<CtrCipher, CipherParams> = {
  'aes-128': {
    label: 'AES-128',
    keyLen: 16,
    blockLen: 16,
    seedLen: 32,
    strength: 128,
    ecb: 'aes-128-ecb',
    cbc: 'aes-128-cbc',
    ctr: 'aes-128-ctr',
    maxRequestBytes: 2 ** 19 / 8,
    maxReseedInterval: 2 ** 48,
  },
  'aes-192': {
    label: 'AES-192',
    keyLen: 24,
    blockLen: 16,
    seedLen: 40,
    strength: 192,
    ecb: 'aes-192-ecb',
    cbc: 'aes-192-cbc',
    ctr: 'aes-192-ctr',
    maxRequestBytes: 2 ** 19 / 8,
    maxReseedInterval: 2 ** 48,
  },
  'aes-256': {
    label: 'AES-256',
    keyLen: 32,
    blockLen: 16,
    seedLen: 48,
    strength: 256,
    ecb: 'aes-256-ecb',
    cbc: 'aes-256-cbc',
    ctr: 'aes-256-ctr',
    maxRequestBytes: 2 ** 19 / 8,
    maxReseedInterval: 2 ** 48,
  },
  tdea: {
    label: '3KeyTDEA',
    keyLen: 21,
    blockLen: 8,
    seedLen: 29,
    strength: 112,
    ecb: 'des-ede3-ecb',
    cbc: 'des-ede3-cbc',
    maxRequestBytes: 2 ** 13 / 8,
    maxReseedInterval: 2 ** 32,
  },
};

/** Shared all-zero plaintext for the CTR keystream; only ever read. */
const ZEROS = Buffer.alloc(2 ** 19 / 8 + 64);

/**
 * TDEA keys are 168 bits in SP 800-90A; the cipher takes 192 bits, one parity bit after every
 * 7 key bits (SP 800-67). OpenSSL ignores the parity bits, so they are left 0.
 */
function tdeaKey(key168: Uint8Array): Buffer {
  const out = Buffer.alloc(24);
  for (let i = 0; i < 24; i++) {
    let v = 0;
    for (let b = 0; b < 7; b++) {
      const bit = i * 7 + b;
      v = (v << 1) | (((key168[bit >>> 3] as number) >>> (7 - (bit & 7))) & 1);
    }
    out[i] = v << 1;
  }
  return out;
}

/**
 * E(K, V+1) ‖ E(K, V+2) ‖ … ‖ E(K, V+blocks) for a 16-byte V, computed as one OpenSSL CTR
 * stream over zero bytes with IV = V+1 (full 128-bit big-endian counter, wrapping mod 2^128).
 * Does not modify `v`. Exported so the equivalence with the ECB definition can be tested.
 */
export function aesCounterKeystream(
  ctrCipher: string,
  key: Uint8Array,
  v: Uint8Array,
  blocks: number,
): Buffer {
  if (blocks * 16 > ZEROS.length) throw new RangeError('keystream request too large');
  const iv = Buffer.from(v);
  addNumberInto(iv, 1);
  const c = createCipheriv(ctrCipher, key, iv);
  const out = c.update(ZEROS.subarray(0, blocks * 16));
  c.final();
  iv.fill(0);
  return out;
}

export class CtrDrbg extends DrbgBase {
  readonly name: string;
  readonly #p: CipherParams;
  readonly #df: boolean;
  #key: Buffer;
  #v: Buffer;

  constructor(options: CtrDrbgOptions) {
    const p = PARAMS[options?.cipher];
    if (p === undefined) throw new RangeError(`CTR_DRBG: unknown cipher ${String(options?.cipher)}`);
    const df = options.df === true;
    const name = `CTR_DRBG(${p.label}, ${df ? 'df' : 'no df'})`;
    const limits: DrbgLimits = {
      securityStrength: p.strength,
      // §10.2.1 Table 3: with df, security_strength..2^35 bits; without df, exactly seedlen.
      minEntropyBytes: df ? p.strength / 8 : p.seedLen,
      maxEntropyBytes: df ? MAX_INPUT_BYTES : p.seedLen,
      maxInputBytes: df ? MAX_INPUT_BYTES : p.seedLen,
      maxRequestBytes: p.maxRequestBytes,
      maxReseedInterval: p.maxReseedInterval,
    };
    super(limits, resolveReseedInterval(name, options.reseedInterval, p.maxReseedInterval));
    this.name = name;
    this.#p = p;
    this.#df = df;
    this.#key = Buffer.alloc(p.keyLen);
    this.#v = Buffer.alloc(p.blockLen);
  }

  /** Without df the nonce is not part of the algorithm (§10.2.1.3.1); refuse one rather than drop it. */
  protected override checkNonce(nonce: unknown): Uint8Array {
    return checkBytes(this.name, 'nonce', nonce, 0, this.#df ? MAX_INPUT_BYTES : 0);
  }

  protected _instantiate(entropy: Uint8Array, nonce: Uint8Array, personalization: Uint8Array): void {
    const seed = this.#df
      ? this.#blockCipherDf(concatBytes(entropy, nonce, personalization), this.#p.seedLen)
      : this.#xorPadded(entropy, personalization);
    this.#key = Buffer.alloc(this.#p.keyLen);
    this.#v = Buffer.alloc(this.#p.blockLen);
    this.#update(seed);
    seed.fill(0);
  }

  protected _reseed(entropy: Uint8Array, additionalInput: Uint8Array): void {
    const seed = this.#df
      ? this.#blockCipherDf(concatBytes(entropy, additionalInput), this.#p.seedLen)
      : this.#xorPadded(entropy, additionalInput);
    this.#update(seed);
    seed.fill(0);
  }

  protected _generate(nBytes: number, additionalInput: Uint8Array): Uint8Array {
    const p = this.#p;
    let addin: Buffer | undefined;
    if (additionalInput.length > 0) {
      // §10.2.1.5.1/2 step 2: condition the additional input, then Update with it.
      addin = this.#df ? this.#blockCipherDf(additionalInput, p.seedLen) : this.#padded(additionalInput);
      this.#update(addin);
    }
    const blocks = Math.ceil(nBytes / p.blockLen);
    if (p.ctr !== undefined) return this.#generateAes(p.ctr, nBytes, blocks, addin);
    // Step 4 then step 6: Update(additional_input, Key, V) for backtracking resistance
    // (additional_input = 0^seedlen when none was given).
    const stream = blocks === 0 ? Buffer.alloc(0) : this.#encrypt(this.#key, this.#counterBlocks(blocks));
    this.#update(addin ?? Buffer.alloc(p.seedLen));
    addin?.fill(0);
    if (stream.length === nBytes) return stream;
    const out = Buffer.from(stream.subarray(0, nBytes));
    stream.fill(0);
    return out;
  }

  /**
   * AES fast path. Step 4 encrypts V+1 … V+blocks under Key; the closing CTR_DRBG_Update
   * (step 6) encrypts the next ⌈seedlen/blocklen⌉ counters under the same Key. Both are one
   * contiguous counter run, so one CTR stream yields the output and the Update's temp.
   */
  #generateAes(ctr: string, nBytes: number, blocks: number, addin: Buffer | undefined): Uint8Array {
    const p = this.#p;
    const updateBlocks = Math.ceil(p.seedLen / p.blockLen);
    const stream = aesCounterKeystream(ctr, this.#key, this.#v, blocks + updateBlocks);
    const off = blocks * p.blockLen;
    const temp = stream.subarray(off, off + p.seedLen);
    if (addin !== undefined) {
      xorInto(temp, addin);
      addin.fill(0);
    }
    this.#key.fill(0);
    this.#v.fill(0);
    this.#key = Buffer.from(temp.subarray(0, p.keyLen));
    this.#v = Buffer.from(temp.subarray(p.keyLen, p.seedLen));
    // Wipe the Update material and the unused tail of a partial last block; the caller only
    // gets the first nBytes.
    stream.fill(0, nBytes);
    return stream.subarray(0, nBytes);
  }

  protected _zeroise(): void {
    // Best effort: this overwrites the Key and V buffers the object holds. JavaScript cannot
    // promise more: OpenSSL cipher contexts made from the key are freed by the garbage
    // collector without an explicit wipe, and V8 may have moved or copied buffers.
    this.#key.fill(0);
    this.#v.fill(0);
  }

  /** V+1 … V+n as n consecutive blocks; advances V by n. */
  #counterBlocks(n: number): Buffer {
    const bl = this.#p.blockLen;
    const buf = Buffer.alloc(n * bl);
    for (let i = 0; i < n; i++) {
      addNumberInto(this.#v, 1);
      this.#v.copy(buf, i * bl);
    }
    return buf;
  }

  /** CTR_DRBG_Update (§10.2.1.2); `provided` is exactly seedlen bytes. */
  #update(provided: Uint8Array): void {
    const p = this.#p;
    const counters = this.#counterBlocks(Math.ceil(p.seedLen / p.blockLen));
    const temp = this.#encrypt(this.#key, counters);
    counters.fill(0);
    xorInto(temp, provided);
    this.#key.fill(0);
    this.#v.fill(0);
    this.#key = Buffer.from(temp.subarray(0, p.keyLen));
    this.#v = Buffer.from(temp.subarray(p.keyLen, p.keyLen + p.blockLen));
    temp.fill(0);
  }

  /** Block_Encrypt over whole blocks (ECB = each block independently). */
  #encrypt(key: Uint8Array, data: Uint8Array): Buffer {
    const k = this.#cipherKey(key);
    const c = createCipheriv(this.#p.ecb, k, null).setAutoPadding(false);
    const out = Buffer.concat([c.update(data), c.final()]);
    if (k !== key) k.fill(0);
    return out;
  }

  /** CBC encryption with a given IV, no padding. */
  #cbc(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
    const k = this.#cipherKey(key);
    const c = createCipheriv(this.#p.cbc, k, iv).setAutoPadding(false);
    const out = Buffer.concat([c.update(data), c.final()]);
    if (k !== key) k.fill(0);
    return out;
  }

  #cipherKey(key: Uint8Array): Uint8Array {
    return this.#p.ecb === 'des-ede3-ecb' ? tdeaKey(key) : key;
  }

  /**
   * Block_Cipher_df (§10.3.2). BCC (§10.3.3) is a CBC-MAC with a zero IV, i.e. the last block of
   * a CBC encryption; the output loop X = E(K, X) is the CBC encryption of zero blocks under IV X.
   */
  #blockCipherDf(input: Uint8Array, nBytes: number): Buffer {
    const { keyLen, blockLen } = this.#p;
    const head = concatBytes(u32be(input.length), u32be(nBytes), input, Buffer.from([0x80]));
    const padLen = (blockLen - (head.length % blockLen)) % blockLen;
    // Room for the per-iteration IV block in front of S.
    const ivS = Buffer.alloc(blockLen + head.length + padLen);
    head.copy(ivS, blockLen);
    head.fill(0);
    const k = Buffer.alloc(keyLen);
    for (let i = 0; i < keyLen; i++) k[i] = i;
    const zeroIv = Buffer.alloc(blockLen);
    const tempLen = keyLen + blockLen;
    const temp = Buffer.alloc(Math.ceil(tempLen / blockLen) * blockLen);
    for (let i = 0, off = 0; off < tempLen; i++, off += blockLen) {
      ivS.writeUInt32BE(i, 0);
      const chain = this.#cbc(k, zeroIv, ivS);
      chain.copy(temp, off, chain.length - blockLen);
      chain.fill(0);
    }
    ivS.fill(0);
    const k2 = temp.subarray(0, keyLen);
    const x = temp.subarray(keyLen, keyLen + blockLen);
    const out = this.#cbc(k2, x, ZEROS.subarray(0, Math.ceil(nBytes / blockLen) * blockLen));
    temp.fill(0);
    if (out.length === nBytes) return out;
    const trimmed = Buffer.from(out.subarray(0, nBytes));
    out.fill(0);
    return trimmed;
  }

  /** `data` padded with zeros to seedlen (no-df additional input / personalization). */
  #padded(data: Uint8Array): Buffer {
    const out = Buffer.alloc(this.#p.seedLen);
    out.set(data);
    return out;
  }

  /** entropy ⊕ pad(other) for the no-df instantiate/reseed. */
  #xorPadded(entropy: Uint8Array, other: Uint8Array): Buffer {
    const out = Buffer.from(entropy);
    xorInto(out, other);
    return out;
  }
}
