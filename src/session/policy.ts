import { performance } from 'node:perf_hooks';
import { QkmError } from '../core/errors.js';
import type { QkdLinkObservation } from '../core/qkd-links.js';
import type { EntropyProvider } from '../entropy/types.js';
import type { QkdKeySource } from '../../drivers/qkd/interface.js';
import {
  POSTURES,
  type Posture,
  maxPosture,
  postureAtLeast,
  postureHasQkd,
  postureHasQrng,
} from './posture.js';

/**
 * Posture policy (QSC paper eq. 5–7): for a peer, choose the admissible posture p maximising
 * w_s·Sec(p) − w_l·Lat(p) − w_c·Cost(p), where admissible = compliant with the jurisdiction
 * rules for the (local region, peer region) pair AND available now, and p ≥ the minimum.
 */

/**
 * Jurisdiction rule for one region, after QSC Table 1. `qrng`: whether quantum entropy may be
 * used by a node in this region (it is local to the node, so only the local rule applies).
 * `qkd`: `permitted` (domestic and cross-border), `domestic` (only when both ends are in this
 * region), `not-permitted`.
 */
export interface RegionRule {
  qrng: boolean;
  qkd: 'permitted' | 'domestic' | 'not-permitted';
  /** Human note shown in `explain`. */
  note: string;
}

export interface PostureScore {
  sec: number;
  lat: number;
  cost: number;
}

export interface PolicyConfig {
  weights: { security: number; latency: number; cost: number };
  scores: Record<Posture, PostureScore>;
  /** Keyed by region code. A region not listed is treated as `unknownRegion`. */
  regions: Record<string, RegionRule>;
  /** Rule for regions missing from `regions` (default: PQC only — fail closed). */
  unknownRegion: RegionRule;
  /**
   * Explicit per-pair QKD decisions that override the region rules (negotiated agreements),
   * e.g. `{ a: 'EU', b: 'JP', qkd: true }`. Unordered pairs.
   */
  pairs: Array<{ a: string; b: string; qkd: boolean; note?: string }>;
  /** Floor for every peer. */
  minPosture: Posture;
  /** Per-peer floors by node id (combined by max with `minPosture` and the peer record's own). */
  peers: Record<string, { minPosture?: Posture }>;
}

/**
 * Defaults. Scores are on a 0–1 scale: Sec grows with each added source of strength; Lat and
 * Cost reflect the QSC testbed (a PQC handshake ≈ 0.4 ms, QRNG adds ≈ 1 ms of entropy, a QKD
 * key ≈ 10 ms and consumes scarce link material). With these weights the strongest available
 * posture always wins — the paper's "escalate to QKD when available and compliant".
 * Regions follow QSC Table 1:
 * - US: QRNG supported (national clouds, DoD); QKD restricted to defence/research → domestic.
 * - EU: QRNG in some member states; QKD limited by cross-border data sovereignty → domestic.
 * - CN: national QRNG standards vary (allowed); QKD strongly supported → permitted.
 * - JP: QRNG in R&D (allowed); QKD emerging (satellite) → permitted.
 * - AU: QRNG limited (allowed where a device exists); QKD under review → not permitted.
 * - MULTI: QRNG per node; QKD negotiated per jurisdiction → domestic (MULTI↔MULTI) unless a
 *   `pairs` entry allows it; otherwise the crypto-pluggable fallback to PQC.
 * PQC is mandatory everywhere, so `PQC` is always compliant.
 */
export const DEFAULT_POLICY: PolicyConfig = {
  weights: { security: 1, latency: 0.2, cost: 0.1 },
  scores: {
    PQC: { sec: 0.6, lat: 0.1, cost: 0.1 },
    'PQC+QRNG': { sec: 0.8, lat: 0.15, cost: 0.2 },
    'QKD+PQC+QRNG': { sec: 1, lat: 0.4, cost: 0.5 },
  },
  regions: {
    US: { qrng: true, qkd: 'domestic', note: 'QKD restricted to defence/research networks' },
    EU: { qrng: true, qkd: 'domestic', note: 'QKD limited by cross-border data sovereignty' },
    CN: { qrng: true, qkd: 'permitted', note: 'QKD strongly supported' },
    JP: { qrng: true, qkd: 'permitted', note: 'QKD emerging (satellite links)' },
    AU: { qrng: true, qkd: 'not-permitted', note: 'QKD under review' },
    MULTI: { qrng: true, qkd: 'domestic', note: 'QKD negotiated per jurisdiction' },
  },
  unknownRegion: { qrng: false, qkd: 'not-permitted', note: 'region not in the jurisdiction table' },
  pairs: [],
  minPosture: 'PQC',
  peers: {},
};

/** What the policy needs to know about a peer. */
export interface PolicyPeer {
  nodeId: string;
  region: string;
  saeId?: string;
  kmeId?: string;
  minPosture?: Posture;
}

export interface QkdAvailability {
  up: boolean;
  reason?: string;
}

export interface PostureRow {
  posture: Posture;
  sec: number;
  lat: number;
  cost: number;
  score: number;
  compliant: boolean;
  available: boolean;
  /**
   * Unavailable because something this node is set up to use is failing now (quantum entropy
   * unhealthy, QKD link down or out of keys) — as opposed to not being configured at all (no
   * KME, no SAE ids). Only outages make a fallback `degraded`.
   */
  outage: boolean;
  /** compliant ∧ available ∧ ≥ minimum. */
  admissible: boolean;
  why: string;
}

export interface PostureDecision {
  posture: Posture;
  minimum: Posture;
  /** True when a better-scoring posture was not admissible (compliance or availability). */
  fallback: boolean;
  /** Present when `fallback`: why the better postures were skipped. */
  reason?: string;
  table: PostureRow[];
}

export interface PosturePolicyOptions {
  /** This node's region. */
  region: string;
  /** This node's SAE id; QKD is unavailable without one. */
  saeId?: string;
  entropy: Pick<EntropyProvider, 'status'>;
  /** Live QKD link check for a peer; absent → QKD unavailable ("no QKD key source configured"). */
  qkdAvailability?: QkdAvailabilityCheck;
  /** Merged over DEFAULT_POLICY (shallow per top-level key; `regions` merged per region). */
  config?: Partial<PolicyConfig>;
}

/**
 * A QKD link check for a peer. `fresh` asks for an answer no older than this call (no cached
 * "down"). `invalidate` (when present) drops any cached answer, so the next check asks the KME
 * again — the session service calls it when enc_keys fails.
 */
export type QkdAvailabilityCheck = ((
  peer: PolicyPeer,
  options?: { fresh?: boolean },
) => Promise<QkdAvailability>) & {
  invalidate?: (peer?: PolicyPeer) => void;
  /** Records a "down" observed elsewhere (a failed key request) as the cached answer. */
  markDown?: (peer: PolicyPeer, reason: string) => void;
};

/** How long a KME "link up, keys in stock" answer is reused by default, ms. */
export const DEFAULT_QKD_UP_CACHE_MS = 1000;
/** How long a "link down" answer (KME unreachable, or no keys in stock) is reused by default, ms. */
export const DEFAULT_QKD_DOWN_CACHE_MS = 1000;

/**
 * A QKD availability check backed by ETSI 014 Get status: the link is up when the KME answers
 * for the peer's SAE with at least `minKeys` keys in stock. Bounded by `timeoutMs`.
 *
 * Answers are reused per SAE — "up" for `cacheUpMs`, "down" for `cacheDownMs` (monotonic
 * clock; 0 disables either) — and concurrent checks for one SAE share one request. Once its time
 * has passed, an answer is still given, at once, while the KME is asked again in the background;
 * the next check gets the new answer. So no session that may fall back waits for a status round
 * trip, nor for the status timeout of a KME that stopped answering. Why this is safe: a stale "up"
 * can only make a session try enc_keys, and an enc_keys failure already falls back (degraded, with
 * the reason, within the fallback deadline) and marks the link down. A stale "down" can only make
 * a session fall back visibly (to PQC+QRNG, with the reason). A check made with `fresh` (the
 * policy's when the minimum needs QKD, so a refusal is never based on an old answer, and for
 * `explain`, which an operator reads as the link's state now) takes no "down" from the cache and
 * no expired answer at all. Why cache "down" at all: without it every session with a link out of
 * keys pays a KME round trip.
 */
export function qkdAvailabilityFrom(
  qkd: QkdKeySource,
  opts: {
    timeoutMs?: number;
    minKeys?: number;
    cacheUpMs?: number;
    cacheDownMs?: number;
    /** Told of every KME status answer or failure, and of every `markDown` (the status board). */
    observe?: (saeId: string, seen: QkdLinkObservation) => void;
  } = {},
): QkdAvailabilityCheck {
  const cacheUpMs = opts.cacheUpMs ?? DEFAULT_QKD_UP_CACHE_MS;
  const cacheDownMs = opts.cacheDownMs ?? DEFAULT_QKD_DOWN_CACHE_MS;
  const cached = new Map<string, { answer: QkdAvailability; until: number }>();
  const inFlight = new Map<string, Promise<QkdAvailability>>();
  const askKme = async (saeId: string): Promise<QkdAvailability> => {
    let storedKeyCount: number;
    try {
      ({ storedKeyCount } = await qkd.status(saeId, { timeoutMs: opts.timeoutMs ?? 2000 }));
    } catch (e) {
      const reason = `KME status failed (${(e as { kind?: string }).kind ?? 'error'})`;
      opts.observe?.(saeId, { answered: false, error: reason });
      return { up: false, reason };
    }
    // Outside the try: the observer's own trouble must not read as a KME failure.
    opts.observe?.(saeId, { answered: true, storedKeyCount });
    if (storedKeyCount < (opts.minKeys ?? 1)) return { up: false, reason: 'QKD link has no keys in stock' };
    return { up: true };
  };
  const check: QkdAvailabilityCheck = async (peer, options) => {
    const saeId = peer.saeId;
    if (!saeId) return { up: false, reason: 'peer has no SAE id' };
    const hit = cached.get(saeId);
    if (hit !== undefined && (hit.answer.up || !options?.fresh)) {
      if (hit.until > performance.now()) return hit.answer;
      if (!options?.fresh) {
        // An expired answer is still the best one at hand for a caller that may fall back: give
        // it now, ask again in the background (askKme never rejects).
        void refresh(saeId);
        return hit.answer;
      }
    }
    return refresh(saeId);
  };
  /** One KME status request per SAE at a time; its answer is cached (see above). */
  const refresh = (saeId: string): Promise<QkdAvailability> => {
    let p = inFlight.get(saeId);
    if (!p) {
      const started = performance.now();
      p = askKme(saeId).then((a) => {
        // An invalidate while the request was out wins: the answer may predate the failure.
        if (inFlight.get(saeId) === p) {
          inFlight.delete(saeId);
          const ttl = a.up ? cacheUpMs : cacheDownMs;
          if (ttl > 0) cached.set(saeId, { answer: a, until: started + ttl });
          else cached.delete(saeId);
        }
        return a;
      });
      inFlight.set(saeId, p);
    }
    return p;
  };
  check.markDown = (peer, reason) => {
    if (peer.saeId === undefined) return;
    opts.observe?.(peer.saeId, { answered: false, error: reason });
    inFlight.delete(peer.saeId);
    if (cacheDownMs > 0) {
      cached.set(peer.saeId, { answer: { up: false, reason }, until: performance.now() + cacheDownMs });
    } else cached.delete(peer.saeId);
  };
  check.invalidate = (peer) => {
    if (peer?.saeId === undefined) {
      cached.clear();
      inFlight.clear();
    } else {
      cached.delete(peer.saeId);
      inFlight.delete(peer.saeId);
    }
  };
  return check;
}

export function mergePolicy(partial: Partial<PolicyConfig> | undefined): PolicyConfig {
  const p = partial ?? {};
  return {
    ...DEFAULT_POLICY,
    ...p,
    weights: { ...DEFAULT_POLICY.weights, ...p.weights },
    scores: { ...DEFAULT_POLICY.scores, ...p.scores },
    regions: { ...DEFAULT_POLICY.regions, ...p.regions },
    peers: { ...DEFAULT_POLICY.peers, ...p.peers },
  };
}

export class PosturePolicy {
  readonly config: PolicyConfig;

  constructor(private readonly opts: PosturePolicyOptions) {
    this.config = mergePolicy(opts.config);
  }

  /** The effective minimum for a peer: max of the global floor, per-peer config, peer record and request. */
  minimumFor(peer: Pick<PolicyPeer, 'nodeId' | 'minPosture'>, requested?: Posture): Posture {
    return maxPosture(
      this.config.minPosture,
      this.config.peers[peer.nodeId]?.minPosture,
      peer.minPosture,
      requested,
    );
  }

  private rule(region: string): RegionRule {
    return this.config.regions[region] ?? this.config.unknownRegion;
  }

  /** Compliance of `posture` for this (local, peer) region pair, with the reason when not. */
  compliance(posture: Posture, peerRegion: string): { ok: boolean; why: string } {
    const local = this.rule(this.opts.region);
    if (postureHasQrng(posture) && !local.qrng) {
      return { ok: false, why: `QRNG not permitted in ${this.opts.region} (${local.note})` };
    }
    if (postureHasQkd(posture)) return this.qkdCompliance(peerRegion);
    return { ok: true, why: posture === 'PQC' ? 'PQC is mandatory everywhere' : 'compliant' };
  }

  /**
   * Whether QKD with a peer in `peerRegion` complies with this node's rules. The responder's
   * half of compliance: the initiator chose the posture under its own rules, and each node
   * answers for its own jurisdiction (QRNG is the initiator's local matter, so only QKD is
   * checked on accept).
   */
  qkdCompliance(peerRegion: string): { ok: boolean; why: string } {
    const a = this.opts.region;
    const b = peerRegion;
    const pair = this.config.pairs.find((x) => (x.a === a && x.b === b) || (x.a === b && x.b === a));
    if (pair) {
      return pair.qkd
        ? { ok: true, why: `QKD allowed for ${a}↔${b} by agreement` }
        : { ok: false, why: `QKD not permitted for ${a}↔${b}${pair.note ? ` (${pair.note})` : ''}` };
    }
    const ra = this.rule(a);
    const rb = this.rule(b);
    const allows = (r: RegionRule) => r.qkd === 'permitted' || (r.qkd === 'domestic' && a === b);
    if (!allows(ra))
      return {
        ok: false,
        why: `QKD not permitted ${a === b ? 'in' : 'across the border of'} ${a} (${ra.note})`,
      };
    if (!allows(rb))
      return {
        ok: false,
        why: `QKD not permitted ${a === b ? 'in' : 'across the border of'} ${b} (${rb.note})`,
      };
    return { ok: true, why: 'compliant' };
  }

  /** Availability now, with the reason when not. `fresh`: no cached "QKD link down" answer. */
  async availability(
    posture: Posture,
    peer: PolicyPeer,
    options: { fresh?: boolean } = {},
  ): Promise<{ ok: boolean; outage: boolean; why: string }> {
    if (postureHasQrng(posture)) {
      const s = this.opts.entropy.status();
      if (!s.quantumAvailable) {
        return {
          ok: false,
          outage: true,
          why: `no healthy quantum entropy source${s.reason ? `: ${s.reason}` : ''}`,
        };
      }
    }
    if (postureHasQkd(posture)) {
      if (!this.opts.qkdAvailability)
        return { ok: false, outage: false, why: 'no QKD key source configured' };
      if (!this.opts.saeId) return { ok: false, outage: false, why: 'this node has no SAE id' };
      if (!peer.saeId || !peer.kmeId)
        return { ok: false, outage: false, why: 'peer bundle has no SAE/KME id' };
      const q = await this.opts.qkdAvailability(peer, options);
      if (!q.up) return { ok: false, outage: true, why: q.reason ?? 'QKD link down' };
    }
    return { ok: true, outage: false, why: 'available' };
  }

  /**
   * Tells the policy that a QKD key request to this peer just failed: any cached "link up"
   * answer is dropped. With `downReason` (the KME did not answer) that failure becomes the cached
   * "down" answer; without, the next decision (and `availability`) asks the KME again.
   */
  qkdFailed(peer: PolicyPeer, downReason?: string): void {
    const check = this.opts.qkdAvailability;
    if (downReason !== undefined && check?.markDown) check.markDown(peer, downReason);
    else check?.invalidate?.(peer);
  }

  /**
   * The decision table: every posture, its scores and why it is or is not admissible. QKD is
   * checked live (`fresh`) when asked, and always when the minimum needs it, so a refusal never
   * rests on a cached "link down".
   */
  async explain(
    peer: PolicyPeer,
    requestedMin?: Posture,
    options: { fresh?: boolean } = {},
  ): Promise<PostureRow[]> {
    const min = this.minimumFor(peer, requestedMin);
    const fresh = options.fresh === true || postureHasQkd(min);
    const { weights, scores } = this.config;
    const rows: PostureRow[] = [];
    for (const posture of POSTURES) {
      const s = scores[posture];
      const score = weights.security * s.sec - weights.latency * s.lat - weights.cost * s.cost;
      const c = this.compliance(posture, peer.region);
      const a = c.ok
        ? await this.availability(posture, peer, { fresh })
        : { ok: false, outage: false, why: 'not checked' };
      const meetsMin = postureAtLeast(posture, min);
      const why = !c.ok ? c.why : !a.ok ? a.why : !meetsMin ? `below the minimum ${min}` : 'admissible';
      rows.push({
        posture,
        sec: s.sec,
        lat: s.lat,
        cost: s.cost,
        score: Math.round(score * 1e6) / 1e6,
        compliant: c.ok,
        available: c.ok && a.ok,
        outage: c.ok && a.outage,
        admissible: c.ok && a.ok && meetsMin,
        why,
      });
    }
    return rows;
  }

  /**
   * Picks the posture. Throws QkmError POSTURE_UNAVAILABLE (503) when no posture at or above the
   * minimum is admissible, with the reasons in the message and `details.table`.
   */
  async decide(
    peer: PolicyPeer,
    requestedMin?: Posture,
    options: { fresh?: boolean } = {},
  ): Promise<PostureDecision> {
    const table = await this.explain(peer, requestedMin, options);
    const minimum = this.minimumFor(peer, requestedMin);
    const admissible = table.filter((r) => r.admissible);
    if (admissible.length === 0) {
      const why = table
        .filter((r) => postureAtLeast(r.posture, minimum))
        .map((r) => `${r.posture}: ${r.why}`)
        .join('; ');
      throw new QkmError('POSTURE_UNAVAILABLE', `no admissible posture at or above ${minimum} (${why})`, {
        details: { minimum, table },
      });
    }
    // Highest score wins; ties go to the stronger posture.
    const best = admissible.reduce((a, b) => (b.score >= a.score ? b : a));
    const skipped = table.filter(
      (r) => !r.admissible && r.score > best.score && postureAtLeast(r.posture, minimum),
    );
    const decision: PostureDecision = { posture: best.posture, minimum, fallback: skipped.length > 0, table };
    if (skipped.length > 0) {
      decision.reason = skipped.map((r) => `${r.posture} not admissible: ${r.why}`).join('; ');
    }
    return decision;
  }
}
