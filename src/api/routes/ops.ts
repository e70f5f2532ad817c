import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { SCOPES, type AgentRegistry, type Scope } from '../../agents/registry.js';
import type { AuditSink } from '../../audit/types.js';
import type { ApplianceStatus } from '../../status.js';
import type { StatusHistory } from '../../status-history.js';
import type { QkmMetrics } from '../metrics.js';
import { AgentSchema, StatusSchema, errorResponses } from '../schemas.js';
import { STATUS_PAGE_HTML } from '../status-page.js';

export interface OpsRouteOptions {
  status: () => Promise<ApplianceStatus>;
  agents: AgentRegistry;
  metrics: QkmMetrics;
  version: string;
  audit?: AuditSink;
  /** Samples for the status page's charts; without it, no `/v1/status/history` route. */
  history?: StatusHistory;
}

const HistorySample = Type.Object({
  t: Type.Integer({ description: 'ms since the epoch' }),
  degraded: Type.Boolean(),
  entropyBytesPerSec: Type.Integer(),
  degradedBytesPerSec: Type.Integer(),
  activeKeys: Type.Integer(),
  sources: Type.Array(
    Type.Object({
      id: Type.String(),
      state: Type.String(),
      claimedMinEntropy: Type.Number(),
      estimatedMinEntropy: Type.Optional(Type.Number()),
    }),
  ),
  qkd: Type.Array(
    Type.Object({
      peerSaeId: Type.String(),
      up: Type.Boolean(),
      storedKeyCount: Type.Optional(Type.Integer()),
    }),
  ),
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
      config: { uiCookie: true },
      schema: {
        summary: 'Sources and their health, DRBG state, key counts, QKD links, degraded flags',
        tags: ['ops'],
        security: [{ bearer: [] }],
        response: { 200: StatusSchema, ...errorResponses() },
      },
    },
    async () => opts.status(),
  );

  const history = opts.history;
  if (history) {
    app.get(
      '/v1/status/history',
      {
        config: { uiCookie: true },
        schema: {
          summary: 'Status samples kept by the appliance (a bounded ring buffer), oldest first',
          tags: ['ops'],
          security: [{ bearer: [] }],
          querystring: Type.Object(
            {
              seconds: Type.Optional(
                Type.Integer({ minimum: 1, maximum: 31_536_000, description: 'only the last N seconds' }),
              ),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({
              intervalSeconds: Type.Integer(),
              capacity: Type.Integer(),
              samples: Type.Array(HistorySample),
            }),
            ...errorResponses(),
          },
        },
      },
      async (request) => ({
        intervalSeconds: history.intervalSeconds,
        capacity: history.capacity,
        samples: history.since(request.query.seconds),
      }),
    );
  }

  app.get(
    '/metrics',
    {
      config: { uiCookie: true },
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
