import { QkmError } from '../core/errors.js';
import { type AgentId, isValidDomain, isValidName, isValidUser, parseAid } from './aid.js';

/**
 * Contact policies (SAGA §IV): each governed agent lists rules `{pattern, budget}` saying which
 * initiators may contact it and how many one-time keys each may obtain per budget window.
 *
 * Unlike SAGA's reference matcher (which takes the LAST matching rule, so the outcome depends
 * on the order rules were written), qkm takes the MOST SPECIFIC matching rule, and the result
 * does not depend on rule order at all:
 *
 * - A pattern is `*` or `user@domain:name` where each of the three parts is a literal or `*`;
 *   `user@*` is short for `user@*:*`, `*@*:*` is the same as `*`.
 * - Specificity is first the number of literal parts (exact id 3 > `*@domain:name` 2 >
 *   `user@*` 1 > `*` 0), then, between patterns with as many literals, the part that narrows
 *   most: name (weight 4) > domain (2) > user (1). So `*@d:n` > `u@*:n` > `u@d:*`.
 * - Two distinct patterns that both match one id always differ in specificity (equal weights
 *   mean the same literal parts, and both match, so the same literals), and duplicates are
 *   refused when the policy is set: the winner is unique.
 * - A negative budget blocks; budget 0 admits the contact but grants no key; no match means
 *   no contact (fail closed).
 */

export interface ContactRule {
  pattern: string;
  budget: number;
}

export interface ParsedPattern {
  /** `undefined` = wildcard. */
  user: string | undefined;
  domain: string | undefined;
  name: string | undefined;
}

export const MAX_RULES = 256;
export const MAX_BUDGET = 1_000_000;
export const MIN_BUDGET = -1_000_000;

const WEIGHT = { user: 1, domain: 2, name: 4 } as const;

export function parsePattern(input: unknown): ParsedPattern {
  if (typeof input !== 'string' || input.length === 0)
    throw new QkmError('POLICY_INVALID', 'a rule pattern must be a non-empty string');
  if (input === '*') return { user: undefined, domain: undefined, name: undefined };
  const colon = input.lastIndexOf(':');
  const at = input.lastIndexOf('@', colon < 0 ? input.length : colon);
  if (at < 0)
    throw new QkmError('POLICY_INVALID', `pattern '${clip(input)}' is not *, user@* or user@domain:name`);
  const userPart = input.slice(0, at);
  let domainPart: string;
  let namePart: string;
  if (colon < 0) {
    // Only `user@*` has no name part.
    if (input.slice(at + 1) !== '*')
      throw new QkmError('POLICY_INVALID', `pattern '${clip(input)}' needs a :name part (or use user@*)`);
    domainPart = '*';
    namePart = '*';
  } else {
    domainPart = input.slice(at + 1, colon);
    namePart = input.slice(colon + 1);
  }
  const user = userPart === '*' ? undefined : userPart;
  const domain = domainPart === '*' ? undefined : domainPart.toLowerCase();
  const name = namePart === '*' ? undefined : namePart;
  if (user !== undefined && !isValidUser(user))
    throw new QkmError('POLICY_INVALID', `pattern '${clip(input)}': user part is not valid`);
  if (domain !== undefined && !isValidDomain(domain))
    throw new QkmError('POLICY_INVALID', `pattern '${clip(input)}': domain part is not a DNS name or *`);
  if (name !== undefined && !isValidName(name))
    throw new QkmError('POLICY_INVALID', `pattern '${clip(input)}': name part is not valid`);
  return { user, domain, name };
}

/** Canonical text: `*` when all parts are wild, otherwise the full `u@d:n` triple. */
export function formatPattern(p: ParsedPattern): string {
  if (p.user === undefined && p.domain === undefined && p.name === undefined) return '*';
  return `${p.user ?? '*'}@${p.domain ?? '*'}:${p.name ?? '*'}`;
}

/** [literal parts, weight]; compare lexicographically. */
export function specificity(p: ParsedPattern): [number, number] {
  let literals = 0;
  let weight = 0;
  for (const part of ['user', 'domain', 'name'] as const) {
    if (p[part] !== undefined) {
      literals++;
      weight += WEIGHT[part];
    }
  }
  return [literals, weight];
}

export function compareSpecificity(a: [number, number], b: [number, number]): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

export function patternMatches(p: ParsedPattern, id: AgentId): boolean {
  return (
    (p.user === undefined || p.user === id.user) &&
    (p.domain === undefined || p.domain === id.domain) &&
    (p.name === undefined || p.name === id.name)
  );
}

/**
 * Validates a rule list and returns it in canonical form (patterns canonical, sorted most
 * specific first — for display only; matching does not depend on order). Throws
 * `POLICY_INVALID` on a bad pattern, a non-integer or out-of-range budget, too many rules, or
 * two rules with the same canonical pattern (which would make the winner ambiguous).
 */
export function normalizeRules(rules: unknown): ContactRule[] {
  if (!Array.isArray(rules)) throw new QkmError('POLICY_INVALID', 'rules must be an array');
  if (rules.length > MAX_RULES) throw new QkmError('POLICY_INVALID', `at most ${MAX_RULES} rules`);
  const seen = new Set<string>();
  const out: Array<{ rule: ContactRule; spec: [number, number] }> = [];
  for (const r of rules as unknown[]) {
    if (typeof r !== 'object' || r === null)
      throw new QkmError('POLICY_INVALID', 'each rule must be {pattern, budget}');
    const { pattern, budget } = r as { pattern?: unknown; budget?: unknown };
    const parsed = parsePattern(pattern);
    if (
      typeof budget !== 'number' ||
      !Number.isSafeInteger(budget) ||
      budget < MIN_BUDGET ||
      budget > MAX_BUDGET
    )
      throw new QkmError(
        'POLICY_INVALID',
        `budget must be an integer from ${MIN_BUDGET} to ${MAX_BUDGET} (negative blocks)`,
      );
    const canonical = formatPattern(parsed);
    if (seen.has(canonical))
      throw new QkmError(
        'POLICY_INVALID',
        `pattern '${canonical}' appears twice; the winner would be ambiguous`,
      );
    seen.add(canonical);
    out.push({ rule: { pattern: canonical, budget }, spec: specificity(parsed) });
  }
  out.sort((a, b) => compareSpecificity(b.spec, a.spec) || (a.rule.pattern < b.rule.pattern ? -1 : 1));
  return out.map((o) => o.rule);
}

export interface RuleMatch {
  rule: ContactRule;
  specificity: [number, number];
}

/** The most specific rule matching `initiator`, or undefined (= no contact). */
export function matchRule(rules: readonly ContactRule[], initiator: AgentId | string): RuleMatch | undefined {
  const id = typeof initiator === 'string' ? parseAid(initiator) : initiator;
  let best: RuleMatch | undefined;
  for (const rule of rules) {
    const p = parsePattern(rule.pattern);
    if (!patternMatches(p, id)) continue;
    const spec = specificity(p);
    if (!best || compareSpecificity(spec, best.specificity) > 0) best = { rule, specificity: spec };
  }
  return best;
}

export type ContactOutcome = 'allowed' | 'blocked' | 'no-match' | 'budget-exhausted';

export interface RuleExplanation {
  pattern: string;
  budget: number;
  specificity: [number, number];
  matches: boolean;
  chosen: boolean;
  why: string;
}

/**
 * The decision for `initiator` given what it has already used this window, with one line per
 * rule saying why it did or did not decide.
 */
export function decide(
  rules: readonly ContactRule[],
  initiator: AgentId | string,
  used: number,
): { outcome: ContactOutcome; rule?: ContactRule; remaining: number; table: RuleExplanation[] } {
  const id = typeof initiator === 'string' ? parseAid(initiator) : initiator;
  const best = matchRule(rules, id);
  const table = rules.map((rule): RuleExplanation => {
    const p = parsePattern(rule.pattern);
    const spec = specificity(p);
    const matches = patternMatches(p, id);
    const chosen = best !== undefined && best.rule === rule;
    const why = !matches
      ? `does not match (${mismatch(p, id)})`
      : chosen
        ? rule.budget < 0
          ? 'most specific match; negative budget blocks'
          : `most specific match; budget ${rule.budget} per window`
        : `matches, but '${best?.rule.pattern}' is more specific`;
    return { pattern: rule.pattern, budget: rule.budget, specificity: spec, matches, chosen, why };
  });
  if (!best) return { outcome: 'no-match', remaining: 0, table };
  if (best.rule.budget < 0) return { outcome: 'blocked', rule: best.rule, remaining: 0, table };
  const remaining = Math.max(0, best.rule.budget - used);
  return { outcome: remaining > 0 ? 'allowed' : 'budget-exhausted', rule: best.rule, remaining, table };
}

function mismatch(p: ParsedPattern, id: AgentId): string {
  if (p.user !== undefined && p.user !== id.user) return 'user differs';
  if (p.domain !== undefined && p.domain !== id.domain) return 'domain differs';
  return 'name differs';
}

function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
