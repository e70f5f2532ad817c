/**
 * Asymptotic decoy-state BB84 link model (GLLP security analysis).
 *
 * Sources, and the equation each piece follows:
 * - X. Ma, B. Qi, Y. Zhao, H.-K. Lo, "Practical decoy state for quantum key distribution",
 *   PRA 72, 012326 (2005) — "MQZL" below: gains and error rates (eqs. 2–11), the vacuum + weak
 *   decoy bounds Y1^{L,ν,0} (eq. 34) and e1^{U,ν,0} (eq. 37), the GYS parameter set (Table I).
 * - H.-K. Lo, X. Ma, K. Chen, "Decoy state quantum key distribution", PRL 94, 230504 (2005):
 *   the key-rate formula R ≥ q{−Q_μ f(E_μ) H2(E_μ) + Q1[1 − H2(e1)]}.
 * - D. Gottesman, H.-K. Lo, N. Lütkenhaus, J. Preskill (GLLP), QIC 4, 325 (2004): the no-decoy
 *   rate with the multi-photon fraction Δ.
 * - S. Pirandola, R. Laurenza, C. Ottaviani, L. Banchi (PLOB), Nat. Commun. 8, 15043 (2017):
 *   the repeaterless bound −log2(1 − η) per channel use.
 *
 * Everything here is a pure function of its arguments; rates are per emitted pulse unless the
 * name says "bits per second". Bad arguments throw TypeError (wrong type) or RangeError (out of
 * range) before any arithmetic happens.
 */

/** Which decoy analysis bounds the single-photon yield and error rate. */
export type Bb84Scheme = 'infinite' | 'vacuum-weak' | 'none';

export const BB84_SCHEMES: readonly Bb84Scheme[] = Object.freeze(['infinite', 'vacuum-weak', 'none']);

/** Physical and protocol parameters of one link. All fields are configurable. */
export interface LinkParams {
  /** Wavelength, nm. Informational: α already describes the fibre at this wavelength. */
  wavelengthNm: number;
  /** Fibre loss coefficient α, dB/km. */
  alphaDbPerKm: number;
  /** Probability that a detected photon hits the wrong detector (optical misalignment), e_det. */
  eDet: number;
  /** Background (dark count) yield per pulse, Y0. */
  y0: number;
  /** Bob's internal transmittance times detector efficiency, η_Bob. */
  etaBob: number;
  /** Error-correction inefficiency f(E_μ) ≥ 1 (taken as a constant). */
  f: number;
  /** Pulse repetition rate, Hz (converts per-pulse rates to bits per second). */
  pulseRateHz: number;
  /** Basis-sifting factor q (½ for BB84 with random bases). */
  q: number;
}

/**
 * The GYS experiment's parameters (C. Gobby, Z. Yuan, A. Shields, APL 84, 3762 (2004)) as
 * tabulated in MQZL Table I, with f = 1.22 and q = ½ as used there.
 */
export const GYS_PARAMS: Readonly<LinkParams> = Object.freeze({
  wavelengthNm: 1550,
  alphaDbPerKm: 0.21,
  eDet: 0.033,
  y0: 1.7e-6,
  etaBob: 0.045,
  f: 1.22,
  pulseRateHz: 2e6,
  q: 0.5,
});

/** Error rate of a background count: dark counts are random, MQZL eq. 4. */
export const E0 = 0.5;

/** Default weak-decoy intensity for the vacuum + weak scheme (MQZL §V uses ν = 0.05 for GYS). */
export const DEFAULT_NU = 0.05;

/** Largest signal intensity the optimiser considers; rates fall off steeply well before it. */
const MU_MAX = 1.5;
/** Smallest μ/ν the vacuum + weak optimiser considers (see optimalKeyRate). */
const VW_MIN_MU_OVER_NU = 1.001;
/** Smallest signal intensity the optimiser considers (no-decoy optima sit near η, ≥ 1e-5 here). */
const MU_MIN = 1e-7;

function checkFinite(value: unknown, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isFinite(value)) throw new RangeError(`${name} must be finite`);
  return value;
}

function checkRange(value: unknown, name: string, min: number, max: number, openMin = false): number {
  const v = checkFinite(value, name);
  if (v < min || v > max || (openMin && v === min)) {
    throw new RangeError(`${name} must be in ${openMin ? '(' : '['}${min}, ${max}]`);
  }
  return v;
}

/**
 * Merge `overrides` onto the GYS defaults and validate every field.
 * @throws TypeError for a non-number, RangeError for a value outside its physical range.
 */
export function resolveParams(overrides?: Partial<LinkParams>): LinkParams {
  if (overrides !== undefined && (typeof overrides !== 'object' || overrides === null)) {
    throw new TypeError('params must be an object');
  }
  const p: LinkParams = { ...GYS_PARAMS, ...(overrides ?? {}) };
  checkRange(p.wavelengthNm, 'wavelengthNm', 0, Number.MAX_VALUE, true);
  checkRange(p.alphaDbPerKm, 'alphaDbPerKm', 0, 100);
  checkRange(p.eDet, 'eDet', 0, 0.5);
  checkRange(p.y0, 'y0', 0, 1);
  checkRange(p.etaBob, 'etaBob', 0, 1, true);
  checkRange(p.f, 'f', 1, 10);
  checkRange(p.pulseRateHz, 'pulseRateHz', 0, 1e13, true);
  checkRange(p.q, 'q', 0, 1, true);
  return p;
}

function checkDistance(distanceKm: unknown): number {
  return checkRange(distanceKm, 'distanceKm', 0, 100_000);
}

/** Overall transmittance η = η_Bob · 10^(−αL/10), MQZL eq. 1 (η_Bob includes detector efficiency). */
export function transmittance(distanceKm: number, params: LinkParams = GYS_PARAMS): number {
  const d = checkDistance(distanceKm);
  return params.etaBob * 10 ** ((-params.alphaDbPerKm * d) / 10);
}

/** Binary entropy H2(x) = −x log2 x − (1−x) log2(1−x), with H2(0) = H2(1) = 0. */
export function h2(x: number): number {
  if (x <= 0 || x >= 1) return 0;
  return -x * Math.log2(x) - (1 - x) * Math.log2(1 - x);
}

/** Yield of an n-photon state, Y_n = 1 − (1 − Y0)(1 − η)^n (MQZL eq. 2). */
export function yieldN(n: number, eta: number, params: LinkParams = GYS_PARAMS): number {
  return 1 - (1 - params.y0) * (1 - eta) ** n;
}

/** Gain of a coherent state of mean photon number μ, Q_μ = Y0 + 1 − e^{−ημ} (MQZL eq. 7). */
export function gain(mu: number, eta: number, params: LinkParams = GYS_PARAMS): number {
  // −expm1 keeps the ~ημ ≪ 1 part exact; 1 − exp() would lose it to rounding against 1, which
  // the vacuum + weak bound (a difference of nearly equal gains) amplifies by μ/(μ − ν).
  return params.y0 - Math.expm1(-eta * mu);
}

/** Overall QBER of a coherent state, E_μ = [e0 Y0 + e_det(1 − e^{−ημ})]/Q_μ (MQZL eq. 9). */
export function errorRate(mu: number, eta: number, params: LinkParams = GYS_PARAMS): number {
  const q = gain(mu, eta, params);
  if (q <= 0) return E0;
  return (E0 * params.y0 - params.eDet * Math.expm1(-eta * mu)) / q;
}

/** Probability that a Poisson source of mean μ emits two or more photons. */
export function multiPhotonProbability(mu: number): number {
  return 1 - (1 + mu) * Math.exp(-mu);
}

/** PLOB repeaterless bound −log2(1 − η), secret bits per channel use (pulse). */
export function plobBound(distanceKm: number, params: LinkParams = GYS_PARAMS): number {
  const eta = transmittance(distanceKm, params);
  return -Math.log2(1 - eta);
}

/** One evaluated operating point of the link. */
export interface RatePoint {
  scheme: Bb84Scheme;
  distanceKm: number;
  /** Channel transmittance η including η_Bob. */
  eta: number;
  /** Signal intensity used. */
  mu: number;
  /** Weak-decoy intensity used ('vacuum-weak' only). */
  nu?: number;
  /** Secret bits per emitted pulse, ≥ 0 (negative values of the formula are clamped to 0). */
  ratePerPulse: number;
  /** ratePerPulse × pulse rate. */
  bitsPerSecond: number;
  /** Signal gain Q_μ. */
  gainMu: number;
  /** Signal QBER E_μ, in [0, ½]. */
  qber: number;
  /**
   * Single-photon yield used in the rate: exact for 'infinite', the lower bound for
   * 'vacuum-weak', and the worst-case single-photon fraction Q_μ(1−Δ)/(μe^{−μ}) for 'none'.
   */
  y1: number;
  /** Single-photon error rate used (exact, upper bound, or E_μ/(1−Δ)); capped at ½. */
  e1: number;
  /** Single-photon gain Q1 used in the rate. */
  q1: number;
  /** The formula's value before clamping (useful to see how far from secure a point is). */
  rawRatePerPulse: number;
}

/** Options for a single evaluation; `nu` only matters for 'vacuum-weak'. */
export interface RateOptions {
  mu: number;
  nu?: number;
  params?: Partial<LinkParams>;
}

function checkScheme(scheme: unknown): Bb84Scheme {
  if (typeof scheme !== 'string' || !(BB84_SCHEMES as readonly string[]).includes(scheme)) {
    throw new RangeError(`scheme must be one of ${BB84_SCHEMES.join(', ')}`);
  }
  return scheme as Bb84Scheme;
}

/**
 * Single-photon quantities for a scheme at (μ, ν, η). Returns null when the scheme certifies
 * no single-photon content at all (non-positive Y1 bound or Δ ≥ 1): no key.
 */
function singlePhoton(
  scheme: Bb84Scheme,
  mu: number,
  nu: number,
  eta: number,
  p: LinkParams,
): { y1: number; e1: number; q1: number } | null {
  const qMu = gain(mu, eta, p);
  const eMu = errorRate(mu, eta, p);
  switch (scheme) {
    case 'infinite': {
      // MQZL eqs. 5–6 (Y1 = Y0 + η − Y0η exactly, from eq. 2 with n = 1).
      const y1 = p.y0 + eta - p.y0 * eta;
      const e1 = Math.min(E0, (E0 * p.y0 + p.eDet * eta) / y1);
      return { y1, e1, q1: y1 * mu * Math.exp(-mu) };
    }
    case 'vacuum-weak': {
      // MQZL eq. 34: lower bound on Y1 from a vacuum and one weak decoy ν < μ, with Y0 known
      // from the vacuum decoy (asymptotically exact).
      const qNu = gain(nu, eta, p);
      const eNu = errorRate(nu, eta, p);
      const y1 =
        (mu / (mu * nu - nu * nu)) *
        (qNu * Math.exp(nu) -
          (qMu * Math.exp(mu) * nu * nu) / (mu * mu) -
          ((mu * mu - nu * nu) / (mu * mu)) * p.y0);
      if (!(y1 > 0)) return null;
      // MQZL eq. 37: upper bound on e1 from the weak decoy's error rate.
      const e1 = Math.min(E0, Math.max(0, (eNu * qNu * Math.exp(nu) - E0 * p.y0) / (y1 * nu)));
      return { y1, e1, q1: y1 * mu * Math.exp(-mu) };
    }
    case 'none': {
      // GLLP: assume every multi-photon pulse reached Bob and is insecure; the single-photon
      // part of the detections is the fraction 1 − Δ, Δ = p_multi / Q_μ, and all errors are
      // charged to it: e1 = E_μ/(1 − Δ).
      const delta = multiPhotonProbability(mu) / qMu;
      if (!(delta < 1)) return null;
      const q1 = qMu * (1 - delta);
      const e1 = Math.min(E0, eMu / (1 - delta));
      return { y1: q1 / (mu * Math.exp(-mu)), e1, q1 };
    }
  }
}

/** The key-rate formula, unclamped; −∞ when the scheme certifies no single photons. */
function rawRate(scheme: Bb84Scheme, mu: number, nu: number, eta: number, p: LinkParams): number {
  const qMu = gain(mu, eta, p);
  const eMu = errorRate(mu, eta, p);
  const sp = singlePhoton(scheme, mu, nu, eta, p);
  if (sp === null) return Number.NEGATIVE_INFINITY;
  return p.q * (-qMu * p.f * h2(eMu) + sp.q1 * (1 - h2(sp.e1)));
}

function checkMuNu(scheme: Bb84Scheme, mu: unknown, nu: unknown): { mu: number; nu: number } {
  const m = checkRange(mu, 'mu', 0, 100, true);
  const n = nu === undefined ? DEFAULT_NU : checkRange(nu, 'nu', 0, 100, true);
  if (scheme === 'vacuum-weak' && !(n < m)) throw new RangeError('nu must be smaller than mu');
  return { mu: m, nu: n };
}

function evaluate(scheme: Bb84Scheme, distanceKm: number, mu: number, nu: number, p: LinkParams): RatePoint {
  const eta = transmittance(distanceKm, p);
  const qMu = gain(mu, eta, p);
  const qber = errorRate(mu, eta, p);
  const sp = singlePhoton(scheme, mu, nu, eta, p) ?? { y1: 0, e1: E0, q1: 0 };
  const raw = rawRate(scheme, mu, nu, eta, p);
  const ratePerPulse = Math.max(raw, 0);
  const point: RatePoint = {
    scheme,
    distanceKm,
    eta,
    mu,
    ratePerPulse,
    bitsPerSecond: ratePerPulse * p.pulseRateHz,
    gainMu: qMu,
    qber,
    y1: sp.y1,
    e1: sp.e1,
    q1: sp.q1,
    rawRatePerPulse: raw,
  };
  if (scheme === 'vacuum-weak') point.nu = nu;
  return point;
}

/**
 * Key rate at a fixed signal intensity μ (and weak decoy ν for 'vacuum-weak', default 0.05).
 * @throws RangeError for an unknown scheme, a negative distance, μ ≤ 0, or ν ≥ μ ('vacuum-weak').
 */
export function keyRate(scheme: Bb84Scheme, distanceKm: number, options: RateOptions): RatePoint {
  const s = checkScheme(scheme);
  const d = checkDistance(distanceKm);
  const p = resolveParams(options?.params);
  const { mu, nu } = checkMuNu(s, options?.mu, options?.nu);
  return evaluate(s, d, mu, nu, p);
}

/** Options for the optimising evaluation: a given `mu` pins μ instead of optimising it. */
export interface OptimalRateOptions {
  mu?: number;
  nu?: number;
  params?: Partial<LinkParams>;
}

const GOLDEN = (Math.sqrt(5) - 1) / 2;

/**
 * μ that maximises the (unclamped) rate on [lo, hi]: a log-spaced grid finds the bracket, then
 * golden-section search refines it in log μ. The rate is smooth and unimodal in μ for all three
 * schemes, so the grid only guards against starting in the −∞ region of 'vacuum-weak'/'none'.
 */
function optimiseMu(rate: (mu: number) => number, lo: number, hi: number): number {
  const n = 80;
  const a = Math.log(lo);
  const b = Math.log(hi);
  let best = 0;
  let bestValue = Number.NEGATIVE_INFINITY;
  const xs: number[] = [];
  for (let i = 0; i <= n; i++) {
    const x = a + ((b - a) * i) / n;
    xs.push(x);
    const v = rate(Math.exp(x));
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  if (bestValue === Number.NEGATIVE_INFINITY) return Math.exp(xs[n]!);
  let left = xs[Math.max(0, best - 1)]!;
  let right = xs[Math.min(n, best + 1)]!;
  let x1 = right - GOLDEN * (right - left);
  let x2 = left + GOLDEN * (right - left);
  let f1 = rate(Math.exp(x1));
  let f2 = rate(Math.exp(x2));
  for (let i = 0; i < 200 && right - left > 1e-12; i++) {
    if (f1 < f2) {
      left = x1;
      x1 = x2;
      f1 = f2;
      x2 = left + GOLDEN * (right - left);
      f2 = rate(Math.exp(x2));
    } else {
      right = x2;
      x2 = x1;
      f2 = f1;
      x1 = right - GOLDEN * (right - left);
      f1 = rate(Math.exp(x1));
    }
  }
  const candidates = [Math.exp(xs[best]!), Math.exp(x1), Math.exp(x2)];
  let mu = candidates[0]!;
  let v = rate(mu);
  for (const c of candidates.slice(1)) {
    const cv = rate(c);
    if (cv > v) {
      v = cv;
      mu = c;
    }
  }
  return mu;
}

/**
 * Key rate with μ optimised for this distance and scheme (unless `options.mu` pins it).
 * For 'vacuum-weak', ν stays fixed (default 0.05) and μ is searched above it.
 */
export function optimalKeyRate(
  scheme: Bb84Scheme,
  distanceKm: number,
  options: OptimalRateOptions = {},
): RatePoint {
  const s = checkScheme(scheme);
  const d = checkDistance(distanceKm);
  const p = resolveParams(options.params);
  if (options.mu !== undefined) {
    const { mu, nu } = checkMuNu(s, options.mu, options.nu);
    return evaluate(s, d, mu, nu, p);
  }
  const nu = options.nu === undefined ? DEFAULT_NU : checkRange(options.nu, 'nu', 0, 100, true);
  const eta = transmittance(d, p);
  // μ stays a little above ν: the Y1 bound divides by μ − ν, and as μ → ν the rounding of
  // Q_ν e^ν − Q_μ e^μ ν²/μ² (relative ε/(1 − ν/μ)) would let it exceed the true Y1.
  const lo = s === 'vacuum-weak' ? nu * VW_MIN_MU_OVER_NU : MU_MIN;
  const hi = s === 'vacuum-weak' ? Math.max(MU_MAX, nu * 2) : MU_MAX;
  const mu = optimiseMu((m) => rawRate(s, m, nu, eta, p), lo, hi);
  return evaluate(s, d, mu, nu, p);
}

/**
 * Largest distance (km) with a positive key rate, by bisection to 1e-6 km; μ optimised per
 * distance unless `options.mu` is given. 0 when even a zero-length link yields no key.
 */
export function maxDistance(scheme: Bb84Scheme, options: OptimalRateOptions = {}): number {
  const s = checkScheme(scheme);
  const positive = (d: number) => optimalKeyRate(s, d, options).ratePerPulse > 0;
  if (!positive(0)) return 0;
  let lo = 0;
  let hi = 50;
  while (positive(hi)) {
    lo = hi;
    hi *= 2;
    if (hi > 100_000) return Number.POSITIVE_INFINITY;
  }
  while (hi - lo > 1e-6) {
    const mid = (lo + hi) / 2;
    if (positive(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}
