/**
 * One FIFO lock per string key. Serialises the read-check-write steps of `take`, `put`,
 * `putIfAbsent` … on the same id within this process; LevelDB's directory lock keeps other
 * processes out, so together they make those steps atomic.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  /** Keys held or waited for now: what this lock keeps in memory (0 when idle). */
  get size(): number {
    return this.#tails.size;
  }

  /** Resolves with a release function once every earlier holder of `key` has released it. */
  async acquire(key: string): Promise<() => void> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
      // Nobody queued behind us: drop the entry so the map does not grow with every id ever seen.
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
  }

  /** Runs `fn` holding the lock for `key`. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(key);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * Runs `fn` holding the locks for all `keys`, taken in sorted order. Safe against deadlock with
   * `run` (which holds one lock) and with other `runMany` calls (same global order).
   */
  async runMany<T>(keys: Iterable<string>, fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const releases: Array<() => void> = [];
    try {
      for (const k of sorted) releases.push(await this.acquire(k));
      return await fn();
    } finally {
      for (const r of releases.reverse()) r();
    }
  }
}
