import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isQkmError } from '../../src/core/errors.js';
import { type AgentId, formatAid } from '../../src/governance/aid.js';
import {
  type ContactRule,
  decide,
  formatPattern,
  matchRule,
  normalizeRules,
  parsePattern,
  patternMatches,
  specificity,
} from '../../src/governance/contact-policy.js';

// Small alphabets so that generated patterns and ids collide often.
const users = fc.constantFrom('alice', 'bob', 'carol');
const domains = fc.constantFrom('example.com', 'corp.example', 'other.org');
const names = fc.constantFrom('mail', 'calendar', 'search');
const aidArb: fc.Arbitrary<AgentId> = fc.record({ user: users, domain: domains, name: names });
const patternArb = fc
  .record({
    user: fc.option(users, { nil: undefined }),
    domain: fc.option(domains, { nil: undefined }),
    name: fc.option(names, { nil: undefined }),
  })
  .map(formatPattern);
const budgetArb = fc.integer({ min: -3, max: 5 });
const rulesArb = fc.uniqueArray(fc.record({ pattern: patternArb, budget: budgetArb }), {
  selector: (r) => r.pattern,
  maxLength: 12,
});

/** Reference matcher written independently: every matching rule, ranked by specificity. */
function reference(rules: ContactRule[], id: AgentId): ContactRule | undefined {
  const ranked = rules
    .map((r) => {
      const p = parsePattern(r.pattern);
      return { r, p, lit: [p.user, p.domain, p.name].filter((x) => x !== undefined).length };
    })
    .filter(({ p }) => patternMatches(p, id))
    .map(({ r, p, lit }) => ({
      r,
      key: lit * 100 + (p.name ? 4 : 0) + (p.domain ? 2 : 0) + (p.user ? 1 : 0),
    }))
    .sort((a, b) => b.key - a.key);
  return ranked[0]?.r;
}

describe('contact-policy matcher: the most specific rule wins', () => {
  const id = 'alice@example.com:mail';
  const all: ContactRule[] = [
    { pattern: '*', budget: 1 },
    { pattern: 'alice@*', budget: 2 },
    { pattern: '*@example.com:mail', budget: 3 },
    { pattern: 'alice@example.com:mail', budget: 4 },
  ];

  it('exact id > *@domain:name > user@* > * (whatever the order of the rules)', () => {
    for (let n = all.length; n >= 1; n--) {
      const rules = all.slice(0, n);
      for (const order of [rules, [...rules].reverse()]) {
        expect(matchRule(order, id)?.rule.budget).toBe(n);
      }
    }
  });

  it('SAGA\'s "last matching rule" would pick differently; qkm does not', () => {
    const rules = [
      { pattern: 'alice@example.com:mail', budget: 10 },
      { pattern: '*', budget: -1 },
    ];
    expect(decide(rules, id, 0)).toMatchObject({ outcome: 'allowed', rule: rules[0], remaining: 10 });
    expect(decide([...rules].reverse(), id, 0).outcome).toBe('allowed');
  });

  it('ranks two-literal patterns name > domain > user', () => {
    expect(specificity(parsePattern('*@example.com:mail'))).toEqual([2, 6]);
    expect(specificity(parsePattern('alice@*:mail'))).toEqual([2, 5]);
    expect(specificity(parsePattern('alice@example.com:*'))).toEqual([2, 3]);
    const rules = [
      { pattern: 'alice@example.com:*', budget: 1 },
      { pattern: 'alice@*:mail', budget: 2 },
      { pattern: '*@example.com:mail', budget: 3 },
    ];
    expect(matchRule(rules, id)?.rule.budget).toBe(3);
    expect(matchRule(rules.slice(0, 2), id)?.rule.budget).toBe(2);
  });

  it('negative budget blocks, 0 admits nothing, no match means no contact', () => {
    expect(decide([{ pattern: '*@example.com:*', budget: -1 }], id, 0)).toMatchObject({
      outcome: 'blocked',
      remaining: 0,
    });
    expect(decide([{ pattern: '*', budget: 0 }], id, 0)).toMatchObject({ outcome: 'budget-exhausted' });
    expect(decide([{ pattern: 'bob@*', budget: 9 }], id, 0)).toMatchObject({
      outcome: 'no-match',
      remaining: 0,
    });
    expect(decide([], id, 0).outcome).toBe('no-match');
    expect(decide([{ pattern: '*', budget: 2 }], id, 2).outcome).toBe('budget-exhausted');
    expect(decide([{ pattern: '*', budget: 2 }], id, 1)).toMatchObject({ outcome: 'allowed', remaining: 1 });
  });

  it('explains every rule', () => {
    const d = decide(all, 'alice@other.org:mail', 0);
    expect(d.rule?.pattern).toBe('alice@*');
    expect(d.table.map((r) => [r.pattern, r.matches, r.chosen])).toEqual([
      ['*', true, false],
      ['alice@*', true, true],
      ['*@example.com:mail', false, false],
      ['alice@example.com:mail', false, false],
    ]);
    expect(d.table[0]?.why).toContain("'alice@*' is more specific");
    expect(d.table[2]?.why).toContain('domain differs');
  });

  it('property: agrees with an independent reference matcher', () => {
    fc.assert(
      fc.property(rulesArb, aidArb, (rules, aid) => {
        expect(matchRule(rules, aid)?.rule).toEqual(reference(rules, aid));
      }),
      { numRuns: 2000 },
    );
  });

  it('property: the decision does not depend on rule order', () => {
    fc.assert(
      fc.property(
        rulesArb.chain((rules) =>
          fc.tuple(fc.constant(rules), fc.shuffledSubarray(rules, { minLength: rules.length })),
        ),
        aidArb,
        fc.integer({ min: 0, max: 6 }),
        ([rules, shuffled], aid, used) => {
          const a = decide(rules, aid, used);
          const b = decide(shuffled, aid, used);
          expect(b.outcome).toBe(a.outcome);
          expect(b.rule).toEqual(a.rule);
          expect(b.remaining).toBe(a.remaining);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('property: the winner matches and every other matching rule is strictly less specific', () => {
    fc.assert(
      fc.property(rulesArb, aidArb, (rules, aid) => {
        const best = matchRule(rules, aid);
        const matching = rules.filter((r) => patternMatches(parsePattern(r.pattern), aid));
        if (!best) {
          expect(matching).toEqual([]);
          return;
        }
        expect(patternMatches(parsePattern(best.rule.pattern), aid)).toBe(true);
        for (const r of matching) {
          if (r === best.rule) continue;
          const s = specificity(parsePattern(r.pattern));
          expect(
            s[0] < best.specificity[0] || (s[0] === best.specificity[0] && s[1] < best.specificity[1]),
          ).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('property: adding a rule that does not match, or is less specific than the winner, changes nothing', () => {
    fc.assert(
      fc.property(rulesArb, aidArb, patternArb, budgetArb, (rules, aid, pattern, budget) => {
        if (rules.some((r) => r.pattern === pattern)) return;
        const before = matchRule(rules, aid);
        const p = parsePattern(pattern);
        const s = specificity(p);
        const irrelevant =
          !patternMatches(p, aid) ||
          (before !== undefined &&
            (s[0] < before.specificity[0] ||
              (s[0] === before.specificity[0] && s[1] < before.specificity[1])));
        const after = matchRule([...rules, { pattern, budget }], aid);
        if (irrelevant) expect(after?.rule).toEqual(before?.rule);
        else expect(after?.rule).toEqual({ pattern, budget });
      }),
      { numRuns: 1000 },
    );
  });

  it('property: the exact id always decides when present', () => {
    fc.assert(
      fc.property(rulesArb, aidArb, budgetArb, (rules, aid, budget) => {
        const exact = formatAid(aid);
        const others = rules.filter((r) => r.pattern !== exact);
        expect(matchRule([...others, { pattern: exact, budget }], aid)?.rule).toEqual({
          pattern: exact,
          budget,
        });
      }),
    );
  });

  it('normalises patterns, sorts most specific first and refuses ambiguous or bad rule lists', () => {
    expect(
      normalizeRules([
        { pattern: '*@*:*', budget: 1 },
        { pattern: 'alice@*', budget: 2 },
        { pattern: 'Alice@EXAMPLE.com:mail', budget: -1 },
      ]),
    ).toEqual([
      { pattern: 'Alice@example.com:mail', budget: -1 },
      { pattern: 'alice@*:*', budget: 2 },
      { pattern: '*', budget: 1 },
    ]);
    const bad: unknown[] = [
      'nope',
      [
        { pattern: '*', budget: 1 },
        { pattern: '*@*:*', budget: 2 },
      ],
      [{ pattern: 'alice@*', budget: 1.5 }],
      [{ pattern: 'alice@*', budget: '3' }],
      [{ pattern: 'alice@*', budget: 2_000_000 }],
      [{ pattern: 'alice@example.com', budget: 1 }],
      [{ pattern: '*.example.com', budget: 1 }],
      [{ pattern: 'alice@*.example.com:mail', budget: 1 }],
      [{ pattern: '', budget: 1 }],
      [{ pattern: 7, budget: 1 }],
      [null],
      Array.from({ length: 257 }, (_, i) => ({ pattern: `u${i}@*`, budget: 1 })),
    ];
    for (const rules of bad) {
      let caught: unknown;
      try {
        normalizeRules(rules);
      } catch (err) {
        caught = err;
      }
      expect(isQkmError(caught, 'POLICY_INVALID'), JSON.stringify(rules).slice(0, 60)).toBe(true);
    }
  });
});

describe('qkm policy contacts --set pattern=budget', () => {
  it('splits at the last = and takes only integers', async () => {
    const { parseRuleArg } = await import('../../src/cli/commands/governance-commands.js');
    expect(parseRuleArg('a=b@example.com:mail=-1')).toEqual({ pattern: 'a=b@example.com:mail', budget: -1 });
    expect(parseRuleArg('*=5')).toEqual({ pattern: '*', budget: 5 });
    for (const bad of ['*', '=5', '*=', '*=1.5', '*=x', '*=1e3', '*= 2'])
      expect(() => parseRuleArg(bad)).toThrow(/pattern=budget/);
  });
});
