import type { HmacConditioner } from '../conditioner.js';
import type { SourceMonitor } from '../source-monitor.js';

/**
 * The pipeline from sources to DRBG seed input: health-tested raw bytes from each source,
 * conditioned to full-entropy blocks, concatenated. Every buffer it lets go of is wiped first,
 * used or discarded: raw bytes and conditioned blocks are seed material (JavaScript cannot promise
 * that no other copy survives; this removes the ones this module holds).
 */

export interface SeedInput {
  entropy: Uint8Array;
  credited: number;
  sources: SourceMonitor[];
  /** Each source's `generation` when its bytes were taken, to detect a failure since. */
  generations: number[];
}

/** The first source of `g` that left `healthy` since its bytes were taken, if any. */
export function failedSince(g: SeedInput): SourceMonitor | undefined {
  return g.sources.find((m, i) => m.state !== 'healthy' || m.generation !== g.generations[i]);
}

/**
 * Full-entropy input from every one of `healthy`: per source ⌈strength/256⌉ conditioned
 * HMAC-SHA-256 blocks (SP 800-90B §3.1.5.1.2), each from the fewest whole APT windows of tested
 * raw bytes that give h_in ≥ 256 + 64. Throws if no source delivered. Sources that failed while
 * being read are left out (their bytes discarded). `origin` only names the DRBG in the error.
 */
export async function gatherSeedInput(
  healthy: SourceMonitor[],
  securityStrength: number,
  conditioner: HmacConditioner,
  origin: string,
): Promise<SeedInput> {
  const blocksPerSource = Math.ceil(securityStrength / conditioner.outputBits);
  const results = await Promise.allSettled(
    healthy.map(async (m) => {
      const gen = m.generation;
      const perByte = m.entropyPerByte;
      // Whole APT windows per block: the unit the monitor tests, and cheap per byte to hash.
      const blockBytes = conditioner.blockBytesFor(perByte, m.windowBytes);
      const raw = await m.take(blockBytes * blocksPerSource);
      if (m.generation !== gen || m.state !== 'healthy') {
        raw.fill(0);
        throw new Error(`${m.id} failed while read`);
      }
      const conditioned = conditioner.conditionBlocks(raw, blockBytes, perByte);
      raw.fill(0);
      if (!conditioned.fullEntropy) {
        conditioned.output.fill(0);
        throw new Error(`${m.id}: conditioned blocks not full entropy`);
      }
      return {
        monitor: m,
        blocks: [conditioned.output],
        credited: conditioned.creditedBits,
        generation: gen,
      };
    }),
  );
  const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  // Re-check after the await: a source that failed meanwhile must not contribute.
  const good = ok.filter((r) => r.monitor.state === 'healthy' && r.monitor.generation === r.generation);
  for (const r of ok) if (!good.includes(r)) for (const b of r.blocks) b.fill(0);
  if (good.length === 0) throw new Error(`no healthy ${origin} source delivered entropy`);
  const blocks = good.flatMap((r) => r.blocks);
  const entropy = new Uint8Array(blocks.reduce((a, b) => a + b.length, 0));
  let off = 0;
  for (const b of blocks) {
    entropy.set(b, off);
    off += b.length;
    b.fill(0);
  }
  return {
    entropy,
    credited: good.reduce((a, r) => a + r.credited, 0),
    sources: good.map((r) => r.monitor),
    generations: good.map((r) => r.generation),
  };
}
