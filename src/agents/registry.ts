import { hash, randomBytes } from 'node:crypto';
import { QkmError } from '../core/errors.js';
import type { AuditSink } from '../audit/types.js';
import type { RecordStore } from '../store/interface.js';
import { canonicalAid } from '../governance/aid.js';

/**
 * Agents are the callers of the API. Each has a bearer token, stored only as its SHA-256 hash
 * (tokens are 256-bit random values, so a fast hash is enough: there is nothing to brute-force),
 * and a set of scopes. The plaintext token is shown exactly once, when it is issued.
 *
 * Every change (add, rotate, revoke) is an audit record written here, by the registry that makes
 * it, not by the route that asked: no caller can change an agent without leaving a record.
 * The change is stored first and then recorded; should the record fail, the call fails.
 */

export const SCOPES = ['entropy', 'keys', 'sessions', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface AgentRecord {
  name: string;
  tokenHash: string;
  scopes: Scope[];
  created: string;
  revoked?: string;
  /** Governed agent id `user@domain:name` (issue #12), canonical; unique among live agents. */
  aid?: string;
}

export interface AgentInfo {
  name: string;
  scopes: Scope[];
  created: string;
  revoked?: string;
  /** Governed agent id `user@domain:name` (issue #12), canonical; unique among live agents. */
  aid?: string;
}

const TOKEN_PREFIX = 'qkm_';
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function hashToken(token: string): string {
  return hash('sha256', token, 'hex');
}

function newToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export class AgentRegistry {
  private readonly byHash = new Map<string, AgentRecord>();
  /** Governed id → agent name of the live agents: `byAid` is a map lookup, not a scan. */
  private readonly aidIndex = new Map<string, string>();

  private constructor(
    private readonly records: RecordStore<AgentRecord>,
    private readonly audit: AuditSink,
  ) {}

  static async open(records: RecordStore<AgentRecord>, audit: AuditSink): Promise<AgentRegistry> {
    const registry = new AgentRegistry(records, audit);
    for (const [, rec] of await records.entries()) {
      if (rec.revoked) continue;
      registry.byHash.set(rec.tokenHash, rec);
      if (rec.aid) registry.aidIndex.set(rec.aid, rec.name);
    }
    return registry;
  }

  /** Issues a new agent; returns its token (the only time it exists in plaintext). */
  async add(
    name: string,
    scopes: Scope[] = ['entropy', 'keys', 'sessions'],
    actor = 'system',
    aidInput?: string,
  ): Promise<{ agent: AgentInfo; token: string }> {
    if (!NAME_RE.test(name)) {
      throw new QkmError(
        'INVALID_PARAMETER',
        'agent name must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)',
      );
    }
    const existing = await this.records.get(name);
    if (existing && !existing.revoked) throw new QkmError('AGENT_EXISTS', `agent '${name}' already exists`);
    const aid = aidInput === undefined ? undefined : canonicalAid(aidInput);
    if (aid !== undefined && (await this.byAid(aid)))
      throw new QkmError('AID_EXISTS', `another agent of this node already has the id '${aid}'`);
    const token = newToken();
    const rec: AgentRecord = {
      name,
      tokenHash: hashToken(token),
      scopes: [...new Set(scopes)],
      created: new Date().toISOString(),
      ...(aid ? { aid } : {}),
    };
    await this.records.put(name, rec);
    if (existing) this.byHash.delete(existing.tokenHash);
    this.byHash.set(rec.tokenHash, rec);
    if (aid) this.aidIndex.set(aid, name);
    await this.audit.append({
      type: 'agent.created',
      actor,
      details: {
        name,
        scopes: rec.scopes,
        ...(aid ? { aid } : {}),
        ...(existing ? { replaced_revoked: true } : {}),
      },
    });
    return { agent: info(rec), token };
  }

  /** Replaces the token of an existing agent (e.g. when its token file was lost). */
  async rotate(name: string, actor = 'system'): Promise<string> {
    const rec = await this.records.get(name);
    if (!rec || rec.revoked) throw new QkmError('AGENT_NOT_FOUND', `no agent '${name}'`);
    const token = newToken();
    const next = { ...rec, tokenHash: hashToken(token) };
    await this.records.put(name, next);
    this.byHash.delete(rec.tokenHash);
    this.byHash.set(next.tokenHash, next);
    await this.audit.append({ type: 'agent.token_rotated', actor, details: { name } });
    return token;
  }

  /**
   * Revokes an agent. Refuses (LAST_ADMIN) to revoke the last active agent with the `admin`
   * scope unless `force`: without one nobody can manage agents over the API any more (recovery:
   * README, "Admin token recovery").
   */
  async revoke(name: string, opts: { actor?: string; force?: boolean } = {}): Promise<AgentInfo> {
    const rec = await this.records.get(name);
    if (!rec || rec.revoked) throw new QkmError('AGENT_NOT_FOUND', `no agent '${name}'`);
    if (rec.scopes.includes('admin') && !opts.force) {
      const admins = (await this.records.entries()).filter(
        ([, r]) => !r.revoked && r.scopes.includes('admin'),
      );
      if (admins.length <= 1) {
        throw new QkmError(
          'LAST_ADMIN',
          `'${name}' is the last agent with the admin scope; revoke with force to do it anyway`,
        );
      }
    }
    const next = { ...rec, revoked: new Date().toISOString() };
    await this.records.put(name, next);
    this.byHash.delete(rec.tokenHash);
    if (rec.aid && this.aidIndex.get(rec.aid) === name) this.aidIndex.delete(rec.aid);
    await this.audit.append({
      type: 'agent.revoked',
      actor: opts.actor ?? 'system',
      details: { name, scopes: rec.scopes, ...(opts.force ? { forced: true } : {}) },
    });
    return info(next);
  }

  async list(): Promise<AgentInfo[]> {
    return (await this.records.entries()).map(([, rec]) => info(rec));
  }

  async exists(name: string): Promise<boolean> {
    const rec = await this.records.get(name);
    return rec !== undefined && !rec.revoked;
  }

  /** The live agent with governed id `aid` (canonical form), or undefined. */
  async byAid(aid: string): Promise<AgentInfo | undefined> {
    const name = this.aidIndex.get(aid);
    if (name === undefined) return undefined;
    // The record, not the index, has the last word (the index is this process's view).
    const rec = await this.records.get(name);
    return rec && !rec.revoked && rec.aid === aid ? info(rec) : undefined;
  }

  /** The agent a presented token belongs to, or undefined. */
  authenticate(token: string): AgentInfo | undefined {
    // Lookup by the SHA-256 of the presented token: what a timing side channel could reveal is
    // about the hash, which says nothing useful about any valid token.
    return this.authenticateHash(hashToken(token));
  }

  /**
   * The live agent whose current token has this hash (`hashToken`), or undefined: what a
   * status-page login keeps instead of the token, so rotating or revoking ends the login too.
   */
  authenticateHash(tokenHash: string): AgentInfo | undefined {
    const rec = this.byHash.get(tokenHash);
    return rec ? info(rec) : undefined;
  }
}

function info(rec: AgentRecord): AgentInfo {
  return {
    name: rec.name,
    scopes: rec.scopes,
    created: rec.created,
    ...(rec.revoked ? { revoked: rec.revoked } : {}),
    ...(rec.aid ? { aid: rec.aid } : {}),
  };
}
