import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { SCOPES, type AgentRegistry, type Scope } from '../../agents/registry.js';
import type { AuditSink } from '../../audit/types.js';
import type { ApplianceStatus } from '../../status.js';
import type { QkmMetrics } from '../metrics.js';
import { SourceSnapshot, errorResponses } from '../schemas.js';
import { STATUS_PAGE_HTML } from '../status-page.js';

export interface OpsRouteOptions {
  status: () => Promise<ApplianceStatus>;
  agents: AgentRegistry;
  metrics: QkmMetrics;
  version: string;
  audit?: AuditSink;
}

/** Work done on a worker thread, and inline (on the event loop) instead. */

const PerPosture = Type.Object({
  PQC: Type.Integer(),
  'PQC+QRNG': Type.Integer(),
  'QKD+PQC+QRNG': Type.Integer(),
});

const StatusSchema = Type.Object({
  version: Type.String(),
  nodeId: Type.Optional(Type.String()),
  region: Type.String(),
  mode: Type.String(),
  startedAt: Type.String(),
  uptimeSeconds: Type.Number(),
  degraded: Type.Boolean(),
  reasons: Type.Array(Type.String()),
  entropy: Type.Object({
    quantumAvailable: Type.Boolean(),
    degraded: Type.Boolean(),
    reason: Type.Optional(Type.String()),
    sources: Type.Array(SourceSnapshot),
    drbg: Type.Object({
      name: Type.String(),
      seedOrigin: Type.String(),
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
});

const AgentSchema = Type.Object({
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  created: Type.String(),
  revoked: Type.Optional(Type.String()),
  aid: Type.Optional(Type.String()),
});

export const opsRoutes: FastifyPluginAsyncTypebox<OpsRouteOptions> = async (app, opts) => {
  app.get(
    '/v1/health',
    {
      config: { auth: false },
      schema: {
        summary: 'Liveness: answers while the process serves requests (no authentication, no details)',
        tags: ['ops'],
        response: { 200: Type.Object({ status: Type.Literal('ok'), version: Type.String() }) },
      },
    },
    async () => ({ status: 'ok' as const, version: opts.version }),
  );

  app.get(
    '/v1/status',
    {
      schema: {
        summary: 'Sources and their health, DRBG state, key counts, QKD links, degraded flags',
        tags: ['ops'],
        security: [{ bearer: [] }],
        response: { 200: StatusSchema, ...errorResponses() },
      },
    },
    async () => opts.status(),
  );

  app.get(
    '/metrics',
    {
      schema: { summary: 'Prometheus metrics', tags: ['ops'], security: [{ bearer: [] }], hide: false },
    },
    async (_request, reply) => {
      const body = await opts.metrics.registry.metrics();
      return reply.type(opts.metrics.registry.contentType).send(body);
    },
  );

  app.get('/', { config: { auth: false }, schema: { hide: true } }, async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header(
        'content-security-policy',
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
      )
      .header('x-frame-options', 'DENY')
      .send(STATUS_PAGE_HTML),
  );

  app.get(
    '/v1/agents',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'List agents (names, scopes; never tokens)',
        tags: ['agents'],
        security: [{ bearer: [] }],
        response: { 200: Type.Object({ agents: Type.Array(AgentSchema) }), ...errorResponses() },
      },
    },
    async () => ({ agents: await opts.agents.list() }),
  );

  app.post(
    '/v1/agents',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Add an agent; the token is in this response only',
        tags: ['agents'],
        security: [{ bearer: [] }],
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 64 }),
            aid: Type.Optional(
              Type.String({ minLength: 1, maxLength: 384, description: 'user@domain:name' }),
            ),
            scopes: Type.Optional(
              Type.Array(Type.Union(SCOPES.map((s) => Type.Literal(s))), { minItems: 1, uniqueItems: true }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ agent: AgentSchema, token: Type.String() }), ...errorResponses(409) },
      },
    },
    async (request, reply) => {
      const { agent, token } = await opts.agents.add(
        request.body.name,
        request.body.scopes as Scope[] | undefined,
        request.agent?.name ?? 'unknown',
        request.body.aid,
      );
      return reply.status(201).send({ agent, token });
    },
  );

  app.delete(
    '/v1/agents/:name',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Revoke an agent; its token stops working at once',
        tags: ['agents'],
        security: [{ bearer: [] }],
        params: Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) }),
        querystring: Type.Object(
          {
            force: Type.Optional(
              Type.Boolean({ description: 'revoke even the last agent with the admin scope' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ agent: AgentSchema }), ...errorResponses(404, 409) },
      },
    },
    async (request) => {
      // The registry writes the audit record (agent.revoked), whoever calls it.
      const agent = await opts.agents.revoke(request.params.name, {
        actor: request.agent?.name ?? 'unknown',
        ...(request.query.force ? { force: true } : {}),
      });
      return { agent };
    },
  );
};
