import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { ERROR_CATALOGUE, type ErrorCode } from '../core/errors.js';
import { ProvenanceSchema, SourceSnapshotSchema } from '../core/provenance.js';
import { PostureSchema } from '../session/posture.js';
import { SessionProvenanceSchema } from '../session/records.js';

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

// Provenance, posture and session provenance are defined once, next to the code that fills
// them (src/core, src/session); they are re-exported here with the rest of the wire schemas.
export {
  DrbgProvenanceSchema,
  ProvenanceSchema,
  SourceKindSchema,
  SourceSnapshotSchema,
  SourceStateSchema,
} from '../core/provenance.js';
export { PostureSchema } from '../session/posture.js';
export { SessionProvenanceSchema } from '../session/records.js';

export const KeyMetaSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  size: Type.Integer({ description: 'bytes' }),
  purpose: Type.Union([
    Type.Literal('symmetric'),
    Type.Literal('session'),
    Type.Literal('identity'),
    Type.Literal('qkd'),
  ]),
  created: Type.String(),
  expires: Type.Union([Type.String(), Type.Null()]),
  state: Type.Union([Type.Literal('active'), Type.Literal('taken'), Type.Literal('expired')]),
  closedAt: Type.Optional(Type.String()),
  owner: Type.Optional(Type.String()),
  label: Type.Optional(Type.String()),
  provenance: ProvenanceSchema,
});

/** `POST /v1/keys/{id}/take`, 200. */
export const TakenKeySchema = Type.Object({
  ...KeyMetaSchema.properties,
  key: Type.String({ description: 'base64' }),
  redelivered: Type.Optional(
    Type.Boolean({ description: 'true: a retry (same Idempotency-Key) got the bytes once more' }),
  ),
});

/** `GET /v1/entropy`, 200 (JSON). */
export const EntropyResponseSchema = Type.Object({
  data: Type.String({ description: 'base64' }),
  bytes: Type.Integer(),
  provenance: ProvenanceSchema,
});

/** `POST /v1/sessions`, 201. */
export const InitiateResponseSchema = Type.Object({
  session_id: Type.String(),
  key: Type.Optional(Type.String({ description: 'base64, 32 bytes; absent with require_confirm' })),
  key_pending: Type.Optional(Type.Boolean()),
  handshake: Type.String({ description: 'base64url signed handshake message' }),
  posture: PostureSchema,
  provenance: SessionProvenanceSchema,
});

/** `POST /v1/sessions/accept`, 200. */
export const AcceptResponseSchema = Type.Object({
  session_id: Type.String(),
  key: Type.String({ description: 'base64, 32 bytes' }),
  posture: PostureSchema,
  provenance: SessionProvenanceSchema,
  confirm: Type.String({ description: 'base64url key-confirmation tag for the initiator' }),
  peer: Type.String(),
  peer_agent: Type.String({ description: 'the initiating agent, as the signed handshake names it' }),
  context: Type.String(),
});

/** `POST /v1/sessions/{id}/confirm`, 200. */
export const ConfirmResponseSchema = Type.Object({
  session_id: Type.String(),
  confirmed: Type.Boolean(),
  key: Type.Optional(
    Type.String({ description: 'base64, 32 bytes: the key held by require_confirm (once)' }),
  ),
});

export const AgentSchema = Type.Object({
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  created: Type.String(),
  revoked: Type.Optional(Type.String()),
  aid: Type.Optional(Type.String()),
});

/** Work done on a worker thread, and inline (on the event loop) instead. */
const WorkCounts = Type.Object({ worker: Type.Integer(), inline: Type.Integer() });

const PerPosture = Type.Object({
  PQC: Type.Integer(),
  'PQC+QRNG': Type.Integer(),
  'QKD+PQC+QRNG': Type.Integer(),
});

/** `GET /v1/status`, 200. */
export const StatusSchema = Type.Object({
  version: Type.String(),
  nodeId: Type.Optional(Type.String()),
  region: Type.String(),
  mode: Type.Union([Type.Literal('simulator'), Type.Literal('hardware')]),
  startedAt: Type.String(),
  uptimeSeconds: Type.Number(),
  degraded: Type.Boolean(),
  reasons: Type.Array(Type.String()),
  entropy: Type.Object({
    quantumAvailable: Type.Boolean(),
    degraded: Type.Boolean(),
    reason: Type.Optional(Type.String()),
    sources: Type.Array(SourceSnapshotSchema),
    drbg: Type.Object({
      name: Type.String(),
      seedOrigin: Type.Union([Type.Literal('quantum'), Type.Literal('os'), Type.Literal('unseeded')]),
      reseedCounter: Type.Integer(),
      seededAt: Type.Union([Type.String(), Type.Null()]),
      bytesSinceReseed: Type.Integer(),
    }),
    counters: Type.Object({
      bytesServed: Type.Integer(),
      bytesServedDegraded: Type.Integer(),
      reseeds: Type.Integer(),
      healthFailures: Type.Integer(),
      requestsRejected: Type.Integer(),
    }),
  }),
  keys: Type.Object({ active: Type.Integer(), taken: Type.Integer(), expired: Type.Integer() }),
  qkd: Type.Array(
    Type.Object({
      peerSaeId: Type.String(),
      kmeId: Type.String(),
      kmeUrl: Type.String(),
      up: Type.Boolean(),
      storedKeyCount: Type.Optional(Type.Integer()),
      lastError: Type.Optional(Type.String()),
      lastErrorAt: Type.Optional(Type.String()),
      lastOkAt: Type.Optional(Type.String()),
    }),
  ),
  sessions: Type.Object({
    initiated: PerPosture,
    initiatedDegraded: PerPosture,
    refused: Type.Integer(),
    accepted: PerPosture,
    rejected: Type.Record(Type.String(), Type.Integer()),
    abandoned: Type.Record(Type.String(), Type.Integer()),
    qkdKeysWasted: Type.Integer(),
    mldsa: WorkCounts,
  }),
  audit: Type.Object({
    records: Type.Integer(),
    sealedThrough: Type.Integer(),
    seals: Type.Optional(WorkCounts),
    unsealedTail: Type.Optional(
      Type.Object({
        from_seq: Type.Integer(),
        through_seq: Type.Integer(),
        count: Type.Integer(),
        chain_ok: Type.Boolean(),
        reason: Type.Optional(Type.String()),
      }),
    ),
  }),
});

/**
 * The wire types, made from the schemas above: what the API answers, field for field. The
 * client SDK (src/client) is typed with these, so a schema change shows up in its types.
 */
export type { Posture } from '../session/posture.js';
export type {
  Provenance,
  SourceSnapshot,
  SourceState,
  SourceKind,
  DrbgProvenance,
} from '../core/provenance.js';
export type { SessionProvenance } from '../session/records.js';
export type ErrorResponse = Static<typeof ErrorBody>;
export type KeyMetadata = Static<typeof KeyMetaSchema>;
export type TakenKeyResponse = Static<typeof TakenKeySchema>;
export type EntropyResponseBody = Static<typeof EntropyResponseSchema>;
export type InitiateResponse = Static<typeof InitiateResponseSchema>;
export type AcceptResponse = Static<typeof AcceptResponseSchema>;
export type ConfirmResponse = Static<typeof ConfirmResponseSchema>;
export type AgentInfo = Static<typeof AgentSchema>;
export type ApplianceStatus = Static<typeof StatusSchema>;

/** The standard error responses a route can give, keyed by status, for its response schema. */
export function errorResponses(...statuses: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const s of [400, 401, 403, 421, 429, ...statuses]) out[s] = ErrorBody;
  return out;
}
