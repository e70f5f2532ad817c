import { describe, expect, it } from 'vitest';
import { isQkmError } from '../../src/core/errors.js';
import {
  type BudgetRecord,
  ContactPolicies,
  type StoredContactPolicy,
} from '../../src/governance/contacts.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import type { StorageBackend } from '../../src/store/interface.js';

const BOB = 'bob@example.com:calendar';
const ALICE = 'alice@example.com:mail';
const EVE = 'eve@evil.example:mail';

function open(store: StorageBackend, clock: { t: number }, windowSeconds = 3600): ContactPolicies {
  return new ContactPolicies({
    policies: store.records<StoredContactPolicy>('contact-policies'),
    budgets: store.records<BudgetRecord>('contact-budgets'),
    windowSeconds,
    isLocalAid: async (aid) => aid === BOB,
    now: () => clock.t,
  });
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isQkmError(err) ? err.code : `not a QkmError: ${String(err)}`;
  }
}

describe('contact policies and budget windows', () => {
  it('two processes whose clocks straddle a window boundary never reset the later window', async () => {
    const store = createMemoryBackend();
    const boundary = Date.UTC(2026, 0, 1, 11, 0, 0);
    const ahead = open(store, { t: boundary + 1000 });
    const behind = open(store, { t: boundary - 1000 }); // same store, a clock 2 s late
    await ahead.set(BOB, [{ pattern: '*@example.com:*', budget: 2 }]);
    await ahead.consume(BOB, ALICE);
    await ahead.consume(BOB, ALICE);
    // The late process must not treat the new window's count as stale and grant it afresh.
    expect(await code(behind.consume(BOB, ALICE))).toBe('CONTACT_BUDGET_EXHAUSTED');
    expect(await store.records<BudgetRecord>('contact-budgets').entries()).toEqual([
      [`${BOB} ${ALICE}`, { windowStart: boundary, used: 2 }],
    ]);
  });

  it('refund gives back a granted unit within its window only', async () => {
    const clock = { t: Date.UTC(2026, 0, 1, 10, 30, 0) };
    const c = open(createMemoryBackend(), clock);
    await c.set(BOB, [{ pattern: '*@example.com:*', budget: 2 }]);
    await c.consume(BOB, ALICE);
    const second = await c.consume(BOB, ALICE);
    await c.refund(second);
    expect((await c.explain(BOB, ALICE)).used).toBe(1);
    const third = await c.consume(BOB, ALICE);
    clock.t += 3600_000; // next window, and a unit granted in it
    await c.consume(BOB, ALICE);
    await c.refund(third); // its window is over: the new window's count is left alone
    expect((await c.explain(BOB, ALICE)).used).toBe(1);
  });

  it('only agents of this node have policies; an agent without one cannot be contacted', async () => {
    const c = open(createMemoryBackend(), { t: 0 });
    expect(await code(c.set(ALICE, []))).toBe('AID_NOT_FOUND');
    expect(await code(c.set('not an id', []))).toBe('AID_INVALID');
    expect((await c.get(BOB)).rules).toEqual([]);
    expect(await code(c.consume(BOB, ALICE))).toBe('CONTACT_NO_RULE');
  });

  it('grants budget per window, refuses with distinct codes, and consumes nothing when refusing', async () => {
    const clock = { t: Date.UTC(2026, 0, 1, 10, 0, 0) };
    const store = createMemoryBackend();
    const c = open(store, clock);
    await c.set(BOB, [
      { pattern: '*@example.com:*', budget: 2 },
      { pattern: '*@evil.example:*', budget: -1 },
    ]);
    expect(await c.consume(BOB, ALICE)).toMatchObject({ outcome: 'allowed', used: 1, remaining: 1 });
    expect(await c.consume(BOB, ALICE)).toMatchObject({ used: 2, remaining: 0 });
    expect(await code(c.consume(BOB, ALICE))).toBe('CONTACT_BUDGET_EXHAUSTED');
    expect(await code(c.consume(BOB, EVE))).toBe('CONTACT_BLOCKED');
    expect(await code(c.consume(BOB, 'carol@other.org:x'))).toBe('CONTACT_NO_RULE');
    expect(await store.records('contact-budgets').entries()).toHaveLength(1);
    expect(await c.explain(BOB, ALICE)).toMatchObject({
      outcome: 'budget-exhausted',
      used: 2,
      window: { seconds: 3600, start: '2026-01-01T10:00:00.000Z', end: '2026-01-01T11:00:00.000Z' },
    });
    // A restart (new instance over the same store) does not reset the count.
    expect(await code(open(store, clock).consume(BOB, ALICE))).toBe('CONTACT_BUDGET_EXHAUSTED');
    // The next window starts afresh.
    clock.t += 3600_000;
    expect(await open(store, clock).consume(BOB, ALICE)).toMatchObject({ used: 1, remaining: 1 });
  });

  it('explain consumes nothing', async () => {
    const c = open(createMemoryBackend(), { t: 0 });
    await c.set(BOB, [{ pattern: ALICE, budget: 1 }]);
    for (let i = 0; i < 3; i++) expect((await c.explain(BOB, ALICE)).remaining).toBe(1);
    await c.consume(BOB, ALICE);
    expect((await c.explain(BOB, ALICE)).outcome).toBe('budget-exhausted');
  });

  it('concurrent requests never exceed the budget', async () => {
    const c = open(createMemoryBackend(), { t: 0 });
    await c.set(BOB, [{ pattern: '*', budget: 5 }]);
    const results = await Promise.all(Array.from({ length: 20 }, () => code(c.consume(BOB, ALICE))));
    expect(results.filter((r) => r === undefined)).toHaveLength(5);
    expect(results.filter((r) => r === 'CONTACT_BUDGET_EXHAUSTED')).toHaveLength(15);
  });

  it('a policy change takes effect at once; budgets of different initiators are separate', async () => {
    const c = open(createMemoryBackend(), { t: 0 });
    await c.set(BOB, [{ pattern: '*', budget: 1 }]);
    await c.consume(BOB, ALICE);
    await c.consume(BOB, 'carol@example.com:mail');
    await c.set(BOB, [
      { pattern: '*', budget: 1 },
      { pattern: ALICE, budget: -1 },
    ]);
    expect(await code(c.consume(BOB, ALICE))).toBe('CONTACT_BLOCKED');
  });

  it('refuses a window that is not a positive whole number of seconds', () => {
    expect(() => open(createMemoryBackend(), { t: 0 }, 0)).toThrow(RangeError);
    expect(() => open(createMemoryBackend(), { t: 0 }, 1.5)).toThrow(RangeError);
  });
});
