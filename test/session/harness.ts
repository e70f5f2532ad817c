import { AuditLog, signerFromIdentity } from '../../src/audit/log.js';
import { DEFAULT_PQC_BACKEND, usePqcBackend } from '../../src/pqc/index.js';
import type { StorageBackend } from '../../src/store/interface.js';
import { createMemoryBackend } from '../../src/store/memory.js';
import { SessionService, type SessionServiceOptions } from '../../src/session/handshake.js';
import { IdentityManager, type NodeIdentity } from '../../src/session/identity.js';
import { PeerRegistry } from '../../src/session/peers.js';
import { type PolicyConfig, PosturePolicy, qkdAvailabilityFrom } from '../../src/session/policy.js';
import { FakeEntropy, type FakeQkdLink, type FakeQkdSource } from './fakes.js';

// The session tests run on the appliance's default backend (`QKM_PQC_BACKEND` to pick another);
// suites that cover both switch it themselves.
await usePqcBackend(
  (process.env.QKM_PQC_BACKEND as 'liboqs-wasm' | 'noble' | undefined) ?? DEFAULT_PQC_BACKEND,
);

export interface TestNode {
  name: string;
  store: StorageBackend;
  entropy: FakeEntropy;
  identity: NodeIdentity;
  peers: PeerRegistry;
  policy: PosturePolicy;
  audit: AuditLog;
  qkd: FakeQkdSource | undefined;
  sessions: SessionService;
  clock: { now: number };
  /** Rebuilds the SessionService over the same store (a restart). */
  restart(extra?: Partial<SessionServiceOptions>): SessionService;
  rebuildPolicy(config: Partial<PolicyConfig>): void;
}

export async function makeNode(
  name: string,
  opts: {
    region?: string;
    link?: FakeQkdLink;
    sae?: string;
    kme?: string;
    clock?: { now: number };
  } = {},
): Promise<TestNode> {
  const store = createMemoryBackend();
  const entropy = new FakeEntropy();
  const clock = opts.clock ?? { now: Date.UTC(2026, 10, 22, 4, 0, 0) };
  const now = () => clock.now;
  const qkd = opts.link
    ? opts.link.endpoint(opts.sae ?? `sae-${name}`, opts.kme ?? `kme-${name}`)
    : undefined;
  const ids = new IdentityManager({ store, entropy, clock: now });
  const identity = await ids.init({
    region: opts.region ?? 'EU',
    ...(qkd ? { saeId: qkd.saeId, kmeId: qkd.kmeId } : {}),
  });
  const audit = new AuditLog({ store, entropy, signer: signerFromIdentity(identity), clock: now });
  const peers = new PeerRegistry({ store, audit, clock: now });
  const mkPolicy = (config?: Partial<PolicyConfig>) =>
    new PosturePolicy({
      region: identity.region,
      ...(identity.saeId ? { saeId: identity.saeId } : {}),
      entropy,
      ...(qkd ? { qkdAvailability: qkdAvailabilityFrom(qkd) } : {}),
      ...(config ? { config } : {}),
    });
  const node: TestNode = {
    name,
    store,
    entropy,
    identity,
    peers,
    policy: mkPolicy(),
    audit,
    qkd,
    clock,
    sessions: undefined as unknown as SessionService,
    restart(extra) {
      this.sessions = new SessionService({
        identity,
        peers,
        policy: this.policy,
        entropy,
        qkd,
        store,
        audit,
        clock: now,
        ...extra,
      });
      return this.sessions;
    },
    rebuildPolicy(config) {
      this.policy = mkPolicy(config);
      this.restart();
    },
  };
  node.restart();
  return node;
}

/** Two nodes in `region`, pinned to each other, sharing a QKD link and a clock. */
export async function makePair(
  opts: { region?: string; regionB?: string; qkd?: boolean; link?: FakeQkdLink } = {},
) {
  const clock = { now: Date.UTC(2026, 10, 22, 4, 0, 0) };
  const link = opts.qkd === false ? undefined : opts.link;
  const a = await makeNode('a', { region: opts.region ?? 'EU', clock, ...(link ? { link } : {}) });
  const b = await makeNode('b', {
    region: opts.regionB ?? opts.region ?? 'EU',
    clock,
    ...(link ? { link } : {}),
  });
  await a.peers.add(b.identity.bundle);
  await b.peers.add(a.identity.bundle);
  return { a, b, clock };
}
