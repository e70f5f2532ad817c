import { QkmError } from '../core/errors.js';
import { canonicalAid } from '../governance/aid.js';
import {
  type BudgetRecord,
  type ContactDecision,
  ContactPolicies,
  type StoredContactPolicy,
} from '../governance/contacts.js';
import { type SignedPrekey, verifyPrekey } from '../governance/prekeys.js';
import { fromBase64url } from '../session/encoding.js';
import type { StorageBackend } from '../store/interface.js';
import { KeyedMutex } from '../store/keyed-mutex.js';

/**
 * The Provider's directory (SAGA's Provider; issue #12 layer 4, logic): which node hosts which
 * governed agent at which endpoint, each agent's contact policy, and its published prekeys.
 * Built on `StorageBackend` record stores only, so it runs on LevelDB or on etcd alike.
 *
 * - Nodes are enrolled by the Provider's administrator (their ML-DSA-65 public key); only an
 *   enrolled node can register agents, and only under its own node id — registration is
 *   admin-gated, which is what stops Sybil registrations.
 * - An agent id belongs to one node; another node claiming it gets AID_EXISTS.
 * - Prekeys are accepted only if signed by the registering node's key and bound to the agent.
 * - `bundle` enforces the responder's contact policy (its budget counts prekeys handed out)
 *   and hands out exactly one OTK per request — or, when none is left, the last-resort prekey,
 *   flagged. The responder node enforces its own policy again when it accepts.
 */

export interface EnrolledNode {
  node_id: string;
  ml_dsa_65_public_key: string;
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

const ENDPOINT_RE = /^https?:\/\/[^\s/?#]+(?::\d{1,5})?(?:\/[^\s?#]*)?$/;
export const MAX_PREKEY_UPLOAD = 100;

export class Directory {
  private readonly nodes;
  private readonly agents;
  private readonly otks;
  private readonly lastResorts;
  readonly contacts: ContactPolicies;
  private readonly lock = new KeyedMutex();
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

  /** Administrator: enrol a node by its identity key. */
  async enroll(nodeId: string, dsaPublicKey: string, label?: string): Promise<EnrolledNode> {
    if (!/^[0-9a-f]{32}$/.test(nodeId))
      throw new QkmError('INVALID_PARAMETER', 'node id must be 32 hex digits');
    let pk: Uint8Array;
    try {
      pk = fromBase64url(dsaPublicKey, 'ml_dsa_65_public_key');
    } catch {
      throw new QkmError('INVALID_PARAMETER', 'ml_dsa_65_public_key must be base64url');
    }
    if (pk.length !== 1952)
      throw new QkmError('INVALID_PARAMETER', 'ml_dsa_65_public_key is not an ML-DSA-65 key');
    const rec: EnrolledNode = {
      node_id: nodeId,
      ml_dsa_65_public_key: dsaPublicKey,
      ...(label ? { label } : {}),
      enrolled: new Date(this.now()).toISOString(),
    };
    await this.nodes.put(nodeId, rec);
    return rec;
  }

  private async node(nodeId: string): Promise<EnrolledNode> {
    const n = await this.nodes.get(nodeId);
    if (!n) throw new QkmError('NODE_NOT_ENROLLED', 'this node is not enrolled with the Provider');
    return n;
  }

  /** Node `registrant` registers (or moves the endpoint of) one of its agents. */
  async registerAgent(registrant: string, aid: string, endpoint: string): Promise<DirectoryAgent> {
    await this.node(registrant);
    const canonical = canonicalAid(aid);
    if (typeof endpoint !== 'string' || endpoint.length > 512 || !ENDPOINT_RE.test(endpoint))
      throw new QkmError('INVALID_PARAMETER', 'endpoint must be an http(s) URL');
    return this.lock.run(canonical, async () => {
      const existing = await this.agents.get(canonical);
      if (existing && existing.node_id !== registrant)
        throw new QkmError('AID_EXISTS', `the agent id '${canonical}' is registered by another node`);
      const rec: DirectoryAgent = {
        aid: canonical,
        node_id: registrant,
        endpoint,
        registered: existing?.registered ?? new Date(this.now()).toISOString(),
      };
      await this.agents.put(canonical, rec);
      return rec;
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
    await this.lock.run(agent.aid, async () => {
      for (const p of verified) {
        if (p.kind === 'last-resort') {
          await this.lastResorts.put(agent.aid, p);
          lastResort = true;
        } else {
          // Keyed by creation time so the oldest OTK goes first; a re-upload of one is a no-op.
          await this.otks.putIfAbsent(`${agent.aid} ${p.created} ${p.id}`, p);
        }
      }
    });
    return { otks: (await this.otks.entries(`${agent.aid} `)).length, lastResort };
  }

  /**
   * One responder bundle for `initiator`: checks the responder's policy and that a prekey is
   * available, then (under the responder's lock) counts one unit of budget and removes the OTK
   * it hands out. A refusal consumes neither budget nor prekeys.
   */
  async bundle(responder: string, initiator: string): Promise<Bundle> {
    const r = canonicalAid(responder);
    const i = canonicalAid(initiator);
    const agent = await this.agents.get(r);
    if (!agent) throw new QkmError('AID_NOT_FOUND', `no agent '${r}' is registered`);
    const node = await this.node(agent.node_id);
    return this.lock.run(r, async () => {
      const now = this.now();
      let chosen: [string, SignedPrekey] | undefined;
      for (const entry of await this.otks.entries(`${r} `)) {
        if (now < Date.parse(entry[1].expires)) {
          chosen = entry;
          break;
        }
        await this.otks.del(entry[0]); // expired: useless to anyone
      }
      const lr = chosen ? undefined : await this.lastResorts.get(r);
      const lastResortUsable = lr !== undefined && now < Date.parse(lr.expires);
      if (!chosen && !lastResortUsable)
        throw new QkmError('PREKEYS_EXHAUSTED', `'${r}' has no prekey left; its node must publish more`);
      const d = await this.contacts.consume(r, i);
      if (chosen) await this.otks.del(chosen[0]);
      const prekey = chosen ? chosen[1] : (lr as SignedPrekey);
      return {
        agent,
        node,
        prekey,
        lastResort: !chosen,
        decision: {
          outcome: d.outcome,
          ...(d.rule ? { rule: d.rule } : {}),
          used: d.used,
          remaining: d.remaining,
          window: d.window,
        },
      };
    });
  }

  async remainingOtks(aid: string): Promise<number> {
    return (await this.otks.entries(`${canonicalAid(aid)} `)).length;
  }
}
