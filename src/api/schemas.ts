import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { ERROR_CATALOGUE, type ErrorCode } from '../core/errors.js';
import { ProvenanceSchema, SourceSnapshotSchema } from '../core/provenance.js';
import { IdentityBundleSchema } from '../session/identity.js';
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
export { IdentityBundleSchema } from '../session/identity.js';
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
  peer: Type.Optional(Type.String({ description: "the responder's node id" })),
  peer_endpoint: Type.Optional(
    Type.String({
      description:
        "where the responder agent's node is reached, as the Provider's bundle says (governed sessions)",
    }),
  ),
});

/** An access token for resumed sessions (governed sessions, protocol qkm/v2). */
export const TokenSchema = Type.Object(
  {
    id: Type.String(),
    sealed: Type.String({ description: 'base64url AES-256-GCM token body; opens only with the session key' }),
    expires: Type.String(),
    max_uses: Type.Integer(),
  },
  { description: 'Access token for resumed sessions (hand it to the initiating agent, for its confirm)' },
);

/** `POST /v1/sessions/resume`, 201. */
export const ResumeStartSchema = Type.Object({
  resume_id: Type.String(),
  resume: Type.String({ description: 'base64url resume message for the responder agent' }),
  token_id: Type.String(),
  peer: Type.String(),
  peer_aid: Type.String(),
});

/** `POST /v1/sessions/resume/accept` and `/v1/sessions/resume/{id}/complete`, 200. */
export const ResumedSessionSchema = Type.Object({
  session_id: Type.String(),
  key: Type.String({ description: "base64, 32 bytes: K'" }),
  posture: PostureSchema,
  provenance: SessionProvenanceSchema,
  token_id: Type.String(),
  use: Type.Integer({ description: '1-based index of this use of the token' }),
  remaining: Type.Optional(Type.Integer({ description: 'responder: uses left' })),
  answer: Type.Optional(Type.String({ description: 'responder: base64url answer for the initiator' })),
  peer: Type.String(),
  peer_agent: Type.String(),
  peer_aid: Type.Optional(Type.String()),
});

/** `GET /v1/tokens`, 200. */
export const TokenListSchema = Type.Object({
  tokens: Type.Array(
    Type.Object({
      token_id: Type.String(),
      peer: Type.String(),
      peer_aid: Type.String(),
      expires: Type.String(),
      max_uses: Type.Integer(),
      used: Type.Integer(),
      session_id: Type.String(),
    }),
  ),
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
  peer_aid: Type.Optional(
    Type.String({ description: "governed sessions: the initiating agent's governed id" }),
  ),
  token: Type.Optional(TokenSchema),
});

/** `POST /v1/sessions/{id}/confirm`, 200. */
export const ConfirmResponseSchema = Type.Object({
  session_id: Type.String(),
  confirmed: Type.Boolean(),
  key: Type.Optional(
    Type.String({ description: 'base64, 32 bytes: the key held by require_confirm (once)' }),
  ),
  token: Type.Optional(TokenSchema),
});

/** A pinned peer (`GET /v1/peers`, `POST /v1/peers`). */
export const PeerSchema = Type.Object({
  node_id: Type.String(),
  bundle: IdentityBundleSchema,
  pinned_at: Type.String(),
  label: Type.Optional(Type.String()),
  min_posture: Type.Optional(PostureSchema),
});

/** `GET /v1/policy/{peer}`, 200: the posture decision table. */
export const PolicyExplanationSchema = Type.Object({
  peer: Type.String(),
  chosen: Type.Union([PostureSchema, Type.Null()]),
  minimum: Type.Optional(PostureSchema),
  reason: Type.Optional(Type.String()),
  table: Type.Array(
    Type.Object({
      posture: PostureSchema,
      sec: Type.Number(),
      lat: Type.Number(),
      cost: Type.Number(),
      score: Type.Number(),
      compliant: Type.Boolean(),
      available: Type.Boolean(),
      outage: Type.Boolean(),
      admissible: Type.Boolean(),
      why: Type.String(),
    }),
  ),
});

export const AgentSchema = Type.Object({
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  created: Type.String(),
  revoked: Type.Optional(Type.String()),
  aid: Type.Optional(Type.String()),
});

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
  }),
  audit: Type.Object({
    records: Type.Integer(),
    sealedThrough: Type.Integer(),
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
  pqc: Type.Object({
    backend: Type.Union([Type.Literal('liboqs-wasm'), Type.Literal('noble')]),
    signature: Type.String(),
    kemDecaps: Type.String(),
    kemEncaps: Type.String(),
    keygen: Type.String(),
    legacyVerified: Type.Integer(),
  }),
  peers: Type.Optional(
    Type.Object({
      pinned: Type.Integer({ description: 'peers pinned by the administrator (qkm peers add)' }),
      vouched: Type.Integer({
        description: 'initiator nodes the Provider vouched for, cached now (not pinned here)',
      }),
    }),
  ),
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
export type AccessToken = Static<typeof TokenSchema>;
export type ResumeStart = Static<typeof ResumeStartSchema>;
export type ResumedSessionResponse = Static<typeof ResumedSessionSchema>;
export type HeldTokenInfo = Static<typeof TokenListSchema>['tokens'][number];
export type AgentInfo = Static<typeof AgentSchema>;
export type { IdentityBundle } from '../session/identity.js';
export type PinnedPeer = Static<typeof PeerSchema>;
export type PolicyExplanation = Static<typeof PolicyExplanationSchema>;
export type ApplianceStatus = Static<typeof StatusSchema>;

/** The standard error responses a route can give, keyed by status, for its response schema. */
export function errorResponses(...statuses: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const s of [400, 401, 403, 421, 429, ...statuses]) out[s] = ErrorBody;
  return out;
}
