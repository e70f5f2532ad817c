import { SourceMonitor } from '../source-monitor.js';
import type { EntropySourceConfig, MonitorTuning } from './options.js';

/** Which DRBG a source can feed: the quantum one, or the OS-seeded fallback. */
export type Origin = 'quantum' | 'os';

/**
 * The service's sources: one monitor per quantum source (configured, or plugged in while
 * running) and the OS source behind the fallback. It answers which monitors may feed which
 * DRBG and which of them are healthy now; it holds no DRBG state.
 */
export class SourceSet {
  private readonly quantum: SourceMonitor[];
  readonly os: SourceMonitor;

  /** `wire` subscribes the service to each monitor, including those added later. */
  constructor(
    sources: EntropySourceConfig[],
    os: EntropySourceConfig,
    private readonly tuning: MonitorTuning,
    private readonly wire: (m: SourceMonitor) => void,
  ) {
    this.quantum = sources.map(
      (s) => new SourceMonitor({ ...tuning, factory: s.factory, open: s.open, expectedKind: 'quantum' }),
    );
    this.os = new SourceMonitor({ ...tuning, factory: os.factory, open: os.open, expectedKind: 'os' });
    for (const m of this.all()) wire(m);
  }

  /** Every monitor, quantum ones first (a fresh array). */
  all(): SourceMonitor[] {
    return [...this.quantum, this.os];
  }

  /**
   * A monitor for a quantum source plugged in while running, wired but not started; null when
   * one already watches that id (it re-opens its own device on replug) or one of the same driver
   * has not opened its device yet (it may be about to open this one).
   */
  add(source: EntropySourceConfig, id: string): SourceMonitor | null {
    const driver = source.factory.driver;
    const clash = this.quantum.some(
      (m) => m.id === id || (m.info === undefined && m.state !== 'closed' && m.driver === driver),
    );
    if (clash) return null;
    const m = new SourceMonitor({
      ...this.tuning,
      factory: source.factory,
      open: source.open,
      expectedKind: 'quantum',
    });
    this.quantum.push(m);
    this.wire(m);
    return m;
  }

  /** The monitors that may feed a DRBG of `origin`: a "quantum" source that is not, never does. */
  feeding(origin: Origin): SourceMonitor[] {
    return origin === 'quantum' ? this.quantum.filter((m) => m.kind === 'quantum') : [this.os];
  }

  healthy(origin: Origin): SourceMonitor[] {
    return this.feeding(origin).filter((m) => m.state === 'healthy');
  }

  /**
   * Some source of `origin` is healthy, and every one of `contributors` is one of its sources
   * and healthy. Allocation-free: it runs on every request.
   */
  servesWith(origin: Origin, contributors: ReadonlySet<string>): boolean {
    const quantum = origin === 'quantum';
    let healthy = 0;
    let healthyContributors = 0;
    for (const m of quantum ? this.quantum : [this.os]) {
      if (quantum && m.kind !== 'quantum') continue;
      if (m.state !== 'healthy') continue;
      healthy++;
      if (contributors.has(m.id)) healthyContributors++;
    }
    return healthy > 0 && healthyContributors === contributors.size;
  }

  /** Why no quantum source can feed the quantum DRBG now, or null when one is healthy. */
  quantumUnavailable(): string | null {
    const qs = this.feeding('quantum');
    if (qs.length === 0) return 'no quantum source configured';
    if (qs.some((m) => m.state === 'healthy')) return null;
    const parts = qs.map((m) => `${m.id} ${m.state}${m.reason ? ` (${m.reason})` : ''}`);
    return `no healthy quantum source: ${parts.join('; ')}`;
  }

  /** Health test failures of every source since start. */
  failures(): number {
    return this.all().reduce((a, m) => a + m.failures, 0);
  }
}
