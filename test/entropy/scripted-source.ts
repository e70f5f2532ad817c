/**
 * Test helper: an entropy source whose byte stream is scripted by the test, to drive the source
 * monitor through exact sequences (a window that fails at its last byte, start-up bytes that must
 * never be handed out, …). Not a test file itself.
 */
import { EventEmitter } from 'node:events';
import { EntropySourceError } from '../../drivers/entropy/errors.js';
import type {
  EntropySource,
  EntropySourceEvents,
  EntropySourceFactory,
  EntropySourceInfo,
} from '../../drivers/entropy/interface.js';

export class ScriptedSource extends EventEmitter implements EntropySource {
  offset = 0;
  closed = false;
  reads: number[] = [];

  constructor(
    private readonly produce: (offset: number, n: number) => Uint8Array,
    private readonly claim = 4,
  ) {
    super();
  }

  info(): EntropySourceInfo {
    return {
      id: 'scripted',
      driver: 'scripted',
      kind: 'quantum',
      simulated: true,
      description: 'scripted test source',
      sampleBits: 8,
      claimedMinEntropy: this.claim,
    };
  }

  async read(n: number): Promise<Uint8Array> {
    await new Promise((r) => setImmediate(r));
    if (this.closed) throw new EntropySourceError('scripted', 'canceled', 'closed');
    this.reads.push(n);
    const out = this.produce(this.offset, n);
    this.offset += n;
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  override on<E extends keyof EntropySourceEvents>(event: E, listener: EntropySourceEvents[E]): this {
    return super.on(event, listener);
  }

  override off<E extends keyof EntropySourceEvents>(event: E, listener: EntropySourceEvents[E]): this {
    return super.off(event, listener);
  }
}

export function scriptedFactory(source: ScriptedSource): EntropySourceFactory {
  return {
    driver: 'scripted',
    async list() {
      return [{ id: 'scripted', driver: 'scripted', description: 'scripted', simulated: true }];
    },
    // Re-opening models a new handle on the same device: its stream carries on where it was.
    async open() {
      source.closed = false;
      return source;
    },
  };
}
