import { QkmError } from '../core/errors.js';
import type { RecordStore } from '../store/interface.js';
import { canonicalAid } from './aid.js';
import {
  type ContactOutcome,
  type ContactRule,
  type RuleExplanation,
  decide,
  normalizeRules,
} from './contact-policy.js';

/**
 * The contact policies of this node's governed agents and the budgets initiators have used.
 *
 * Budgets count one-time keys an initiator obtained from a responder in the current window.
 * Windows are fixed and aligned to the Unix epoch (`floor(now / window)`), so every node and
 * the Provider agree on when a window starts without sharing state. The count is persisted
 * before a grant is returned: a restart does not hand out a fresh budget. Counting is a
 * compare-and-swap on the budget record (`RecordStore.update`), so processes sharing one store
 * (several Providers on one etcd cluster) together never grant more than the budget.
 */

export interface StoredContactPolicy {
  aid: string;
  rules: ContactRule[];
  updated: string;
}

export interface BudgetRecord {
  /** Window start, ms since the epoch. */
  windowStart: number;
  used: number;
}

export interface ContactDecision {
  responder: string;
  initiator: string;
  outcome: ContactOutcome;
  rule?: ContactRule;
  used: number;
  remaining: number;
  window: { seconds: number; start: string; end: string };
  table: RuleExplanation[];
}

export interface ContactPoliciesOptions {
  policies: RecordStore<StoredContactPolicy>;
  budgets: RecordStore<BudgetRecord>;
  /** Length of a budget window (default one day). */
  windowSeconds?: number;
  /** Whether `aid` belongs to an agent of this node (policies exist only for those). */
  isLocalAid: (aid: string) => Promise<boolean>;
  now?: () => number;
}

export const DEFAULT_BUDGET_WINDOW_SECONDS = 86_400;

const OUTCOME_ERROR = {
  blocked: 'CONTACT_BLOCKED',
  'no-match': 'CONTACT_NO_RULE',
  'budget-exhausted': 'CONTACT_BUDGET_EXHAUSTED',
} as const;

export class ContactPolicies {
  readonly windowSeconds: number;
  private readonly now: () => number;

  constructor(private readonly opts: ContactPoliciesOptions) {
    this.windowSeconds = opts.windowSeconds ?? DEFAULT_BUDGET_WINDOW_SECONDS;
    if (!Number.isSafeInteger(this.windowSeconds) || this.windowSeconds < 1)
      throw new RangeError('budget window must be a positive whole number of seconds');
    this.now = opts.now ?? Date.now;
  }

  async set(aid: string, rules: unknown): Promise<StoredContactPolicy> {
    const canonical = canonicalAid(aid);
    if (!(await this.opts.isLocalAid(canonical)))
      throw new QkmError('AID_NOT_FOUND', `no agent of this node has the id '${canonical}'`);
    const policy: StoredContactPolicy = {
      aid: canonical,
      rules: normalizeRules(rules),
      updated: new Date(this.now()).toISOString(),
    };
    await this.opts.policies.put(canonical, policy);
    return policy;
  }

  /** The policy of `aid`; an agent without one has no rules (nobody may contact it). */
  async get(aid: string): Promise<StoredContactPolicy> {
    const canonical = canonicalAid(aid);
    // Both reads at once (a resumption's latency); the agent's existence is judged first.
    const [local, policy] = await Promise.all([
      this.opts.isLocalAid(canonical),
      this.opts.policies.get(canonical),
    ]);
    if (!local) throw new QkmError('AID_NOT_FOUND', `no agent of this node has the id '${canonical}'`);
    return policy ?? { aid: canonical, rules: [], updated: '' };
  }

  /** What `initiator` contacting `responder` would get now, without consuming anything. */
  async explain(responder: string, initiator: string): Promise<ContactDecision> {
    const policy = await this.get(responder);
    const init = canonicalAid(initiator);
    const used = await this.usedNow(policy.aid, init);
    return this.decision(policy, init, used);
  }

  /**
   * Whether the policy admits `initiator` at all, budgets aside (a resumption spends the
   * token's quota, not the budget): throws CONTACT_NO_RULE or CONTACT_BLOCKED. One read.
   */
  async admits(responder: string, initiator: string): Promise<void> {
    const policy = await this.get(responder);
    const d = this.decision(policy, canonicalAid(initiator), 0);
    if (d.outcome === 'blocked' || d.outcome === 'no-match') throw refusalError(d);
  }

  /**
   * Throws what `consume` would (CONTACT_NO_RULE, CONTACT_BLOCKED, CONTACT_BUDGET_EXHAUSTED)
   * without consuming anything; resolves with the decision when one unit would be granted.
   */
  async check(responder: string, initiator: string): Promise<ContactDecision> {
    const d = await this.explain(responder, initiator);
    if (d.outcome !== 'allowed') throw refusalError(d);
    return d;
  }

  /**
   * Grants one unit of budget (one OTK / one contact) to `initiator`, or throws
   * `CONTACT_NO_RULE`, `CONTACT_BLOCKED` or `CONTACT_BUDGET_EXHAUSTED` (nothing consumed then).
   * The new count is durable before this resolves.
   */
  async consume(responder: string, initiator: string): Promise<ContactDecision> {
    const policy = await this.get(responder);
    const init = canonicalAid(initiator);
    const start = this.windowStart();
    let granted: ContactDecision | undefined;
    // Pure in `cur` (update may call it again after a conflict): the last call's decision holds.
    const rec = await this.opts.budgets.update(budgetKey(policy.aid, init), (cur) => {
      // A record of a LATER window (another process whose clock is a little ahead moved on
      // first) is kept, not reset: resetting it would hand that window's budget out again.
      const window = cur && cur.windowStart > start ? cur.windowStart : start;
      const used = cur && cur.windowStart === window ? cur.used : 0;
      const d = this.decision(policy, init, used);
      if (d.outcome !== 'allowed') throw refusalError(d);
      granted = d;
      return { windowStart: window, used: used + 1 };
    });
    const d = granted as ContactDecision;
    return { ...d, used: rec.used, remaining: d.remaining - 1 };
  }

  /**
   * Gives back the unit a `consume` granted when the grant could not be served (the Provider
   * had no prekey left): one compare-and-swap decrement, only within the same window. Best
   * effort by design: a refund that fails leaves the count one too high — the safe direction.
   */
  async refund(granted: ContactDecision): Promise<void> {
    const start = Date.parse(granted.window.start);
    await this.opts.budgets
      .update(budgetKey(granted.responder, granted.initiator), (cur) => {
        if (!cur || cur.windowStart !== start || cur.used < 1) throw NOTHING_TO_REFUND;
        return { windowStart: start, used: cur.used - 1 };
      })
      .catch((err: unknown) => {
        if (err !== NOTHING_TO_REFUND) throw err;
      });
  }

  private async usedNow(responder: string, initiator: string): Promise<number> {
    const rec = await this.opts.budgets.get(budgetKey(responder, initiator));
    return rec && rec.windowStart === this.windowStart() ? rec.used : 0;
  }

  private windowStart(): number {
    const w = this.windowSeconds * 1000;
    return Math.floor(this.now() / w) * w;
  }

  private decision(policy: StoredContactPolicy, initiator: string, used: number): ContactDecision {
    const d = decide(policy.rules, initiator, used);
    const start = this.windowStart();
    return {
      responder: policy.aid,
      initiator,
      outcome: d.outcome,
      ...(d.rule ? { rule: d.rule } : {}),
      used,
      remaining: d.remaining,
      window: {
        seconds: this.windowSeconds,
        start: new Date(start).toISOString(),
        end: new Date(start + this.windowSeconds * 1000).toISOString(),
      },
      table: d.table,
    };
  }
}

/** Aborts a refund's update without writing (the window moved on, or nothing was counted). */
const NOTHING_TO_REFUND = Symbol('nothing to refund');

/** A space cannot occur in any part of an agent id, so it separates the pair unambiguously. */
function budgetKey(responder: string, initiator: string): string {
  return `${responder} ${initiator}`;
}

function refusalError(d: ContactDecision): QkmError {
  const outcome = d.outcome as Exclude<ContactDecision['outcome'], 'allowed'>;
  return new QkmError(OUTCOME_ERROR[outcome], refusal(d), {
    details: { outcome: d.outcome, rule: d.rule?.pattern ?? null, window: d.window },
  });
}

function refusal(d: ContactDecision): string {
  switch (d.outcome) {
    case 'blocked':
      return `'${d.initiator}' may not contact '${d.responder}': rule '${d.rule?.pattern}' blocks it`;
    case 'no-match':
      return `'${d.initiator}' may not contact '${d.responder}': no rule of its contact policy matches`;
    default:
      return `'${d.initiator}' has used its budget of ${d.rule?.budget} for '${d.responder}' until ${d.window.end}`;
  }
}
