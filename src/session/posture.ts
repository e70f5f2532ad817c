import { type Static, Type } from '@sinclair/typebox';

/**
 * Cryptographic postures of a link, after the QSC paper (eq. 5–7), in increasing order of
 * strength. `PQC` is the universal baseline; each step adds a source of strength.
 */
/** The one definition of a posture on the wire (API schemas, SDK types) and in code. */
export const PostureSchema = Type.Union(
  [Type.Literal('PQC'), Type.Literal('PQC+QRNG'), Type.Literal('QKD+PQC+QRNG')],
  { description: 'PQC < PQC+QRNG < QKD+PQC+QRNG' },
);

export type Posture = Static<typeof PostureSchema>;

/** Every posture, in increasing order of strength (the schema's order). */
export const POSTURES: readonly Posture[] = PostureSchema.anyOf.map((s) => s.const);

export function isPosture(v: unknown): v is Posture {
  return typeof v === 'string' && (POSTURES as readonly string[]).includes(v);
}

/** 0 for PQC, 1 for PQC+QRNG, 2 for QKD+PQC+QRNG. */
export function postureRank(p: Posture): number {
  return POSTURES.indexOf(p);
}

export function postureAtLeast(p: Posture, min: Posture): boolean {
  return postureRank(p) >= postureRank(min);
}

export function maxPosture(...ps: Array<Posture | undefined>): Posture {
  let best: Posture = 'PQC';
  for (const p of ps) if (p !== undefined && postureRank(p) > postureRank(best)) best = p;
  return best;
}

export function postureHasQkd(p: Posture): boolean {
  return p === 'QKD+PQC+QRNG';
}

export function postureHasQrng(p: Posture): boolean {
  return p !== 'PQC';
}

/** Wire codes used in the handshake transcript (one byte). */
export const POSTURE_CODE: Record<Posture, number> = { PQC: 1, 'PQC+QRNG': 2, 'QKD+PQC+QRNG': 3 };

export function postureFromCode(code: number): Posture | undefined {
  return POSTURES.find((p) => POSTURE_CODE[p] === code);
}
