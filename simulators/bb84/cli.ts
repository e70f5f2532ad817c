/**
 * Pure functions behind `qkm sim bb84`: a one-distance report, a distance sweep, a text table and
 * a self-contained SVG chart. No I/O here; the CLI prints or writes what these return.
 */
import { type LatencyReport, latencyModel } from './latency.js';
import {
  BB84_SCHEMES,
  type Bb84Scheme,
  DEFAULT_NU,
  type LinkParams,
  maxDistance,
  optimalKeyRate,
  plobBound,
  resolveParams,
} from './model.js';

export interface Bb84ReportOptions {
  distanceKm: number;
  scheme?: Bb84Scheme;
  /** Pin μ; otherwise it is optimised for the distance. */
  mu?: number;
  /** Weak decoy for 'vacuum-weak' (default 0.05). */
  nu?: number;
  params?: Partial<LinkParams>;
  /** Secret bits per block for the latency figures (default 1024). */
  blockBits?: number;
  /** Post-processing compute time per block, s (default 0.05). */
  postProcessingS?: number;
  /** Classical round trips per block (default 3). */
  classicalRoundTrips?: number;
}

export interface Bb84Report {
  scheme: Bb84Scheme;
  distanceKm: number;
  /** Channel transmittance η (including η_Bob). */
  eta: number;
  ratePerPulse: number;
  bitsPerSecond: number;
  /** E_μ. */
  qber: number;
  muUsed: number;
  /** ν for 'vacuum-weak', null otherwise. */
  nuUsed: number | null;
  /** Maximum secure distance with the same μ policy (pinned μ, or optimised per distance). */
  maxDistanceKm: number;
  plobPerPulse: number;
  plobBitsPerSecond: number;
  latency: LatencyReport;
}

/** Everything `qkm sim bb84 --distance` prints, as one JSON-able object. */
export function bb84Report(options: Bb84ReportOptions): Bb84Report {
  const scheme = options.scheme ?? 'vacuum-weak';
  const params = resolveParams(options.params);
  const opts = { mu: options.mu, nu: options.nu, params };
  const point = optimalKeyRate(scheme, options.distanceKm, opts);
  const plob = plobBound(options.distanceKm, params);
  return {
    scheme,
    distanceKm: options.distanceKm,
    eta: point.eta,
    ratePerPulse: point.ratePerPulse,
    bitsPerSecond: point.bitsPerSecond,
    qber: point.qber,
    muUsed: point.mu,
    nuUsed: scheme === 'vacuum-weak' ? (point.nu ?? DEFAULT_NU) : null,
    maxDistanceKm: maxDistance(scheme, opts),
    plobPerPulse: plob,
    plobBitsPerSecond: plob * params.pulseRateHz,
    latency: latencyModel({
      keyRateBps: point.bitsPerSecond,
      distanceKm: options.distanceKm,
      blockBits: options.blockBits ?? 1024,
      postProcessingS: options.postProcessingS,
      classicalRoundTrips: options.classicalRoundTrips,
    }),
  };
}

export interface SweepPoint {
  ratePerPulse: number;
  bitsPerSecond: number;
  qber: number;
  mu: number;
}

/** One distance of a sweep: each requested scheme plus the PLOB bound. */
export interface SweepRow {
  distanceKm: number;
  plobPerPulse: number;
  schemes: Partial<Record<Bb84Scheme, SweepPoint>>;
}

export interface SweepOptions {
  from: number;
  to: number;
  step: number;
  /** One scheme or several (default all three). */
  scheme?: Bb84Scheme | readonly Bb84Scheme[];
  schemes?: readonly Bb84Scheme[];
  mu?: number;
  nu?: number;
  params?: Partial<LinkParams>;
}

/** Most rows a sweep may produce; a typo such as step 0.0001 should fail, not hang. */
const MAX_SWEEP_ROWS = 10_000;

/**
 * Rates at from, from+step, …, ≤ to (to included when it falls on the grid, within 1e-9).
 * @throws RangeError for step ≤ 0, to < from, negative distances or more than 10 000 rows.
 */
export function bb84Sweep(options: SweepOptions): SweepRow[] {
  const { from, to, step } = options;
  for (const [name, v] of [
    ['from', from],
    ['to', to],
    ['step', step],
  ] as const) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new RangeError(`${name} must be a finite number`);
  }
  if (from < 0) throw new RangeError('from must be ≥ 0');
  if (!(step > 0)) throw new RangeError('step must be > 0');
  if (to < from) throw new RangeError('to must be ≥ from');
  const count = Math.floor((to - from) / step + 1e-9) + 1;
  if (count > MAX_SWEEP_ROWS) throw new RangeError(`sweep would have more than ${MAX_SWEEP_ROWS} rows`);
  const requested = options.schemes ?? options.scheme ?? BB84_SCHEMES;
  const schemes: readonly Bb84Scheme[] = typeof requested === 'string' ? [requested] : requested;
  const params = resolveParams(options.params);
  const rows: SweepRow[] = [];
  for (let i = 0; i < count; i++) {
    // Multiply rather than accumulate so 0:150:0.1 lands on 150, not 149.99999999.
    const d = Number((from + i * step).toFixed(9));
    const row: SweepRow = { distanceKm: d, plobPerPulse: plobBound(d, params), schemes: {} };
    for (const s of schemes) {
      const p = optimalKeyRate(s, d, { mu: options.mu, nu: options.nu, params });
      row.schemes[s] = {
        ratePerPulse: p.ratePerPulse,
        bitsPerSecond: p.bitsPerSecond,
        qber: p.qber,
        mu: p.mu,
      };
    }
    rows.push(row);
  }
  return rows;
}

function schemesOf(rows: readonly SweepRow[]): Bb84Scheme[] {
  return BB84_SCHEMES.filter((s) => rows.some((r) => r.schemes[s] !== undefined));
}

function fmtRate(x: number): string {
  return x > 0 ? x.toExponential(3) : '0';
}

/** A fixed-width text table: distance, then rate/pulse, bits/s, QBER and μ per scheme, then PLOB. */
export function formatSweepTable(rows: readonly SweepRow[]): string {
  const schemes = schemesOf(rows);
  const header = ['km'];
  for (const s of schemes) header.push(`${s} R/pulse`, `${s} bit/s`, `${s} QBER`, `${s} mu`);
  header.push('PLOB R/pulse');
  const body = rows.map((r) => {
    const cells = [String(r.distanceKm)];
    for (const s of schemes) {
      const p = r.schemes[s];
      if (p === undefined) cells.push('-', '-', '-', '-');
      else
        cells.push(
          fmtRate(p.ratePerPulse),
          p.bitsPerSecond > 0 ? p.bitsPerSecond.toPrecision(4) : '0',
          p.ratePerPulse > 0 ? `${(p.qber * 100).toFixed(2)}%` : '-',
          p.ratePerPulse > 0 ? p.mu.toFixed(3) : '-',
        );
    }
    cells.push(fmtRate(r.plobPerPulse));
    return cells;
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((c) => c[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n') + '\n';
}

const SERIES_STYLE: Record<Bb84Scheme | 'plob', { label: string; color: string; dash?: string }> = {
  infinite: { label: 'Infinite decoy', color: '#1f77b4' },
  'vacuum-weak': { label: 'Vacuum + weak decoy', color: '#2ca02c' },
  none: { label: 'No decoy (GLLP)', color: '#d62728' },
  plob: { label: 'PLOB bound', color: '#555555', dash: '6 4' },
};

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function niceStep(range: number): number {
  const raw = range / 8;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

/**
 * An SVG line chart of secret key rate per pulse (log scale) against distance: one polyline per
 * scheme present in `rows`, plus one for PLOB. A scheme's line ends where its rate reaches zero
 * (drawn down to the bottom axis at the first zero-rate distance).
 */
export function renderSweepSvg(rows: readonly SweepRow[], options: { title?: string } = {}): string {
  const W = 800;
  const H = 500;
  const m = { left: 80, right: 190, top: 50, bottom: 60 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const schemes = schemesOf(rows);

  const dMin = rows.length > 0 ? Math.min(...rows.map((r) => r.distanceKm)) : 0;
  let dMax = rows.length > 0 ? Math.max(...rows.map((r) => r.distanceKm)) : 1;
  if (dMax <= dMin) dMax = dMin + 1;
  const positives = rows.flatMap((r) => [
    r.plobPerPulse,
    ...schemes.map((s) => r.schemes[s]?.ratePerPulse ?? 0),
  ]);
  const pos = positives.filter((v) => v > 0);
  const yTop = pos.length > 0 ? Math.ceil(Math.log10(Math.max(...pos))) : 0;
  let yBottom = pos.length > 0 ? Math.floor(Math.log10(Math.min(...pos))) : -8;
  if (yBottom >= yTop) yBottom = yTop - 1;
  yBottom = Math.max(yBottom, yTop - 12);

  const x = (d: number) => m.left + ((d - dMin) / (dMax - dMin)) * pw;
  const y = (r: number) => {
    const lv = Math.min(yTop, Math.max(yBottom, Math.log10(r)));
    return m.top + ((yTop - lv) / (yTop - yBottom)) * ph;
  };
  const pt = (d: number, r: number) => `${x(d).toFixed(2)},${y(r).toFixed(2)}`;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  const title = options.title ?? 'Decoy-state BB84 secret key rate vs distance';
  out.push(`<text x="${W / 2}" y="28" text-anchor="middle" font-size="16">${escapeXml(title)}</text>`);

  // Grid and ticks: decades on y, a round step on x.
  out.push('<g stroke="#e0e0e0" stroke-width="1">');
  for (let e = yBottom; e <= yTop; e++) {
    const yy = y(10 ** e).toFixed(2);
    out.push(`<line x1="${m.left}" y1="${yy}" x2="${m.left + pw}" y2="${yy}"/>`);
  }
  const xs = niceStep(dMax - dMin);
  const xTicks: number[] = [];
  for (let d = Math.ceil(dMin / xs) * xs; d <= dMax + 1e-9; d += xs) xTicks.push(Number(d.toFixed(9)));
  for (const d of xTicks) {
    const xx = x(d).toFixed(2);
    out.push(`<line x1="${xx}" y1="${m.top}" x2="${xx}" y2="${m.top + ph}"/>`);
  }
  out.push('</g>');
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#000000" stroke-width="1"/>`,
  );
  for (let e = yBottom; e <= yTop; e++) {
    const yy = y(10 ** e);
    const exp = `${e < 0 ? '\u2212' : ''}${Math.abs(e)}`;
    out.push(
      `<text x="${m.left - 14}" y="${(yy + 4).toFixed(2)}" text-anchor="end">10<tspan dy="-6" font-size="9">${exp}</tspan></text>`,
    );
  }
  for (const d of xTicks) {
    out.push(`<text x="${x(d).toFixed(2)}" y="${m.top + ph + 18}" text-anchor="middle">${d}</text>`);
  }
  out.push(`<text x="${m.left + pw / 2}" y="${H - 15}" text-anchor="middle">Fibre length (km)</text>`);
  out.push(
    `<text x="20" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 20 ${m.top + ph / 2})">Secret key rate (bits per pulse)</text>`,
  );

  const series: { key: Bb84Scheme | 'plob'; points: string[] }[] = [];
  for (const s of schemes) {
    const points: string[] = [];
    for (const r of rows) {
      const v = r.schemes[s]?.ratePerPulse ?? 0;
      if (v > 0) points.push(pt(r.distanceKm, v));
      else {
        if (points.length > 0) points.push(pt(r.distanceKm, 10 ** yBottom));
        if (points.length > 0) break;
      }
    }
    series.push({ key: s, points });
  }
  series.push({
    key: 'plob',
    points: rows.filter((r) => r.plobPerPulse > 0).map((r) => pt(r.distanceKm, r.plobPerPulse)),
  });

  out.push(`<g fill="none" stroke-width="2">`);
  for (const s of series) {
    const st = SERIES_STYLE[s.key];
    const dash = st.dash ? ` stroke-dasharray="${st.dash}"` : '';
    out.push(`<polyline data-series="${s.key}" stroke="${st.color}"${dash} points="${s.points.join(' ')}"/>`);
  }
  out.push('</g>');

  // Legend to the right of the plot.
  const lx = m.left + pw + 15;
  series.forEach((s, i) => {
    const st = SERIES_STYLE[s.key];
    const ly = m.top + 10 + i * 22;
    const dash = st.dash ? ` stroke-dasharray="${st.dash}"` : '';
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 28}" y2="${ly}" stroke="${st.color}" stroke-width="2"${dash}/>`,
    );
    out.push(`<text x="${lx + 34}" y="${ly + 4}">${escapeXml(st.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
