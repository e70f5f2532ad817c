import { QkmError } from '../core/errors.js';
import { canonicalAid, isValidDomain, parseAid } from '../governance/aid.js';
import {
  type BudgetRecord,
  type ContactDecision,
  ContactPolicies,
  type StoredContactPolicy,
} from '../governance/contacts.js';
import { type SignedPrekey, verifyPrekey } from '../governance/prekeys.js';
import { fromBase64url } from '../session/encoding.js';
import { type IdentityBundle, verifyBundle } from '../session/identity.js';
import type { StorageBackend } from '../store/interface.js';

/**
 * The Provider's directory (SAGA's Provider; issue #12 layer 4, logic): which node hosts which
 * governed agent at which endpoint, each agent's contact policy, and its published prekeys.
 * Built on `StorageBackend` record stores only, so it runs on LevelDB or on etcd alike.
 *
 * - Nodes are enrolled by the Provider's administrator (their self-signed identity bundle: the
 *   ML-DSA-65 key the node signs with, the ML-KEM-768 key initiators encapsulate to); only an
 *   enrolled node can register agents, and only under its own node id — registration is
 *   admin-gated, which is what stops Sybil registrations.
 * - An agent id belongs to one node; another node claiming it gets AID_EXISTS.
 * - Prekeys are accepted only if signed by the registering node's key and bound to the agent.
 * - `bundle` enforces the responder's contact policy (its budget counts prekeys handed out)
 *   and hands out exactly one OTK per request — or, when none is left, the last-resort prekey,
 *   flagged. The responder node enforces its own policy again when it accepts. When the request
 *   comes from a node, the initiator must be one of that node's agents: a node cannot spend
 *   another node's agent's budget nor borrow its standing in a policy.
 *
 * Concurrency: every write to shared state is one atomic record-store operation — an OTK is
 * handed out by `take` (one winner), a budget unit by a compare-and-swap increment that refuses
 * past the budget, an agent id claimed by a compare-and-swap on its record — so several
 * Provider processes may serve one etcd store at once (LevelDB admits one process anyway).
 */

export interface EnrolledNode {
  node_id: string;
  ml_dsa_65_public_key: string;
  /** The node's self-signed identity bundle (verified at enrolment; region, KEM key). */
  identity: IdentityBundle;
  /**
   * The domains whose agent ids this node may register (`user@<domain>:name`), as the
   * administrator vouched at enrolment; absent: any domain.
   */
  domains?: string[];
  label?: string;
  enrolled: string;
}

export interface DirectoryAgent {
  aid: string;
  node_id: string;
  /** Base URL of the node's API that accepts handshakes for this agent. */
  endpoint: string;
  registered: string;
}

export interface Bundle {
  agent: DirectoryAgent;
  node: EnrolledNode;
  prekey: SignedPrekey;
  lastResort: boolean;
  decision: Pick<ContactDecision, 'outcome' | 'used' | 'remaining' | 'window'> & {
    rule?: { pattern: string; budget: number };
  };
}

export interface DirectoryOptions {
  store: StorageBackend;
  budgetWindowSeconds?: number;
  now?: () => number;
}

function checkDomains(domains: unknown): string[] {
  if (!Array.isArray(domains) || domains.length < 1 || domains.length > 64)
    throw new QkmError('INVALID_PARAMETER', 'domains is a list of 1 to 64 DNS names');
  const out = domains.map((d) => (typeof d === 'string' ? d.toLowerCase() : ''));
  for (const d of out)
    if (!isValidDomain(d)) throw new QkmError('INVALID_PARAMETER', `'${d}' is not a DNS name`);
  return [...new Set(out)].sort();
}

const ENDPOINT_RE = /^https?:\/\/[^\s/?#]+(?::\d{1,5})?(?:\/[^\s?#]*)?$/;
export const MAX_PREKEY_UPLOAD = 100;
/** OTKs read per page after a lost race: a few, so racing requests spread over several. */
const OTK_PAGE = 8;

export class Directory {
  private readonly nodes;
  private readonly agents;
  private readonly otks;
  private readonly lastResorts;
  readonly contacts: ContactPolicies;
  private readonly now: () => number;

  constructor(o: DirectoryOptions) {
    this.now = o.now ?? Date.now;
    this.nodes = o.store.records<EnrolledNode>('provider-nodes');
    this.agents = o.store.records<DirectoryAgent>('provider-agents');
    this.otks = o.store.records<SignedPrekey>('provider-otks');
    this.lastResorts = o.store.records<SignedPrekey>('provider-last-resort');
    this.contacts = new ContactPolicies({
      policies: o.store.records<StoredContactPolicy>('provider-policies'),
      budgets: o.store.records<BudgetRecord>('provider-budgets'),
      ...(o.budgetWindowSeconds ? { windowSeconds: o.budgetWindowSeconds } : {}),
      isLocalAid: async (aid) => (await this.agents.get(aid)) !== undefined,
      now: this.now,
    });
  }

  /**
   * Administrator: enrol a node by its self-signed identity bundle (BUNDLE_INVALID otherwise).
   * Re-enrolling the same node replaces its label and bundle and keeps its agents.
   */
  async enroll(identity: unknown, label?: string, domains?: string[]): Promise<EnrolledNode> {
    const v = verifyBundle(identity);
    if (label !== undefined && (typeof label !== 'string' || label.length > 128))
      throw new QkmError('INVALID_PARAMETER', 'a node label is a string of at most 128 characters');
    const allowed = domains === undefined ? undefined : checkDomains(domains);
    const at = new Date(this.now()).toISOString();
    return this.nodes.update(v.nodeId, (previous) => ({
      node_id: v.nodeId,
      ml_dsa_65_public_key: v.bundle.ml_dsa_65_public_key,
      identity: v.bundle,
      ...(label ? { label } : {}),
      ...(allowed ? { domains: allowed } : {}),
      enrolled: previous?.enrolled ?? at,
    }));
  }

  /**
   * Administrator: remove a node (compromised, retired). Its requests are refused from now on
   * (NODE_NOT_ENROLLED) and no bundle of its agents is handed out; their ids stay reserved
   * until the node is enrolled again (the ids, policies and stock are kept for that).
   */
  async unenroll(nodeId: string): Promise<boolean> {
    if (!(await this.enrolled(nodeId))) return false;
    await this.nodes.del(nodeId);
    return true;
  }

  /** The enrolled node `nodeId`, or undefined (request authentication looks nodes up here). */
  async enrolled(nodeId: string): Promise<EnrolledNode | undefined> {
    return /^[0-9a-f]{32}$/.test(nodeId) ? this.nodes.get(nodeId) : undefined;
  }

  async listNodes(): Promise<EnrolledNode[]> {
    return (await this.nodes.entries()).map(([, n]) => n);
  }

  /** Counts for the administrator's status view (a scan: admin-only, not on the request path). */
  async stats(): Promise<{ nodes: number; agents: number; otks: number; lastResort: number }> {
    return {
      nodes: (await this.nodes.entries()).length,
      agents: (await this.agents.entries()).length,
      otks: (await this.otks.entries()).length,
      lastResort: (await this.lastResorts.entries()).length,
    };
  }

  private async node(nodeId: string): Promise<EnrolledNode> {
    const n = await this.nodes.get(nodeId);
    if (!n) throw new QkmError('NODE_NOT_ENROLLED', 'this node is not enrolled with the Provider');
    return n;
  }

  /** Node `registrant` registers (or moves the endpoint of) one of its agents. */
  async registerAgent(registrant: string, aid: string, endpoint: string): Promise<DirectoryAgent> {
    const node = await this.node(registrant);
    const canonical = canonicalAid(aid);
    const domain = parseAid(canonical).domain;
    if (node.domains && !node.domains.includes(domain))
      throw new QkmError('FORBIDDEN', `this node may not register agent ids of the domain '${domain}'`);
    if (typeof endpoint !== 'string' || endpoint.length > 512 || !ENDPOINT_RE.test(endpoint))
      throw new QkmError('INVALID_PARAMETER', 'endpoint must be an http(s) URL');
    const at = new Date(this.now()).toISOString();
    // One compare-and-swap: of two nodes claiming a new id at once (through any Provider), one wins.
    return this.agents.update(canonical, (existing) => {
      if (existing && existing.node_id !== registrant)
        throw new QkmError('AID_EXISTS', `the agent id '${canonical}' is registered by another node`);
      return { aid: canonical, node_id: registrant, endpoint, registered: existing?.registered ?? at };
    });
  }

  private async owned(
    registrant: string,
    aid: string,
  ): Promise<{ agent: DirectoryAgent; node: EnrolledNode }> {
    const node = await this.node(registrant);
    const canonical = canonicalAid(aid);
    const agent = await this.agents.get(canonical);
    if (!agent) throw new QkmError('AID_NOT_FOUND', `no agent '${canonical}' is registered`);
    if (agent.node_id !== registrant)
      throw new QkmError('FORBIDDEN', `'${canonical}' belongs to another node`);
    return { agent, node };
  }

  async setPolicy(registrant: string, aid: string, rules: unknown): Promise<StoredContactPolicy> {
    const { agent } = await this.owned(registrant, aid);
    return this.contacts.set(agent.aid, rules);
  }

  /** Verifies every prekey against the registrant's key before storing any (all or nothing). */
  async uploadPrekeys(
    registrant: string,
    aid: string,
    prekeys: unknown[],
  ): Promise<{ otks: number; lastResort: boolean }> {
    const { agent, node } = await this.owned(registrant, aid);
    if (!Array.isArray(prekeys) || prekeys.length < 1 || prekeys.length > MAX_PREKEY_UPLOAD)
      throw new QkmError('INVALID_PARAMETER', `upload 1 to ${MAX_PREKEY_UPLOAD} prekeys at a time`);
    const pk = fromBase64url(node.ml_dsa_65_public_key, 'ml_dsa_65_public_key');
    const verified = prekeys.map(
      (p) => verifyPrekey(p, pk, { aid: agent.aid, nodeId: node.node_id }, this.now()).prekey,
    );
    let lastResort = false;
    // No lock: each write stands alone (a bundle taking an OTK of this batch meanwhile is fine).
    for (const p of verified) {
      if (p.kind === 'last-resort') {
        await this.lastResorts.put(agent.aid, p);
        lastResort = true;
      } else {
        // Keyed by creation time so the oldest OTK goes first; a re-upload of one is a no-op.
        await this.otks.putIfAbsent(`${agent.aid} ${p.created} ${p.id}`, p);
      }
    }
    return { otks: (await this.otks.entries(`${agent.aid} `)).length, lastResort };
  }

  /**
   * One responder bundle for `initiator`: grants one unit of the responder's budget (a
   * compare-and-swap that refuses past it), then takes the oldest live OTK (an atomic take: of
   * racing requests, through this Provider or another on the same store, one gets it) or, with
   * none left, the last-resort prekey. A refusal consumes neither budget nor prekeys: with no
   * prekey at all the unit is given back.
   */
  async bundle(responder: string, initiator: string, opts: { requester?: string } = {}): Promise<Bundle> {
    const r = canonicalAid(responder);
    const i = canonicalAid(initiator);
    if (opts.requester !== undefined) {
      await this.node(opts.requester);
      const own = await this.agents.get(i);
      if (!own || own.node_id !== opts.requester)
        throw new QkmError('FORBIDDEN', `the initiator '${i}' is not registered by the requesting node`);
    }
    const agent = await this.agents.get(r);
    if (!agent) throw new QkmError('AID_NOT_FOUND', `no agent '${r}' is registered`);
    const node = await this.node(agent.node_id);
    // Budget first: an initiator refused by the policy never moves the responder's stock, and
    // learns nothing about it.
    const d = await this.contacts.consume(r, i);
    let prekey: SignedPrekey | undefined;
    let lastResort = false;
    try {
      const now = this.now();
      prekey = await this.takeOtk(r, now);
      if (!prekey) {
        const lr = await this.lastResorts.get(r);
        if (lr !== undefined && now < Date.parse(lr.expires)) {
          prekey = lr;
          lastResort = true;
        }
      }
    } catch (err) {
      await this.contacts.refund(d).catch(() => undefined);
      throw err;
    }
    if (!prekey) {
      await this.contacts.refund(d).catch(() => undefined);
      throw new QkmError('PREKEYS_EXHAUSTED', `'${r}' has no prekey left; its node must publish more`);
    }
    return {
      agent,
      node,
      prekey,
      lastResort,
      decision: {
        outcome: d.outcome,
        ...(d.rule ? { rule: d.rule } : {}),
        used: d.used,
        remaining: d.remaining,
        window: d.window,
      },
    };
  }

  /**
   * Takes the oldest OTK of `aid` still live at `now`, or undefined when none is left. Reads
   * the oldest record (one record per bundle however many are stocked) and takes it; after a
   * lost race (another request, maybe at another Provider, took it first) reads a short page,
   * so the next attempt does not race for the same one again. Expired OTKs are taken and
   * dropped (useless to anyone).
   */
  private async takeOtk(aid: string, now: number): Promise<SignedPrekey | undefined> {
    let limit = 1;
    for (;;) {
      const page = await this.otks.entries(`${aid} `, { limit });
      if (page.length === 0) return undefined;
      for (const [key] of page) {
        const p = await this.otks.take(key);
        if (p === undefined) limit = OTK_PAGE;
        else if (now < Date.parse(p.expires)) return p;
      }
    }
  }

  /** What node `registrant` has stocked for its agent `aid` (it replenishes from this). */
  async prekeyStock(
    registrant: string,
    aid: string,
  ): Promise<{ otks: number; lastResortExpires: string | null }> {
    const { agent } = await this.owned(registrant, aid);
    const lr = await this.lastResorts.get(agent.aid);
    return { otks: await this.remainingOtks(agent.aid), lastResortExpires: lr?.expires ?? null };
  }

  async remainingOtks(aid: string): Promise<number> {
    return (await this.otks.entries(`${canonicalAid(aid)} `)).length;
  }
}
