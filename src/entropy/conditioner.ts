/**
 * Vetted conditioning with HMAC-SHA-256 (NIST SP 800-90B §3.1.5.1.1) and the entropy
 * accounting of §3.1.5.1.2. Raw, health-tested samples go in; a 256-bit block comes out with
 * the number of min-entropy bits it may be credited with.
 */
import { createHmac } from 'node:crypto';

/** Output length n_out and narrowest internal width n_w of HMAC-SHA-256, in bits. */
export const HMAC_SHA256_OUT_BITS = 256;
export const HMAC_SHA256_WIDTH_BITS = 256;

/** §3.1.5.1.2: a vetted function's output has full entropy when h_in ≥ n_out + 64. */
export const FULL_ENTROPY_MARGIN_BITS = 64;

const LOG2E = Math.LOG2E;

/** log2(2^a + 2^b) without overflow. */
function log2AddExp(a: number, b: number): number {
  if (a === Number.NEGATIVE_INFINITY) return b;
  if (b === Number.NEGATIVE_INFINITY) return a;
  const m = Math.max(a, b);
  return m + Math.log1p(2 ** -Math.abs(a - b)) * LOG2E;
}

/**
 * Output_Entropy(n_in, n_out, n_w, h_in) of SP 800-90B §3.1.5.1.2, in bits:
 *   P_high = 2^−h_in, P_low = (1 − P_high)/(2^n_in − 1), n = min(n_out, n_w),
 *   ψ = 2^(n_in−n)·P_low + P_high, U = 2^(n_in−n) + √(2n·2^(n_in−n)·ln 2), ω = U·P_low,
 *   h_out = −log2(max(ψ, ω)).
 * Evaluated in log2 space so n_in of thousands of bits does not overflow a double.
 * Requires 0 ≤ h_in ≤ n_in.
 */
export function outputEntropy(nIn: number, nOut: number, nW: number, hIn: number): number {
  if (!(nIn > 0 && nOut > 0 && nW > 0)) throw new RangeError('n_in, n_out and n_w must be positive');
  if (!(hIn >= 0 && hIn <= nIn)) throw new RangeError('h_in must be in [0, n_in]');
  const n = Math.min(nOut, nW);
  if (hIn === 0) return 0;
  const log2PHigh = -hIn;
  // log2(1 − 2^−h_in) and log2(2^n_in − 1) = n_in + log2(1 − 2^−n_in), both via log1p.
  const log2OneMinusPHigh = Math.log1p(-(2 ** -hIn)) * LOG2E;
  const log2Denominator = nIn + Math.log1p(-(2 ** -nIn)) * LOG2E;
  const log2PLow = log2OneMinusPHigh - log2Denominator;
  const d = nIn - n;
  const log2Psi = log2AddExp(d + log2PLow, log2PHigh);
  // U = 2^d·(1 + √(2n·ln2·2^−d))
  const log2U = d + Math.log1p(Math.sqrt(2 * n * Math.LN2 * 2 ** -d)) * LOG2E;
  const log2Omega = log2U + log2PLow;
  const hOut = -Math.max(log2Psi, log2Omega);
  // Rounding can leave −0 or a hair above the mathematical maxima; clamp to [0, min(n, h_in)].
  return Math.max(0, Math.min(hOut, n, hIn));
}

export interface EntropyAccount {
  /** Bits of min-entropy credited to the output. */
  creditedBits: number;
  /** True when h_in ≥ n_out + 64, so the output is credited as full entropy. */
  fullEntropy: boolean;
}

/**
 * The accounting rule: full entropy (h_out = min(h_in, n_out) = n_out) only when
 * h_in ≥ n_out + 64; otherwise Output_Entropy.
 */
export function accountConditionedEntropy(
  nIn: number,
  hIn: number,
  nOut: number = HMAC_SHA256_OUT_BITS,
  nW: number = HMAC_SHA256_WIDTH_BITS,
): EntropyAccount {
  if (hIn >= nOut + FULL_ENTROPY_MARGIN_BITS) {
    return { creditedBits: Math.min(hIn, nOut), fullEntropy: true };
  }
  return { creditedBits: outputEntropy(nIn, nOut, nW, hIn), fullEntropy: false };
}

export interface ConditionedBlock extends EntropyAccount {
  /** 32 bytes of HMAC-SHA-256 output. */
  output: Uint8Array;
}

/** Several blocks conditioned in one call (see `HmacConditioner.conditionBlocks`). */
export interface ConditionedBlocks extends EntropyAccount {
  /** The blocks' outputs concatenated: 32 bytes per block, in input order. */
  output: Uint8Array;
  /** Number of blocks; `creditedBits` is the sum over all of them. */
  blocks: number;
}

export interface HmacConditionerOptions {
  /**
   * HMAC key. SP 800-90B §3.1.5.1.1 lets the key be fixed; it is not secret and adds no entropy.
   * Default: the ASCII string `qkm/v1 HMAC-SHA-256 conditioning`, a domain separator.
   */
  key?: Uint8Array;
}

const DEFAULT_KEY = new TextEncoder().encode('qkm/v1 HMAC-SHA-256 conditioning');

/** HMAC-SHA-256 vetted conditioning component. */
export class HmacConditioner {
  readonly name = 'HMAC-SHA-256';
  readonly outputBits = HMAC_SHA256_OUT_BITS;
  private readonly key: Uint8Array;

  constructor(options: HmacConditionerOptions = {}) {
    this.key = options.key ?? DEFAULT_KEY;
  }

  /**
   * Raw input bytes needed to credit one output block as full entropy, given the claimed
   * min-entropy per input byte: ⌈(n_out + 64) / h_per_byte⌉.
   */
  bytesForFullEntropy(entropyPerByte: number): number {
    if (!(entropyPerByte > 0 && entropyPerByte <= 8))
      throw new RangeError('entropy per byte must be in (0, 8]');
    return Math.ceil((this.outputBits + FULL_ENTROPY_MARGIN_BITS) / entropyPerByte - 1e-9);
  }

  /**
   * Input bytes per block when blocks are whole multiples of `unitBytes` (normally one APT
   * window, so each call hashes a whole tested window): the smallest multiple of `unitBytes`
   * that reaches `bytesForFullEntropy(entropyPerByte)`. Larger n_in per HMAC call amortises its
   * fixed cost (a 43-byte call spends ~90 % of its time in setup); the credit stays 256 bits
   * per block, so fewer bits are credited per input byte — never more than §3.1.5.1.2 allows.
   */
  blockBytesFor(entropyPerByte: number, unitBytes: number): number {
    if (!(Number.isInteger(unitBytes) && unitBytes > 0))
      throw new RangeError('unitBytes must be a positive integer');
    return Math.ceil(this.bytesForFullEntropy(entropyPerByte) / unitBytes) * unitBytes;
  }

  /**
   * Conditions `input` as consecutive blocks of `blockBytes` bytes, each block one
   * HMAC-SHA-256 call whose h_in is `blockBytes × entropyPerByte` (accounted once: every block
   * has the same n_in and h_in). `input.length` must be a positive multiple of `blockBytes`, so
   * no partial block is ever credited.
   */
  conditionBlocks(input: Uint8Array, blockBytes: number, entropyPerByte: number): ConditionedBlocks {
    if (!(Number.isInteger(blockBytes) && blockBytes > 0))
      throw new RangeError('blockBytes must be a positive integer');
    if (input.length === 0 || input.length % blockBytes !== 0) {
      throw new RangeError('conditioning input must be a positive multiple of blockBytes');
    }
    if (!(entropyPerByte >= 0 && entropyPerByte <= 8))
      throw new RangeError('entropy per byte must be in [0, 8]');
    const nIn = blockBytes * 8;
    const account = accountConditionedEntropy(nIn, Math.min(blockBytes * entropyPerByte, nIn));
    const blocks = input.length / blockBytes;
    const outBytes = this.outputBits / 8;
    const output = new Uint8Array(blocks * outBytes);
    for (let b = 0; b < blocks; b++) {
      const off = b * blockBytes;
      const digest = createHmac('sha256', this.key)
        .update(input.subarray(off, off + blockBytes))
        .digest();
      output.set(digest, b * outBytes);
      digest.fill(0);
    }
    return { output, blocks, creditedBits: account.creditedBits * blocks, fullEntropy: account.fullEntropy };
  }

  /**
   * Conditions `input` (raw samples, health-tested) whose min-entropy is `inputEntropyBits`
   * (h_in, from the source's claim). Returns the block and its credit.
   */
  condition(input: Uint8Array, inputEntropyBits: number): ConditionedBlock {
    if (input.length === 0) throw new RangeError('conditioning input must not be empty');
    const nIn = input.length * 8;
    if (!(inputEntropyBits >= 0)) throw new RangeError('input entropy must be ≥ 0');
    const hIn = Math.min(inputEntropyBits, nIn);
    const output = new Uint8Array(createHmac('sha256', this.key).update(input).digest());
    return { output, ...accountConditionedEntropy(nIn, hIn) };
  }
}
