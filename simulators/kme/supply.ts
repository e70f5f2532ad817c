/**
 * Feeding a KME pair: {@link PairFeeder} hands every block from one {@link KeySupply} to both
 * pools, trimmed to what both can hold; {@link ManualKeySupply} is a supply tests drive by hand.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { KeyPool } from './pool.js';
import type { KeySupply, LinkKey } from './types.js';

export interface FeederStats {
  blocksReceived: number;
  keysAccepted: number;
  /** Keys dropped because either pool was full (dropped at both ends alike). */
  keysDroppedFull: number;
  /** Keys dropped because they were malformed (wrong length, duplicate ID). */
  keysDroppedInvalid: number;
}

/**
 * Subscribes to a supply and feeds both pools of a pair with the same keys. When either pool is
 * short of room, the block is cut to the smaller free capacity and the same tail is dropped for
 * both, so the pools never diverge; keys already in a pool or held for a slave are never
 * discarded to make room.
 */
export class PairFeeder {
  readonly stats: FeederStats = {
    blocksReceived: 0,
    keysAccepted: 0,
    keysDroppedFull: 0,
    keysDroppedInvalid: 0,
  };
  private readonly listener = (keys: readonly LinkKey[]) => this.feed(keys);
  private paused = false;
  private checkQueued = false;

  constructor(
    private readonly supply: KeySupply,
    private readonly pools: readonly [KeyPool, KeyPool],
  ) {
    if (pools[0].unitBits !== pools[1].unitBits)
      throw new RangeError('both pools must use the same key size');
    supply.on('keys', this.listener);
    for (const pool of pools) pool.onFreed = () => this.queueResumeCheck();
  }

  /** Free room common to both pools: how many keys of the next block would be kept. */
  get room(): number {
    return Math.min(this.pools[0].freeCapacity, this.pools[1].freeCapacity);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Feeds one block directly (what the supply's 'keys' event does). */
  feed(keys: readonly LinkKey[]): void {
    this.stats.blocksReceived++;
    const [a, b] = this.pools;
    const unitBytes = a.unitBits / 8;
    const isValid = (k: LinkKey): boolean =>
      typeof k.keyId === 'string' && k.key instanceof Uint8Array && k.key.length === unitBytes;
    // Every block of an unthrottled link passes through here: copy only when something is dropped.
    let allValid = true;
    for (let i = 0; i < keys.length && allValid; i++) allValid = isValid(keys[i]!);
    const valid = allValid ? keys : keys.filter(isValid);
    this.stats.keysDroppedInvalid += keys.length - valid.length;
    const room = Math.min(a.freeCapacity, b.freeCapacity);
    const accepted = room >= valid.length ? valid : valid.slice(0, room);
    this.stats.keysDroppedFull += valid.length - accepted.length;
    const skippedA = a.accept(accepted);
    const skippedB = b.accept(accepted);
    if (skippedA.length + skippedB.length > 0) {
      // An ID one pool already knew (never seen with random UUIDs): the other pool must not keep it either.
      const inA = new Set(skippedA);
      const inB = new Set(skippedB);
      a.drop(skippedB.filter((id) => !inA.has(id)));
      b.drop(skippedA.filter((id) => !inB.has(id)));
      const skipped = new Set([...skippedA, ...skippedB]).size;
      this.stats.keysDroppedInvalid += skipped;
      this.stats.keysAccepted -= skipped;
    }
    this.stats.keysAccepted += accepted.length;
    if (this.room === 0 && this.supply.pause !== undefined && !this.paused) {
      this.paused = true;
      this.supply.pause();
    }
  }

  detach(): void {
    this.supply.off('keys', this.listener);
    for (const pool of this.pools) pool.onFreed = undefined;
  }

  /**
   * Runs after the current synchronous step, so a take immediately followed by a reserve (which
   * frees nothing overall) does not wake the supply for nothing.
   */
  private queueResumeCheck(): void {
    if (!this.paused || this.checkQueued) return;
    this.checkQueued = true;
    queueMicrotask(() => {
      this.checkQueued = false;
      if (this.paused && this.room > 0) {
        this.paused = false;
        this.supply.resume?.();
      }
    });
  }
}

/**
 * A {@link KeySupply} for tests and demos: `push(n)` emits one block of `n` random keys with
 * random UUIDs, synchronously, so a test knows exactly what the pools hold.
 */
export class ManualKeySupply extends EventEmitter implements KeySupply {
  constructor(readonly keySizeBits = 256) {
    super();
  }

  /** Emits a block of `count` fresh keys and returns it. */
  push(count: number): LinkKey[] {
    const keys = Array.from({ length: count }, () => ({
      keyId: randomUUID(),
      key: new Uint8Array(randomBytes(this.keySizeBits / 8)),
    }));
    this.emit('keys', keys);
    return keys;
  }

  /** Emits the given block as it is (for malformed-block tests). */
  pushBlock(keys: LinkKey[]): void {
    this.emit('keys', keys);
  }
}
