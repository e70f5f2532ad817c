import { describe, expect, it } from 'vitest';
import { HmacConditioner } from '../../src/entropy/conditioner.js';
import { gatherSeedInput } from '../../src/entropy/service/seed-input.js';
import type { SourceMonitor } from '../../src/entropy/source-monitor.js';

/**
 * The seed pipeline (src/entropy/service/seed-input.ts) on scripted sources: what it keeps, what
 * it leaves out, and that every buffer it lets go of — used or discarded — is wiped.
 */

/** A conditioner that keeps a reference to every output it hands back. */
class RecordingConditioner extends HmacConditioner {
  readonly outputs: Uint8Array[] = [];
  override conditionBlocks(input: Uint8Array, blockBytes: number, entropyPerByte: number) {
    const c = super.conditionBlocks(input, blockBytes, entropyPerByte);
    this.outputs.push(c.output);
    return c;
  }
}

/** The part of a SourceMonitor the pipeline reads, scripted. */
class ScriptedSource {
  state: SourceMonitor['state'] = 'healthy';
  generation = 1;
  readonly entropyPerByte = 8;
  readonly windowBytes = 64;
  readonly handedOut: Uint8Array[] = [];
  /** Runs when `take` has its bytes, before it resolves: a place to fail the source. */
  beforeResolve: () => void = () => undefined;
  /** Resolved by the test to let `take` answer (by default at once). */
  gate: Promise<void> = Promise.resolve();

  constructor(readonly id: string) {}

  async take(n: number): Promise<Uint8Array> {
    await this.gate;
    const raw = new Uint8Array(n).fill(0xa5);
    this.handedOut.push(raw);
    this.beforeResolve();
    return raw;
  }

  fail(): void {
    this.state = 'quarantined';
    this.generation++;
  }
}

const asMonitors = (s: ScriptedSource[]) => s as unknown as SourceMonitor[];
const zero = (b: Uint8Array) => b.every((x) => x === 0);

describe('gatherSeedInput', () => {
  it('concatenates one full-entropy block set per healthy source and wipes the raw bytes and blocks', async () => {
    const conditioner = new RecordingConditioner();
    const sources = [new ScriptedSource('a'), new ScriptedSource('b')];
    const g = await gatherSeedInput(asMonitors(sources), 256, conditioner, 'quantum');
    expect(g.sources.map((m) => m.id)).toEqual(['a', 'b']);
    expect(g.entropy).toHaveLength(64); // 2 × ⌈256/256⌉ blocks of 32 bytes
    expect(g.credited).toBe(512);
    expect(zero(g.entropy)).toBe(false);
    for (const s of sources) expect(s.handedOut.every(zero)).toBe(true);
    expect(conditioner.outputs.every(zero)).toBe(true);
  });

  it('leaves out, and wipes the blocks of, a source that failed while another was still being read', async () => {
    const conditioner = new RecordingConditioner();
    const fast = new ScriptedSource('fast');
    const slow = new ScriptedSource('slow');
    let release!: () => void;
    slow.gate = new Promise<void>((r) => {
      release = r;
    });
    const gathering = gatherSeedInput(asMonitors([fast, slow]), 256, conditioner, 'quantum');
    // Let the fast source's bytes be taken and conditioned, then fail it before the slow one answers.
    await new Promise((r) => setImmediate(r));
    expect(conditioner.outputs).toHaveLength(1);
    fast.fail();
    release();
    const g = await gathering;
    expect(g.sources.map((m) => m.id)).toEqual(['slow']);
    expect(g.entropy).toHaveLength(32);
    expect(conditioner.outputs).toHaveLength(2);
    expect(conditioner.outputs.every(zero)).toBe(true);
  });

  it('wipes the raw bytes of a source that failed as they arrived, and throws when no source delivered', async () => {
    const conditioner = new RecordingConditioner();
    const s = new ScriptedSource('flaky');
    s.beforeResolve = () => s.fail();
    await expect(gatherSeedInput(asMonitors([s]), 256, conditioner, 'quantum')).rejects.toThrow(
      'no healthy quantum source delivered entropy',
    );
    expect(s.handedOut).toHaveLength(1);
    expect(s.handedOut.every(zero)).toBe(true);
    expect(conditioner.outputs).toHaveLength(0);
  });
});
