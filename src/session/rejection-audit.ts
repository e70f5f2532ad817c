import type { AuditSink } from '../audit/types.js';

/**
 * Audit records for rejected handshakes, bounded. Anyone holding a `sessions` token can post
 * junk to accept as fast as the rate limit lets them; one synced audit record per attempt would
 * turn that into a disk-filling, fsync-bound denial of service. So per error code and window,
 * the first `perWindow` rejections are recorded one by one, the rest are counted, and the count
 * is recorded once as `session.rejections_suppressed` when the window closes.
 */
export interface RejectionAuditOptions {
  /** Rejections recorded individually per code and window (default 20). */
  perWindow?: number;
  /** Window length in ms (default 60 000). */
  windowMs?: number;
  /** Wall clock, ms since the epoch. */
  clock?: () => number;
  /** Audit record types (default `session.rejected` / `session.rejections_suppressed`). */
  type?: string;
  suppressedType?: string;
}

interface Window {
  start: number;
  written: number;
  suppressed: number;
  timer: NodeJS.Timeout | undefined;
}

export class RejectionAudit {
  private readonly windows = new Map<string, Window>();
  private readonly perWindow: number;
  private readonly windowMs: number;
  private readonly clock: () => number;
  private readonly type: string;
  private readonly suppressedType: string;

  constructor(
    private readonly audit: AuditSink,
    options: RejectionAuditOptions = {},
  ) {
    this.perWindow = options.perWindow ?? 20;
    this.windowMs = options.windowMs ?? 60_000;
    this.clock = options.clock ?? Date.now;
    this.type = options.type ?? 'session.rejected';
    this.suppressedType = options.suppressedType ?? 'session.rejections_suppressed';
  }

  /** Records (or counts) one rejection. Never rejects: the rejection itself is what the caller must see. */
  async record(actor: string, code: string, reason: string): Promise<void> {
    const now = this.clock();
    let w = this.windows.get(code);
    if (w !== undefined && now - w.start >= this.windowMs) {
      this.close(code, w);
      w = undefined;
    }
    if (w === undefined) {
      w = { start: now, written: 0, suppressed: 0, timer: undefined };
      this.windows.set(code, w);
    }
    if (w.written < this.perWindow) {
      w.written++;
      await this.audit.append({ type: this.type, actor, details: { code, reason } }).catch(() => undefined);
      return;
    }
    w.suppressed++;
    if (w.timer === undefined) {
      const window = w;
      // Writes the count when the window ends even if no later rejection comes to close it.
      window.timer = setTimeout(
        () => this.close(code, window),
        Math.max(0, window.start + this.windowMs - now),
      );
      window.timer.unref();
    }
  }

  /** Writes the pending counts now (shutdown). */
  flush(): void {
    for (const [code, w] of [...this.windows]) this.close(code, w);
  }

  private close(code: string, w: Window): void {
    if (w.timer !== undefined) clearTimeout(w.timer);
    w.timer = undefined;
    if (this.windows.get(code) === w) this.windows.delete(code);
    if (w.suppressed === 0) return;
    const count = w.suppressed;
    w.suppressed = 0;
    void this.audit
      .append({
        type: this.suppressedType,
        actor: 'system',
        details: {
          code,
          count,
          since: new Date(w.start).toISOString(),
          until: new Date(Math.min(this.clock(), w.start + this.windowMs)).toISOString(),
        },
      })
      .catch(() => undefined);
  }
}
