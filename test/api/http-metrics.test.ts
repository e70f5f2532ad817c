import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HttpMetrics } from '../../src/api/http-metrics.js';

const BOUNDS = [0.001, 0.01, 0.1];

async function scrape(m: HttpMetrics): Promise<Map<string, number>> {
  const registry = new Registry();
  m.register(registry);
  const text = await registry.metrics();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

describe('HttpMetrics', () => {
  it('renders a Prometheus counter and a cumulative histogram per route', async () => {
    const m = new HttpMetrics('t_requests_total', 't_duration_seconds', BOUNDS);
    m.record('/v1/entropy', 'GET', 200, 0.0004);
    m.record('/v1/entropy', 'GET', 200, 0.005);
    m.record('/v1/entropy', 'GET', 429, 0.5);
    m.record('unmatched', 'POST', 404, 0.001);
    const s = await scrape(m);
    expect(s.get('t_requests_total{route="/v1/entropy",method="GET",status="200"}')).toBe(2);
    expect(s.get('t_requests_total{route="/v1/entropy",method="GET",status="429"}')).toBe(1);
    expect(s.get('t_requests_total{route="unmatched",method="POST",status="404"}')).toBe(1);
    expect(s.get('t_duration_seconds_bucket{le="0.001",route="/v1/entropy"}')).toBe(1);
    expect(s.get('t_duration_seconds_bucket{le="0.01",route="/v1/entropy"}')).toBe(2);
    expect(s.get('t_duration_seconds_bucket{le="0.1",route="/v1/entropy"}')).toBe(2);
    expect(s.get('t_duration_seconds_bucket{le="+Inf",route="/v1/entropy"}')).toBe(3);
    expect(s.get('t_duration_seconds_count{route="/v1/entropy"}')).toBe(3);
    expect(s.get('t_duration_seconds_sum{route="/v1/entropy"}')).toBeCloseTo(0.5054, 10);
    // An observation equal to a bound falls in that bound's bucket (le = "less or equal").
    expect(s.get('t_duration_seconds_bucket{le="0.001",route="unmatched"}')).toBe(1);
  });

  it('property: buckets are cumulative and end at the count; counts add up', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ route: fc.constantFrom('/a', '/b'), s: fc.double({ min: 0, max: 1, noNaN: true }) }),
          {
            maxLength: 50,
          },
        ),
        async (obs) => {
          const m = new HttpMetrics('p_total', 'p_seconds', BOUNDS);
          for (const o of obs) m.record(o.route, 'GET', 200, o.s);
          const s = await scrape(m);
          for (const route of ['/a', '/b']) {
            const mine = obs.filter((o) => o.route === route);
            if (mine.length === 0) continue;
            let prev = 0;
            for (const le of [...BOUNDS.map(String), '+Inf']) {
              const v = s.get(`p_seconds_bucket{le="${le}",route="${route}"}`) as number;
              expect(v).toBeGreaterThanOrEqual(prev);
              const expected = le === '+Inf' ? mine.length : mine.filter((o) => o.s <= Number(le)).length;
              expect(v).toBe(expected);
              prev = v;
            }
            expect(s.get(`p_total{route="${route}",method="GET",status="200"}`)).toBe(mine.length);
          }
        },
      ),
      { numRuns: 50 },
    );
  });

  it('rejects bounds that do not ascend', () => {
    expect(() => new HttpMetrics('a', 'b', [0.1, 0.1])).toThrow(RangeError);
  });
});
