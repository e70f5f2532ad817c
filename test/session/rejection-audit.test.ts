import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditEvent } from '../../src/audit/types.js';
import { RejectionAudit } from '../../src/session/rejection-audit.js';

function sink() {
  const events: AuditEvent[] = [];
  return {
    events,
    append: async (e: AuditEvent) => {
      events.push(e);
      return e as never;
    },
  };
}

afterEach(() => vi.useRealTimers());

describe('RejectionAudit', () => {
  it('records the first N per code and window, then one count when the window closes', async () => {
    let now = 1_000_000;
    const s = sink();
    const r = new RejectionAudit(s, { perWindow: 3, windowMs: 60_000, clock: () => now });
    for (let i = 0; i < 10; i++) await r.record('peer', 'HANDSHAKE_MALFORMED', 'bad');
    await r.record('peer', 'HANDSHAKE_STALE', 'old'); // another code has its own budget
    expect(s.events.map((e) => e.type)).toEqual([
      'session.rejected',
      'session.rejected',
      'session.rejected',
      'session.rejected',
    ]);
    now += 60_000; // next window: the count of the last one is written first
    await r.record('peer', 'HANDSHAKE_MALFORMED', 'bad');
    const summary = s.events.find((e) => e.type === 'session.rejections_suppressed');
    expect(summary?.details).toMatchObject({ code: 'HANDSHAKE_MALFORMED', count: 7 });
    expect(s.events.at(-1)).toMatchObject({
      type: 'session.rejected',
      details: { code: 'HANDSHAKE_MALFORMED' },
    });
  });

  it('writes the count at the end of the window without a later rejection, and on flush', async () => {
    vi.useFakeTimers({ now: 0 });
    const s = sink();
    const r = new RejectionAudit(s, { perWindow: 1, windowMs: 1000, clock: () => Date.now() });
    for (let i = 0; i < 5; i++) await r.record('x', 'HANDSHAKE_REPLAYED', 'again');
    expect(s.events).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(s.events.at(-1)).toMatchObject({
      type: 'session.rejections_suppressed',
      details: { code: 'HANDSHAKE_REPLAYED', count: 4 },
    });
    await r.record('x', 'HANDSHAKE_REPLAYED', 'again');
    await r.record('x', 'HANDSHAKE_REPLAYED', 'again');
    r.flush();
    expect(s.events.at(-1)).toMatchObject({ type: 'session.rejections_suppressed', details: { count: 1 } });
  });

  it('never throws when the audit log fails', async () => {
    const r = new RejectionAudit({ append: async () => Promise.reject(new Error('closed')) });
    await expect(r.record('x', 'CODE', 'why')).resolves.toBeUndefined();
  });
});
