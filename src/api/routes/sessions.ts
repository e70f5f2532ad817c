import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AuditLog } from '../../audit/index.js';
import type { NodeIdentity, PeerRegistry, PosturePolicy, SessionService } from '../../session/index.js';
import { errorResponses } from '../schemas.js';

export interface SessionRouteOptions {
  identity: NodeIdentity;
  peers: PeerRegistry;
  policy: PosturePolicy;
  sessions: SessionService;
  audit: AuditLog;
}

const PostureSchema = Type.Union([
  Type.Literal('PQC'),
  Type.Literal('PQC+QRNG'),
  Type.Literal('QKD+PQC+QRNG'),
]);
const Open = (description: string) => Type.Object({}, { additionalProperties: true, description });

const BundleSchema = Type.Object(
  {
    // 2: domain-tagged signature; 1: made before that change (both verify).
    version: Type.Union([Type.Literal(1), Type.Literal(2)]),
    node_id: Type.String(),
    region: Type.String(),
    ml_dsa_65_public_key: Type.String(),
    ml_kem_768_public_key: Type.String(),
    sae_id: Type.Optional(Type.String()),
    kme_id: Type.Optional(Type.String()),
    created: Type.String(),
    signature: Type.String(),
  },
  { description: 'Self-signed public identity bundle (ML-DSA-65 over the canonical encoding)' },
);

const SessionProvenanceSchema = Type.Object({
  posture: PostureSchema,
  degraded: Type.Boolean(),
  reason: Type.Optional(Type.String()),
  fallback: Type.Boolean(),
  pqc: Open('KEM, signature, KDF and where the randomness came from'),
  qkd: Open('whether QKD key material went into K, key IDs and KME IDs'),
  qrng: Open('whether quantum entropy went into K, with its entropy provenance'),
  at: Type.String(),
});

const PeerSchema = Type.Object({
  node_id: Type.String(),
  bundle: BundleSchema,
  pinned_at: Type.String(),
  label: Type.Optional(Type.String()),
  min_posture: Type.Optional(PostureSchema),
});

const NodeIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

export const sessionRoutes: FastifyPluginAsyncTypebox<SessionRouteOptions> = async (app, opts) => {
  const actor = (agent?: { name: string }) => agent?.name ?? 'unknown';

  app.get(
    '/v1/identity',
    {
      config: { scope: 'sessions' },
      schema: {
        summary: "This node's public identity bundle (give it to peers: `qkm peers add`)",
        tags: ['sessions'],
        security: [{ bearer: [] }],
        response: { 200: BundleSchema, ...errorResponses() },
      },
    },
    async () => opts.identity.bundle,
  );

  app.get(
    '/v1/peers',
    {
      config: { scope: 'sessions' },
      schema: {
        summary: 'Pinned peers',
        tags: ['sessions'],
        security: [{ bearer: [] }],
        response: { 200: Type.Object({ peers: Type.Array(PeerSchema) }), ...errorResponses() },
      },
    },
    async () => ({ peers: await opts.peers.list() }),
  );

  app.post(
    '/v1/peers',
    {
      config: { scope: 'admin' },
      schema: {
        summary: "Pin a peer from its identity bundle (the bundle's self-signature is verified)",
        tags: ['sessions'],
        security: [{ bearer: [] }],
        body: Type.Object(
          {
            bundle: Type.Unknown(),
            label: Type.Optional(Type.String({ maxLength: 128 })),
            min_posture: Type.Optional(PostureSchema),
          },
          { additionalProperties: false },
        ),
        response: { 201: PeerSchema, ...errorResponses(409) },
      },
    },
    async (request, reply) => {
      const { bundle, label, min_posture } = request.body;
      const peer = await opts.peers.add(bundle, {
        ...(label !== undefined ? { label } : {}),
        ...(min_posture !== undefined ? { minPosture: min_posture } : {}),
        actor: actor(request.agent),
      });
      const rec = (await opts.peers.list()).find((p) => p.node_id === peer.nodeId);
      if (!rec) throw new Error('pinned peer vanished');
      return reply.status(201).send(rec);
    },
  );

  app.delete(
    '/v1/peers/:id',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Unpin a peer',
        tags: ['sessions'],
        security: [{ bearer: [] }],
        params: NodeIdParams,
        response: { 200: Type.Object({ removed: Type.String() }), ...errorResponses(404) },
      },
    },
    async (request) => {
      // The registry writes peer.removed (and peer.pinned above), whoever calls it.
      await opts.peers.remove(request.params.id, actor(request.agent));
      return { removed: request.params.id };
    },
  );

  app.get(
    '/v1/policy/:id',
    {
      config: { scope: 'sessions' },
      schema: {
        summary:
          'The posture decision table for a pinned peer (each posture, its scores, why admissible or not)',
        tags: ['sessions'],
        security: [{ bearer: [] }],
        params: NodeIdParams,
        querystring: Type.Object(
          { min_posture: Type.Optional(PostureSchema) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
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
          }),
          ...errorResponses(404),
        },
      },
    },
    async (request) => {
      const peer = await opts.peers.require(request.params.id);
      const min = request.query.min_posture;
      try {
        const d = await opts.policy.decide(peer, min, { fresh: true });
        return {
          peer: peer.nodeId,
          chosen: d.posture,
          minimum: d.minimum,
          ...(d.reason ? { reason: d.reason } : {}),
          table: d.table,
        };
      } catch (err) {
        // No admissible posture: still show the table, which is the point of `explain`.
        return {
          peer: peer.nodeId,
          chosen: null,
          reason: (err as Error).message,
          table: await opts.policy.explain(peer, min, { fresh: true }),
        };
      }
    },
  );

  app.post(
    '/v1/sessions',
    {
      config: { scope: 'sessions' },
      schema: {
        summary: 'Initiate a hybrid session with a pinned peer; hand `handshake` to the peer agent',
        tags: ['sessions'],
        security: [{ bearer: [] }],
        body: Type.Object(
          {
            peer: Type.String({ minLength: 1, maxLength: 128 }),
            responder_agent: Type.String({
              minLength: 1,
              maxLength: 64,
              description: 'the one agent on the peer node that may accept the handshake (signed into it)',
            }),
            min_posture: Type.Optional(PostureSchema),
            context: Type.Optional(Type.String({ maxLength: 1024 })),
            require_confirm: Type.Optional(
              Type.Boolean({
                description: 'return no key now: the confirm call returns it once the responder tag matches',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({
            session_id: Type.String(),
            key: Type.Optional(Type.String({ description: 'base64, 32 bytes; absent with require_confirm' })),
            key_pending: Type.Optional(Type.Boolean()),
            handshake: Type.String({ description: 'base64url signed handshake message' }),
            posture: PostureSchema,
            provenance: SessionProvenanceSchema,
          }),
          ...errorResponses(404, 503),
        },
      },
    },
    async (request, reply) => {
      const r = await opts.sessions.initiate({
        agent: actor(request.agent),
        responderAgent: request.body.responder_agent,
        peer: request.body.peer,
        ...(request.body.min_posture ? { minPosture: request.body.min_posture } : {}),
        ...(request.body.context !== undefined ? { context: request.body.context } : {}),
        ...(request.body.require_confirm ? { requireConfirm: true } : {}),
      });
      const key = r.key_pending ? undefined : b64(r.key);
      r.key.fill(0);
      return reply.status(201).send({
        session_id: r.session_id,
        ...(key !== undefined ? { key } : { key_pending: true }),
        handshake: r.handshake,
        posture: r.posture,
        provenance: r.provenance,
      });
    },
  );

  app.post(
    '/v1/sessions/accept',
    {
      config: { scope: 'sessions' },
      schema: {
        summary: "Accept a peer's handshake: verify, derive the same key, return a key-confirmation tag",
        tags: ['sessions'],
        security: [{ bearer: [] }],
        body: Type.Object(
          { handshake: Type.String({ minLength: 1, maxLength: 65536 }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            session_id: Type.String(),
            key: Type.String({ description: 'base64, 32 bytes' }),
            posture: PostureSchema,
            provenance: SessionProvenanceSchema,
            confirm: Type.String({ description: 'base64url key-confirmation tag for the initiator' }),
            peer: Type.String(),
            peer_agent: Type.String({
              description: 'the initiating agent, as the signed handshake names it',
            }),
            context: Type.String(),
          }),
          ...errorResponses(403, 409, 503),
        },
      },
    },
    async (request) => {
      const r = await opts.sessions.accept({
        handshake: request.body.handshake,
        agent: actor(request.agent),
      });
      const key = b64(r.key);
      r.key.fill(0);
      return {
        session_id: r.session_id,
        key,
        posture: r.posture,
        provenance: r.provenance,
        confirm: r.confirm,
        peer: r.peer,
        peer_agent: r.peer_agent,
        context: r.context,
      };
    },
  );

  app.post(
    '/v1/sessions/:id/confirm',
    {
      config: { scope: 'sessions' },
      schema: {
        summary: "Check the responder's key-confirmation tag (initiator side)",
        tags: ['sessions'],
        security: [{ bearer: [] }],
        params: NodeIdParams,
        body: Type.Object(
          { confirm: Type.String({ minLength: 1, maxLength: 256 }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            session_id: Type.String(),
            confirmed: Type.Boolean(),
            key: Type.Optional(
              Type.String({ description: 'base64, 32 bytes: the key held by require_confirm (once)' }),
            ),
          }),
          ...errorResponses(404),
        },
      },
    },
    async (request) => {
      const r = await opts.sessions.confirm(request.params.id, request.body.confirm, actor(request.agent));
      const key = r.key ? b64(r.key) : undefined;
      r.key?.fill(0);
      return { session_id: r.session_id, confirmed: r.confirmed, ...(key ? { key } : {}) };
    },
  );

  app.get(
    '/v1/audit',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Audit records (hash-chained, ML-DSA-sealed); verify offline with `qkm audit verify`',
        tags: ['audit'],
        security: [{ bearer: [] }],
        querystring: Type.Object(
          {
            after: Type.Optional(Type.Integer({ minimum: 0 })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000, default: 1000 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ records: Type.Array(Open('audit record')) }), ...errorResponses() },
      },
    },
    async (request) => {
      await opts.audit.flush();
      const records = await opts.audit.records({
        fromSeq: (request.query.after ?? 0) + 1,
        limit: request.query.limit ?? 1000,
      });
      return { records };
    },
  );
};
