/**
 * Group commit for synced writes: every write issued while the current turn of the event loop
 * runs (its synchronous code and the promise callbacks it sets off) goes to the store as one
 * synced batch, so the writes one request makes together — a session record, its audit record,
 * a replay entry — cost one fsync and one call into the storage thread, not one each.
 *
 * Durability is unchanged: each write resolves only once the batch holding it is durable, and
 * rejects if that batch fails (the batch is atomic, so then none of its writes happened).
 * Ordering per key is the caller's (the per-key locks: a key's next write is only issued after
 * the previous one resolved, so one batch never holds two writes of a key).
 */
export class GroupCommit<Op> {
  #ops: Op[] = [];
  #waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];

  constructor(private readonly commit: (ops: Op[]) => Promise<void>) {}

  write(op: Op): Promise<void> {
    if (this.#ops.length === 0) {
      // A microtask that schedules a tick: Node runs that tick once the microtask queue has
      // drained, i.e. after every promise callback this turn sets off has issued its writes,
      // and before any I/O or timer — the batch is never held back for later work.
      queueMicrotask(() => process.nextTick(() => this.#flush()));
    }
    this.#ops.push(op);
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
  }

  #flush(): void {
    const ops = this.#ops;
    const waiters = this.#waiters;
    this.#ops = [];
    this.#waiters = [];
    this.commit(ops).then(
      () => {
        for (const w of waiters) w.resolve();
      },
      (err: unknown) => {
        for (const w of waiters) w.reject(err);
      },
    );
  }
}
