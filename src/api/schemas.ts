import { type TSchema, Type } from '@sinclair/typebox';
import { ERROR_CATALOGUE, type ErrorCode } from '../core/errors.js';

/**
 * Schemas shared by the routes. Response schemas double as allowlists: fastify serialises only
 * the properties they name, so a field holding a secret cannot leak through a response by accident.
 */

export const ErrorBody = Type.Object(
  {
    error: Type.Union(
      (Object.keys(ERROR_CATALOGUE) as ErrorCode[]).map((c) => Type.Literal(c)),
      { description: 'Error code from the catalogue' },
    ),
    message: Type.String(),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { description: 'Every error response has this shape' },
);

export const SourceSnapshot = Type.Object({
  id: Type.String(),
  driver: Type.String(),
  kind: Type.Union([Type.Literal('quantum'), Type.Literal('physical'), Type.Literal('os')]),
  simulated: Type.Boolean(),
  state: Type.Union([
    Type.Literal('startup'),
    Type.Literal('healthy'),
    Type.Literal('quarantined'),
    Type.Literal('detached'),
    Type.Literal('closed'),
  ]),
  claimedMinEntropy: Type.Number(),
  estimatedMinEntropy: Type.Optional(Type.Number()),
  reason: Type.Optional(Type.String()),
});

export const ProvenanceSchema = Type.Object(
  {
    seedOrigin: Type.Union([Type.Literal('quantum'), Type.Literal('os')]),
    sources: Type.Array(SourceSnapshot),
    entropyCredited: Type.Number(),
    drbg: Type.Object({
      name: Type.String(),
      instance: Type.String(),
      reseedCounter: Type.Integer(),
      seededAt: Type.String(),
      predictionResistance: Type.Boolean(),
    }),
    degraded: Type.Boolean(),
    reason: Type.Optional(Type.String()),
    at: Type.String(),
  },
  {
    description:
      'Where the material came from; degraded=true whenever no healthy quantum source stood behind it',
  },
);

/** The standard error responses a route can give, keyed by status, for its response schema. */
export function errorResponses(...statuses: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const s of [400, 401, 403, 421, 429, ...statuses]) out[s] = ErrorBody;
  return out;
}
