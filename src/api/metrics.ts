import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { HttpMetrics } from './http-metrics.js';
import type { ApplianceStatus } from '../status.js';
import { VERSION } from '../core/version.js';

/**
 * Prometheus metrics. Gauges that mirror appliance state are filled at scrape time from one
 * status snapshot, so they can never drift from what `/v1/status` says.
 */
export interface QkmMetrics {
  registry: Registry;
  /** Request count and duration per route (recorded per request, rendered per scrape). */
  http: HttpMetrics;
}

const SOURCE_STATES = ['startup', 'healthy', 'quarantined', 'detached', 'closed'] as const;

/**
 * prom-client's default Node.js metrics, under their standard names (`process_*`, `nodejs_*`),
 * as Node.js dashboards expect them — less the gauges it names `*_total`
 * (`nodejs_active_{handles,requests,resources}_total`): Prometheus reserves the suffix for
 * counters (`promtool check metrics` rejects them), and each is only the sum of the labelled
 * gauge of the same name without the suffix, which stays.
 */
function registerProcessMetrics(registry: Registry): void {
  const defaults = new Registry();
  collectDefaultMetrics({ register: defaults });
  for (const metric of defaults.getMetricsAsArray()) {
    const { name, type } = metric as unknown as { name: string; type: string };
    if (type === 'gauge' && name.endsWith('_total')) continue;
    registry.registerMetric(metric as never);
  }
}

export function createMetrics(status: () => Promise<ApplianceStatus>): QkmMetrics {
  const registry = new Registry();
  registerProcessMetrics(registry);

  const http = new HttpMetrics(
    'qkm_http_requests_total',
    'qkm_http_request_duration_seconds',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  );
  http.register(registry);

  // One snapshot per scrape, shared by every gauge's collect().
  let snapshot: Promise<ApplianceStatus> | undefined;
  const current = () => {
    snapshot ??= status().finally(() => {
      setImmediate(() => {
        snapshot = undefined;
      });
    });
    return snapshot;
  };

  new Gauge({
    name: 'qkm_build_info',
    help: 'Always 1; the labels say which qkm and which Node.js serve these metrics',
    labelNames: ['version', 'nodejs'] as const,
    registers: [registry],
    collect() {
      this.set({ version: VERSION, nodejs: process.version }, 1);
    },
  });
  new Gauge({
    name: 'qkm_pqc_backend_info',
    help: 'Always 1; the labels say which library does each PQC step (pqc.backend; noble where liboqs-js cannot take caller randomness or seeds)',
    labelNames: ['backend', 'signature', 'kem_decaps', 'kem_encaps', 'keygen'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const p = (await current()).pqc;
      this.set(
        {
          backend: p.backend,
          signature: p.signature,
          kem_decaps: p.kemDecaps,
          kem_encaps: p.kemEncaps,
          keygen: p.keygen,
        },
        1,
      );
    },
  });
  new Counter({
    name: 'qkm_pqc_legacy_verifications_total',
    help: 'Signatures accepted in the pre-v3 form (FIPS 204 context string, verified on noble): old audit seals, v1 identity bundles, prekeys',
    registers: [registry],
    async collect() {
      this.reset();
      this.inc((await current()).pqc.legacyVerified);
    },
  });
  new Gauge({
    name: 'qkm_degraded',
    help: 'Degraded now, by component: entropy (served from the OS-seeded fallback DRBG) or qkd (a QKD link is down)',
    labelNames: ['component'] as const,
    registers: [registry],
    async collect() {
      const s = await current();
      this.set({ component: 'entropy' }, s.entropy.degraded ? 1 : 0);
      this.set({ component: 'qkd' }, s.qkd.some((l) => !l.up) ? 1 : 0);
    },
  });
  new Gauge({
    name: 'qkm_entropy_source_state',
    help: 'Entropy source state (1 for the current state)',
    labelNames: ['source', 'driver', 'kind', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of (await current()).entropy.sources) {
        for (const state of SOURCE_STATES) {
          this.set({ source: s.id, driver: s.driver, kind: s.kind, state }, s.state === state ? 1 : 0);
        }
      }
    },
  });
  // Min-entropy is in bits per sample; the names carry no unit because Prometheus's base unit
  // for information is the byte, and "bytes per sample" would misread the SP 800-90B figures.
  new Gauge({
    name: 'qkm_entropy_source_min_entropy_claimed',
    help: "Min-entropy the source claims, bits per sample (the health tests' cutoffs come from it)",
    labelNames: ['source'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of (await current()).entropy.sources) this.set({ source: s.id }, s.claimedMinEntropy);
    },
  });
  new Gauge({
    name: 'qkm_entropy_source_min_entropy_estimated',
    help: 'Most-common-value min-entropy estimate, bits per sample (SP 800-90B 6.3.1)',
    labelNames: ['source'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of (await current()).entropy.sources) {
        if (s.estimatedMinEntropy !== undefined) this.set({ source: s.id }, s.estimatedMinEntropy);
      }
    },
  });
  // Totals kept by the EntropyService since start: counters set from the snapshot.
  const entropyCounters: Array<[string, string, keyof ApplianceStatus['entropy']['counters']]> = [
    ['qkm_entropy_bytes_served_total', 'Entropy bytes served', 'bytesServed'],
    [
      'qkm_entropy_bytes_served_degraded_total',
      'Entropy bytes served flagged degraded',
      'bytesServedDegraded',
    ],
    ['qkm_drbg_reseeds_total', 'DRBG reseeds', 'reseeds'],
    ['qkm_health_test_failures_total', 'SP 800-90B health-test failures', 'healthFailures'],
    [
      'qkm_entropy_requests_rejected_total',
      'Entropy requests rejected (quantum required but unavailable)',
      'requestsRejected',
    ],
  ];
  for (const [name, help, field] of entropyCounters) {
    new Counter({
      name,
      help,
      registers: [registry],
      async collect() {
        this.reset();
        this.inc((await current()).entropy.counters[field]);
      },
    });
  }
  new Gauge({
    name: 'qkm_drbg_requests_since_reseed',
    help: 'SP 800-90A reseed_counter of the serving DRBG: generate requests since it was last (re)seeded, plus one',
    registers: [registry],
    async collect() {
      this.set((await current()).entropy.drbg.reseedCounter);
    },
  });
  new Gauge({
    name: 'qkm_keys',
    help: 'Stored keys by state (the node identity seed is not counted)',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const counts = (await current()).keys;
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'qkm_qkd_link_up',
    help: '1 when the KME for this peer SAE answers',
    labelNames: ['peer_sae'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const l of (await current()).qkd) this.set({ peer_sae: l.peerSaeId }, l.up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'qkm_qkd_stored_keys',
    help: 'stored_key_count reported by the KME for this peer SAE (absent while the link is down)',
    labelNames: ['peer_sae'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const l of (await current()).qkd) {
        if (l.up && l.storedKeyCount !== undefined) this.set({ peer_sae: l.peerSaeId }, l.storedKeyCount);
      }
    },
  });

  // Session outcomes: counters whose totals live in the SessionService (one status snapshot per
  // scrape, like the gauges), so they are set rather than incremented here.
  const sessionCounter = (
    name: string,
    help: string,
    labelNames: readonly string[],
    values: (s: ApplianceStatus['sessions']) => Array<[Record<string, string>, number]>,
  ) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        for (const [labels, n] of values((await current()).sessions)) if (n > 0) this.inc(labels, n);
      },
    });
  sessionCounter(
    'qkm_sessions_initiated_total',
    'Sessions this node initiated, by agreed posture and whether the fallback was degraded',
    ['posture', 'degraded'],
    (s) =>
      Object.entries(s.initiated).flatMap(([posture, n]) => {
        const degraded = s.initiatedDegraded[posture as keyof typeof s.initiatedDegraded];
        return [
          [{ posture, degraded: 'true' }, degraded],
          [{ posture, degraded: 'false' }, n - degraded],
        ] as Array<[Record<string, string>, number]>;
      }),
  );
  sessionCounter(
    'qkm_sessions_refused_total',
    'Initiations refused: nothing at or above the minimum posture was admissible (503)',
    [],
    (s) => [[{}, s.refused]],
  );
  sessionCounter(
    'qkm_sessions_accepted_total',
    'Handshakes this node accepted, by posture',
    ['posture'],
    (s) => Object.entries(s.accepted).map(([posture, n]) => [{ posture }, n]),
  );
  sessionCounter('qkm_sessions_rejected_total', 'Handshakes turned away, by error code', ['code'], (s) =>
    Object.entries(s.rejected).map(([code, n]) => [{ code }, n]),
  );
  sessionCounter(
    'qkm_sessions_abandoned_total',
    'Accepted handshakes abandoned before the key was returned, by error code',
    ['code'],
    (s) => Object.entries(s.abandoned).map(([code, n]) => [{ code }, n]),
  );
  sessionCounter(
    'qkm_session_qkd_keys_wasted_total',
    'QKD keys a KME released for sessions that never completed (initiator failed after enc_keys; handshake rejected or abandoned by this responder)',
    [],
    (s) => [[{}, s.qkdKeysWasted]],
  );

  new Gauge({
    name: 'qkm_audit_records',
    help: 'Records in the audit chain, seals included',
    registers: [registry],
    async collect() {
      this.set((await current()).audit.records);
    },
  });
  new Gauge({
    name: 'qkm_audit_unsealed_records',
    help: 'Audit records after the last seal (chained, not yet signed)',
    registers: [registry],
    async collect() {
      const a = (await current()).audit;
      this.set(a.records - a.sealedThrough);
    },
  });
  new Gauge({
    name: 'qkm_audit_unsealed_tail_records',
    help: 'Records found after the last valid seal when the audit log was opened (never signed; flagged by audit.unsealed_tail_found)',
    registers: [registry],
    async collect() {
      this.set((await current()).audit.unsealedTail?.count ?? 0);
    },
  });

  return { registry, http };
}
