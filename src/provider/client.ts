import { randomBytes } from 'node:crypto';
import { ERROR_CATALOGUE, type ErrorCode, QkmError, isQkmError } from '../core/errors.js';
import { canonicalAid } from '../governance/aid.js';
import type { ContactRule } from '../governance/contact-policy.js';
import { type SignedPrekey, verifyPrekey } from '../governance/prekeys.js';
import { fromBase64url, toBase64url } from '../session/encoding.js';
import { type VerifiedBundle, verifyBundle } from '../session/identity.js';
import type { Bundle, DirectoryAgent, EnrolledNode } from './directory.js';
import { HEADER, signRequest, verifyResponse } from './wire.js';

/**
 * The node's (and the administrator's) client of the Provider. Every answer must carry a
 * Provider signature that verifies against the pinned key and is bound to this request's nonce;
 * anything else is PROVIDER_RESPONSE_INVALID and its body is never used. Errors the Provider
 * gives are re-thrown as QkmError with the Provider's catalogue code (CONTACT_BLOCKED, …).
 *
 * `bundle()` goes further: the responder's identity bundle must be self-signed and name the
 * node that hosts the agent, and the prekey must be signed by that node and bound to the agent.
 * So a Bundle it returns is one the Provider vouched for and the responder node signed.
 */

export interface ProviderInfo {
  provider_id: string;
  ml_dsa_65_public_key: string;
  created: string;
  version: string;
}

export interface ProviderClientOptions {
  url: string;
  /** The Provider's ML-DSA-65 public key (base64url or bytes): pinned. */
  publicKey: string | Uint8Array;
  /** This node's identity, for the signed node routes. */
  signer?: { nodeId: string; signing: { secretKey: Uint8Array } };
  /** The Provider administrator token, for the admin routes. */
  adminToken?: string;
  timeoutMs?: number;
  now?: () => number;
}

/** Something that hands out responder bundles (the Provider; tests may give a fake). */
export interface BundleSource {
  /** One bundle of `responder` for this node's agent `initiator`: exactly one prekey, verified. */
  bundle(responder: string, initiator: string): Promise<Bundle>;
}

type Caller = 'public' | 'admin' | 'node';

export class ProviderClient implements BundleSource {
  private readonly base: URL;
  private readonly pinned: Uint8Array;
  private readonly now: () => number;
  private readonly nodeCache = new Map<string, VerifiedBundle>();

  constructor(private readonly o: ProviderClientOptions) {
    this.base = new URL(o.url);
    this.pinned = typeof o.publicKey === 'string' ? fromBase64url(o.publicKey, 'publicKey') : o.publicKey;
    if (this.pinned.length !== 1952)
      throw new RangeError('the pinned Provider key must be an ML-DSA-65 public key');
    this.now = o.now ?? Date.now;
  }

  identity(): Promise<ProviderInfo> {
    return this.call('public', 'GET', '/v1/provider');
  }

  status(): Promise<Record<string, unknown>> {
    return this.call('admin', 'GET', '/v1/status');
  }

  enrol(identity: unknown, label?: string, domains?: string[]): Promise<EnrolledNode> {
    return this.call('admin', 'POST', '/v1/nodes', {
      identity,
      ...(label ? { label } : {}),
      ...(domains ? { domains } : {}),
    });
  }

  removeNode(nodeId: string): Promise<{ removed: string }> {
    return this.call('admin', 'DELETE', `/v1/nodes/${encodeURIComponent(nodeId)}`);
  }

  async nodes(): Promise<EnrolledNode[]> {
    return (await this.call<{ nodes: EnrolledNode[] }>('admin', 'GET', '/v1/nodes')).nodes;
  }

  registerAgent(aid: string, endpoint: string): Promise<DirectoryAgent> {
    return this.call('node', 'PUT', `/v1/agents/${encodeURIComponent(aid)}`, { endpoint });
  }

  setPolicy(
    aid: string,
    rules: ContactRule[],
  ): Promise<{ aid: string; rules: ContactRule[]; updated: string }> {
    return this.call('node', 'PUT', `/v1/agents/${encodeURIComponent(aid)}/policy`, { rules });
  }

  uploadPrekeys(aid: string, prekeys: SignedPrekey[]): Promise<{ otks: number; lastResort: boolean }> {
    return this.call('node', 'POST', `/v1/agents/${encodeURIComponent(aid)}/prekeys`, { prekeys });
  }

  stock(aid: string): Promise<{ otks: number; lastResortExpires: string | null }> {
    return this.call('node', 'GET', `/v1/agents/${encodeURIComponent(aid)}/prekeys`);
  }

  async bundle(responder: string, initiator: string): Promise<Bundle> {
    const r = canonicalAid(responder);
    const b = await this.call<Bundle>('node', 'POST', '/v1/bundles', { responder: r, initiator });
    const invalid = (why: string) =>
      new QkmError('PROVIDER_RESPONSE_INVALID', `the Provider's bundle for '${r}' ${why}`);
    if (typeof b !== 'object' || b === null || !b.agent || !b.node || !b.prekey)
      throw invalid('is malformed');
    if (b.agent.aid !== r) throw invalid('names another agent');
    let nodeKey: Uint8Array;
    try {
      const v = this.verifiedNode(b.node.identity);
      if (v.nodeId !== b.node.node_id || v.nodeId !== b.agent.node_id) throw invalid('names two nodes');
      if (v.bundle.ml_dsa_65_public_key !== b.node.ml_dsa_65_public_key)
        throw invalid('carries two node keys');
      nodeKey = v.dsaPublicKey;
    } catch (err) {
      if (isQkmError(err, 'PROVIDER_RESPONSE_INVALID')) throw err;
      throw invalid(`carries an invalid node identity (${(err as Error).message})`);
    }
    try {
      verifyPrekey(b.prekey, nodeKey, { aid: r, nodeId: b.node.node_id }, this.now());
    } catch (err) {
      throw invalid(`carries a prekey the responder node did not sign for it (${(err as Error).message})`);
    }
    if (b.lastResort !== (b.prekey.kind === 'last-resort')) throw invalid('mislabels its prekey');
    return b;
  }

  /**
   * The identity of an enrolled node, as the Provider vouches for it (GET /v1/nodes/:id): what a
   * responder uses for an initiator node it has not pinned. The bundle must be self-signed, name
   * the node asked about and carry the key the Provider enrolled; else PROVIDER_RESPONSE_INVALID.
   * A node the Provider does not know is HANDSHAKE_UNKNOWN_PEER (neither pinned nor vouched);
   * any other refusal by the Provider (this node not enrolled, rate limited, …) is
   * PROVIDER_UNAVAILABLE: the Provider could not be asked, which is not the peer's fault.
   */
  async node(nodeId: string): Promise<VerifiedBundle> {
    let n: EnrolledNode;
    try {
      n = await this.call<EnrolledNode>('node', 'GET', `/v1/nodes/${encodeURIComponent(nodeId)}`);
    } catch (err) {
      if (isQkmError(err, 'NOT_FOUND'))
        throw new QkmError(
          'HANDSHAKE_UNKNOWN_PEER',
          `node ${nodeId} is neither pinned nor enrolled with the Provider`,
        );
      if (isQkmError(err, 'PROVIDER_UNAVAILABLE') || isQkmError(err, 'PROVIDER_RESPONSE_INVALID')) throw err;
      throw new QkmError(
        'PROVIDER_UNAVAILABLE',
        `the Provider refused to vouch for node ${nodeId} (${isQkmError(err) ? err.code : 'error'})`,
        { cause: err },
      );
    }
    const invalid = (why: string) =>
      new QkmError('PROVIDER_RESPONSE_INVALID', `the Provider's answer for node ${nodeId} ${why}`);
    if (typeof n !== 'object' || n === null || !n.identity) throw invalid('is malformed');
    let v: VerifiedBundle;
    try {
      v = this.verifiedNode(n.identity);
    } catch (err) {
      throw invalid(`carries an invalid node identity (${(err as Error).message})`);
    }
    if (v.nodeId !== nodeId || n.node_id !== nodeId) throw invalid('names another node');
    if (v.bundle.ml_dsa_65_public_key !== n.ml_dsa_65_public_key) throw invalid('carries two node keys');
    return v;
  }

  /**
   * `verifyBundle`, remembered: a node's identity bundle does not change between bundles, and
   * checking it (a signature and a KEM-key check) is a third of a bundle's cost at the client.
   * Keyed by the whole bundle text, so any change is checked afresh.
   */
  private verifiedNode(identity: unknown): VerifiedBundle {
    const key = JSON.stringify(identity);
    const hit = this.nodeCache.get(key);
    if (hit) return hit;
    const v = verifyBundle(identity);
    if (this.nodeCache.size >= 1024) this.nodeCache.clear();
    this.nodeCache.set(key, v);
    return v;
  }

  private async call<T>(caller: Caller, method: string, path: string, body?: unknown): Promise<T> {
    const url = new URL(path, this.base);
    const sentPath = url.pathname + url.search;
    const bytes = body === undefined ? new Uint8Array(0) : new TextEncoder().encode(JSON.stringify(body));
    const nonce = toBase64url(new Uint8Array(randomBytes(24)));
    const headers: Record<string, string> = { [HEADER.nonce]: nonce, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    // Without a token or a signer the request goes out as is: the Provider says what is missing.
    if (caller === 'admin' && this.o.adminToken) headers.authorization = `Bearer ${this.o.adminToken}`;
    if (caller === 'node' && this.o.signer) {
      const timestamp = String(this.now());
      headers[HEADER.node] = this.o.signer.nodeId;
      headers[HEADER.timestamp] = timestamp;
      headers[HEADER.signature] = signRequest(
        { method, path: sentPath, nodeId: this.o.signer.nodeId, timestamp, nonce, body: bytes },
        this.o.signer.signing.secretKey,
      );
    }
    let res: Response;
    let raw: Uint8Array;
    try {
      res = await fetch(url, {
        method,
        headers,
        ...(body === undefined ? {} : { body: bytes }),
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 5000),
      });
      raw = new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      throw new QkmError('PROVIDER_UNAVAILABLE', `the Provider at ${this.base.origin} did not answer`, {
        cause: err,
      });
    }
    const signature = res.headers.get(HEADER.response);
    if (
      !signature ||
      !verifyResponse(
        { method, path: sentPath, nonce, status: res.status, body: raw },
        signature,
        this.pinned,
      )
    )
      throw new QkmError(
        'PROVIDER_RESPONSE_INVALID',
        `the answer from ${this.base.origin} is not signed by the pinned Provider key`,
      );
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(raw));
    } catch {
      throw new QkmError('PROVIDER_RESPONSE_INVALID', 'the Provider answered something that is not JSON');
    }
    if (res.status >= 400) {
      const e = parsed as { error?: unknown; message?: unknown; details?: Record<string, unknown> };
      const code =
        typeof e.error === 'string' && e.error in ERROR_CATALOGUE ? (e.error as ErrorCode) : undefined;
      if (!code) throw new QkmError('PROVIDER_RESPONSE_INVALID', `the Provider answered ${res.status}`);
      throw new QkmError(code, `Provider: ${typeof e.message === 'string' ? e.message : code}`, {
        ...(e.details ? { details: e.details } : {}),
      });
    }
    return parsed as T;
  }
}
