import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AuditLog } from '../../audit/index.js';
import type { NodeIdentity, PeerRegistry, PosturePolicy, SessionService } from '../../session/index.js';
import { QkmError } from '../../core/errors.js';
import { canonicalAid, parseAid } from '../../governance/aid.js';
import type { SignedPrekey } from '../../governance/prekeys.js';
import { type BundleSource, type ResumedSession, givenBundle } from '../../session/handshake.js';
import {
  AcceptResponseSchema,
  ConfirmResponseSchema,
  IdentityBundleSchema,
  InitiateResponseSchema,
  PeerSchema,
  PolicyExplanationSchema,
  PostureSchema,
  ResumeStartSchema,
  ResumedSessionSchema,
  TokenListSchema,
  errorResponses,
} from '../schemas.js';

export interface SessionRouteOptions {
  /**
   * Where a governed initiation gets the responder's prekey when the request carries none
   * (the Provider's client). Without it, governed initiations must bring a `prekey`.
   */
  bundles?: BundleSource;
  identity: NodeIdentity;
  peers: PeerRegistry;
  policy: PosturePolicy;
  sessions: SessionService;
  audit: AuditLog;
}

const Open = (description: string) => Type.Object({}, { additionalProperties: true, description });

const SignedPrekeyBody = Type.Object(
  {
    v: Type.Literal(2),
    kind: Type.Union([Type.Literal('otk'), Type.Literal('last-resort')]),
    id: Type.String({ minLength: 1, maxLength: 128 }),
    aid: Type.String({ minLength: 1, maxLength: 384 }),
    node_id: Type.String({ minLength: 1, maxLength: 64 }),
    ml_kem_768_public_key: Type.String({ minLength: 1, maxLength: 2048 }),
    created: Type.String({ maxLength: 64 }),
    expires: Type.String({ maxLength: 64 }),
    signature: Type.String({ minLength: 1, maxLength: 8192 }),
  },
  { additionalProperties: false, description: "A responder agent's signed prekey (GET /v1/prekeys/:aid)" },
);

const TokenIn = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 64 }),
    sealed: Type.String({ minLength: 1, maxLength: 4096 }),
    expires: Type.Optional(Type.String({ maxLength: 64 })),
    max_uses: Type.Optional(Type.Integer()),
  },
  { additionalProperties: false },
);

/** The governed part of an initiation: both governed ids and where the prekey comes from. */
function governedRequest(
  agent: { aid?: string } | undefined,
  b: { responder_aid?: string; prekey?: unknown },
  fallback: BundleSource | undefined,
): { initiatorAid: string; responderAid: string; bundles: BundleSource } {
  if (!agent?.aid)
    throw new QkmError('AGENT_NOT_GOVERNED', 'the calling agent has no governed id (qkm agent add --aid)');
  const bundles = b.prekey !== undefined ? givenBundle(b.prekey as SignedPrekey) : fallback;
  if (!bundles)
    throw new QkmError(
      'INVALID_PARAMETER',
      "a governed session needs the responder's prekey (no Provider is configured)",
    );
  return { initiatorAid: agent.aid, responderAid: canonicalAid(b.responder_aid), bundles };
}

function resumedOut(r: ResumedSession) {
  const key = b64(r.key);
  r.key.fill(0);
  const { key: _k, ...rest } = r;
  return { ...rest, key };
}

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
        response: { 200: IdentityBundleSchema, ...errorResponses() },
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
          200: PolicyExplanationSchema,
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
            peer: Type.Optional(
              Type.String({
                minLength: 1,
                maxLength: 128,
                description:
                  "the responder's node id (a pinned peer); optional for a governed session when a Provider is configured (the Provider's bundle names the node, and `peer`, if given, must agree)",
              }),
            ),
            responder_agent: Type.Optional(
              Type.String({
                minLength: 1,
                maxLength: 64,
                description:
                  'the one agent on the peer node that may accept the handshake (signed into it); required unless responder_aid is given',
              }),
            ),
            responder_aid: Type.Optional(
              Type.String({
                minLength: 1,
                maxLength: 384,
                description:
                  'governed session (protocol qkm/v2): the responder agent by governed id; the calling agent needs one too',
              }),
            ),
            prekey: Type.Optional(SignedPrekeyBody),
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
          201: InitiateResponseSchema,
          ...errorResponses(404, 503),
        },
      },
    },
    async (request, reply) => {
      const b = request.body;
      const governed =
        b.responder_aid !== undefined ? governedRequest(request.agent, b, opts.bundles) : undefined;
      const responderAgent = b.responder_agent ?? (governed ? parseAid(b.responder_aid).name : undefined);
      if (responderAgent === undefined)
        throw new QkmError('INVALID_PARAMETER', 'responder_agent or responder_aid is required');
      const r = await opts.sessions.initiate({
        agent: actor(request.agent),
        responderAgent,
        ...(governed ? { governed } : {}),
        ...(request.body.peer !== undefined ? { peer: request.body.peer } : {}),
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
        peer: r.peer,
        ...(r.peer_endpoint ? { peer_endpoint: r.peer_endpoint } : {}),
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
          200: AcceptResponseSchema,
          ...errorResponses(403, 404, 409, 410, 429, 503),
        },
      },
    },
    async (request) => {
      const r = await opts.sessions.accept({
        handshake: request.body.handshake,
        agent: actor(request.agent),
        agentAid: request.agent?.aid,
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
        ...(r.peer_aid ? { peer_aid: r.peer_aid } : {}),
        ...(r.token ? { token: r.token } : {}),
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
          {
            confirm: Type.String({ minLength: 1, maxLength: 256 }),
            token: Type.Optional(TokenIn),
          },
          { additionalProperties: false },
        ),
        response: {
          200: ConfirmResponseSchema,
          ...errorResponses(401, 403, 404),
        },
      },
    },
    async (request) => {
      const t = request.body.token;
      const r = await opts.sessions.confirm(
        request.params.id,
        request.body.confirm,
        actor(request.agent),
        t ? { id: t.id, sealed: t.sealed } : undefined,
      );
      const key = r.key ? b64(r.key) : undefined;
      r.key?.fill(0);
      return {
        session_id: r.session_id,
        confirmed: r.confirmed,
        ...(key ? { key } : {}),
        ...(r.token ? { token: r.token } : {}),
      };
    },
  );

  app.post(
    '/v1/sessions/resume',
    {
      config: { scope: 'sessions' },
      schema: {
        summary:
          'Resume a governed session with an access token (no ML-KEM, no ML-DSA); hand `resume` to the responder agent',
        tags: ['sessions'],
        security: [{ bearer: [] }],
        body: Type.Object(
          { token_id: Type.String({ minLength: 1, maxLength: 64 }) },
          { additionalProperties: false },
        ),
        response: {
          201: ResumeStartSchema,
          ...errorResponses(403, 503),
        },
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(
          await opts.sessions.startResume({ agent: actor(request.agent), tokenId: request.body.token_id }),
        ),
  );

  app.post(
    '/v1/sessions/resume/accept',
    {
      config: { scope: 'sessions' },
      schema: {
        summary:
          "Accept a resume message: check the token (owner, expiry, uses, proof, replay), count the use durably, derive K'",
        tags: ['sessions'],
        security: [{ bearer: [] }],
        body: Type.Object(
          { resume: Type.String({ minLength: 1, maxLength: 4096 }) },
          { additionalProperties: false },
        ),
        response: { 200: ResumedSessionSchema, ...errorResponses(401, 403, 409, 429, 503) },
      },
    },
    async (request) =>
      resumedOut(
        await opts.sessions.acceptResume({
          resume: request.body.resume,
          agent: actor(request.agent),
          agentAid: request.agent?.aid,
        }),
      ),
  );

  app.post(
    '/v1/sessions/resume/:id/complete',
    {
      config: { scope: 'sessions' },
      schema: {
        summary: "Finish a resumption (initiator): check the responder's tag, get K'",
        tags: ['sessions'],
        security: [{ bearer: [] }],
        params: NodeIdParams,
        body: Type.Object(
          { answer: Type.String({ minLength: 1, maxLength: 4096 }) },
          { additionalProperties: false },
        ),
        response: { 200: ResumedSessionSchema, ...errorResponses(403, 404) },
      },
    },
    async (request) =>
      resumedOut(
        await opts.sessions.completeResume({
          agent: actor(request.agent),
          resumeId: request.params.id,
          answer: request.body.answer,
        }),
      ),
  );

  app.get(
    '/v1/tokens',
    {
      config: { scope: 'sessions' },
      schema: {
        summary: 'The access tokens the calling agent holds (no secrets)',
        tags: ['sessions'],
        security: [{ bearer: [] }],
        response: {
          200: TokenListSchema,
          ...errorResponses(),
        },
      },
    },
    async (request) => ({
      tokens: (await opts.sessions.tokens(actor(request.agent))).map((t) => ({
        token_id: t.token_id,
        peer: t.peer,
        peer_aid: t.peer_aid,
        expires: t.body.expires,
        max_uses: t.body.maxUses,
        used: t.used,
        session_id: t.session_id,
      })),
    }),
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
      // Sealed pages are served as they are; a page reaching the tail waits for one shared seal.
      const records = await opts.audit.sealedPage({
        fromSeq: (request.query.after ?? 0) + 1,
        limit: request.query.limit ?? 1000,
      });
      return { records };
    },
  );
};
