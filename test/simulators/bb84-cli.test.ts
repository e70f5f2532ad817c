import { describe, expect, it } from 'vitest';
import { bb84Report, bb84Sweep, formatSweepTable, renderSweepSvg } from '../../simulators/bb84/cli.js';

/**
 * A minimal well-formedness check for the SVG we generate: one root element, every start tag
 * closed in order, attributes quoted, no stray '<' or '&' in text. Returns the element names.
 */
function parseXml(xml: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let i = 0;
  let roots = 0;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const text = xml.slice(i, lt === -1 ? xml.length : lt);
    if (/&(?!#\d+;|amp;|lt;|gt;|quot;|apos;)/.test(text)) throw new Error(`bad entity near ${i}`);
    if (stack.length === 0 && text.trim() !== '') throw new Error('text outside the root');
    if (lt === -1) break;
    tag.lastIndex = lt;
    const m = tag.exec(xml);
    if (!m) throw new Error(`malformed tag at ${lt}: ${xml.slice(lt, lt + 40)}`);
    const [, close, name, , selfClose] = m;
    if (close) {
      if (stack.pop() !== name) throw new Error(`mismatched </${name}>`);
    } else {
      if (stack.length === 0) roots++;
      names.push(name!);
      if (!selfClose) stack.push(name!);
    }
    i = tag.lastIndex;
  }
  if (stack.length !== 0) throw new Error(`unclosed <${stack.at(-1)}>`);
  if (roots !== 1) throw new Error(`expected one root element, found ${roots}`);
  return names;
}

describe('qkm sim bb84 helpers', () => {
  it('bb84Report gives the rate, QBER, μ, ν, max distance, PLOB and latency', () => {
    const r = bb84Report({ distanceKm: 50, scheme: 'vacuum-weak', mu: 0.48, nu: 0.05 });
    expect(r.muUsed).toBe(0.48);
    expect(r.nuUsed).toBe(0.05);
    expect(r.ratePerPulse).toBeGreaterThan(0);
    expect(r.bitsPerSecond).toBeCloseTo(r.ratePerPulse * 2e6, 6);
    expect(r.qber).toBeGreaterThan(0.03);
    expect(r.qber).toBeLessThan(0.04);
    expect(r.maxDistanceKm).toBeGreaterThan(138.5);
    expect(r.maxDistanceKm).toBeLessThan(142.5);
    expect(r.plobPerPulse).toBeGreaterThan(r.ratePerPulse);
    expect(r.latency.accumulationS).toBeCloseTo(1024 / r.bitsPerSecond, 9);
    expect(r.latency.firstBlockLatencyS).toBeGreaterThan(r.latency.accumulationS);
    const inf = bb84Report({ distanceKm: 50, scheme: 'infinite' });
    expect(inf.nuUsed).toBeNull();
    expect(JSON.parse(JSON.stringify(inf))).toEqual(inf);
  });

  it('bb84Sweep covers from..to inclusive with every requested scheme', () => {
    const rows = bb84Sweep({ from: 0, to: 150, step: 5 });
    expect(rows).toHaveLength(31);
    expect(rows.at(-1)!.distanceKm).toBe(150);
    for (const r of rows) {
      expect(Object.keys(r.schemes).sort()).toEqual(['infinite', 'none', 'vacuum-weak']);
    }
    const one = bb84Sweep({ from: 0, to: 1, step: 0.1, scheme: 'none' });
    expect(one).toHaveLength(11);
    expect(one.at(-1)!.distanceKm).toBe(1);
    expect(Object.keys(one[0]!.schemes)).toEqual(['none']);
    expect(() => bb84Sweep({ from: 0, to: 10, step: 0 })).toThrow(RangeError);
    expect(() => bb84Sweep({ from: 10, to: 0, step: 1 })).toThrow(RangeError);
    expect(() => bb84Sweep({ from: 0, to: 1e6, step: 1 })).toThrow(RangeError);
  });

  it('formatSweepTable prints a header and one line per distance', () => {
    const rows = bb84Sweep({ from: 0, to: 20, step: 10, schemes: ['infinite', 'vacuum-weak'] });
    const table = formatSweepTable(rows);
    const lines = table.trimEnd().split('\n');
    expect(lines).toHaveLength(2 + 3);
    expect(lines[0]).toMatch(/km.*infinite R\/pulse.*vacuum-weak R\/pulse.*PLOB R\/pulse/);
    expect(lines[2]!.trim().startsWith('0')).toBe(true);
  });

  it('renderSweepSvg is well-formed with one polyline per series', () => {
    const rows = bb84Sweep({ from: 0, to: 150, step: 5 });
    const svg = renderSweepSvg(rows, { title: 'GYS link <test> & sweep' });
    const names = parseXml(svg);
    expect(names[0]).toBe('svg');
    expect(names.filter((n) => n === 'polyline')).toHaveLength(4);
    for (const s of ['infinite', 'vacuum-weak', 'none', 'plob']) {
      const m = svg.match(new RegExp(`<polyline data-series="${s}"[^>]*points="([^"]*)"`));
      expect(m).not.toBeNull();
      const pts = m![1]!.split(' ').map((p) => p.split(',').map(Number));
      expect(pts.length).toBeGreaterThan(2);
      for (const [x, y] of pts) {
        expect(Number.isFinite(x)).toBe(true);
        expect(Number.isFinite(y)).toBe(true);
      }
    }
    expect(svg).toContain('&#60;test&#62; &#38; sweep');
    expect(svg).toContain('Infinite decoy');
    expect(svg).toContain('PLOB bound');
  });

  it('renderSweepSvg copes with a single scheme and with no rows', () => {
    const names = parseXml(renderSweepSvg(bb84Sweep({ from: 0, to: 60, step: 10, scheme: 'none' })));
    expect(names.filter((n) => n === 'polyline')).toHaveLength(2);
    expect(parseXml(renderSweepSvg([])).filter((n) => n === 'polyline')).toHaveLength(1);
  });
});
