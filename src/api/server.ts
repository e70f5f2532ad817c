import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyPluginAsync, LogController } from 'fastify';
import type { Logger } from 'pino';
import { DeferredChildLogger } from '../core/logger.js';
import type { AgentRegistry } from '../agents/registry.js';
import type { AuditSink } from '../audit/types.js';
import type { ApplianceStatus } from '../status.js';
import type { EntropyProvider } from '../entropy/types.js';
import { RejectionAudit } from '../session/rejection-audit.js';
import { authPlugin } from './auth.js';
import { rateLimitPlugin } from './rate-limit.js';
import { strictInputHook } from './strict-input.js';
import { bodyDeadlineHook, clientErrorHandler, installErrorHandling } from './errors.js';
import { schemaErrorFormatter } from './validation-errors.js';
import type { QkmMetrics } from './metrics.js';
import { DOCS_PAGE_HTML, finishOpenApi } from './openapi.js';
import { entropyRoutes } from './routes/entropy.js';
import { type KeyServiceApi, keyRoutes } from './routes/keys.js';
import { opsRoutes } from './routes/ops.js';
import { uiRoutes } from './routes/ui.js';
import { UiSessions } from './ui-login.js';
import type { StatusHistory } from '../status-history.js';

export interface ApiDeps {
  version: string;
  logger: Logger;
  entropy: EntropyProvider;
  keys: KeyServiceApi;
  agents: AgentRegistry;
  metrics: QkmMetrics;
  status: () => Promise<ApplianceStatus>;
  /** The status page's chart samples (`GET /v1/status/history`); optional in tests. */
  history?: StatusHistory;
  /** Lifetime of a status-page login, seconds (default 8 h). */
  uiLoginSeconds?: number;
  /** Host header values accepted, or a function of the listening port that yields them. */
  allowedHosts: string[] | ((port: number) => string[]);
  /** Where key and agent lifecycle events are recorded (the audit log); optional in tests. */
  audit?: AuditSink;
  maxEntropyBytes: number;
  bodyLimit: number;
  rateLimitPerMinute: number;
  /** Invalid tokens per client address per minute before it is refused (default 60). */
  badTokensPerMinute?: number;
  /** Time for a whole request (headers and body) to arrive, ms (default 30 000). */
  requestTimeoutMs?: number;
  /** Further route plugins (sessions, identity, peers, audit), registered after the core ones. */
  // biome-ignore lint/suspicious/noExplicitAny: each plugin has its own options type
  plugins?: Array<{ plugin: FastifyPluginAsync<any>; options: Record<string, unknown> }>;
}

/** Builds the fastify app; the caller decides where it listens. */
export type QkmApp = Awaited<ReturnType<typeof buildApi>>;

export async function buildApi(deps: ApiDeps) {
  const app = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: deps.bodyLimit,
    // Parameters in qkm routes are UUIDs and names; anything longer is a mistake or an attack.
    routerOptions: { maxParamLength: 128 },
    // Per-request lines are written by our onResponse hook at debug level: an agent fetching
    // entropy in a loop should not fill the log at the default level.
    logController: new LogController({ disableRequestLogging: true }),
    // Each request's child logger is built only when the request logs something (redaction
    // makes building one cost as much as a small request's routing; see core/logger.ts).
    childLoggerFactory: (parent, bindings, options) =>
      // A per-route logLevel (unused in qkm) needs pino's own child handling.
      Object.keys(options).length > 0
        ? parent.child(bindings, options)
        : new DeferredChildLogger(parent as Logger, bindings),
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, allErrors: false } },
    // Messages that say which values are allowed, not ajv's "must be equal to constant".
    schemaErrorFormatter,
    forceCloseConnections: true,
    // An unfinished request (headers or body) is answered 408 REQUEST_TIMEOUT and closed, not
    // held open; parser errors get catalogue codes (errors.ts).
    requestTimeout: deps.requestTimeoutMs ?? 30_000,
    clientErrorHandler,
    return503OnClosing: true,
  }).withTypeProvider<TypeBoxTypeProvider>();

  installErrorHandling(app);
  // Before validation: refuse what the coercing validator would bend (strict-input.ts).
  app.addHook('preValidation', strictInputHook);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'qkm',
        version: deps.version,
        description:
          'Quantum-secure key manager: entropy, keys and hybrid session keys with provenance. Every error is ' +
          '{error, message}; every route except /v1/health and the status-page login needs Authorization: Bearer <agent token> (GET /v1/status, /v1/status/history and /metrics also take the status-page login cookie).',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });

  // Status-page logins (ui-login.ts): in memory, so a restart logs the page out.
  const uiSessions = new UiSessions((deps.uiLoginSeconds ?? 28_800) * 1000);
  // Requests refused for their credentials are audited, bounded per code and minute (a flood of
  // bad tokens must not become an fsync each): `api.refused`, then `api.refusals_suppressed`.
  const refusals = deps.audit
    ? new RejectionAudit(deps.audit, { type: 'api.refused', suppressedType: 'api.refusals_suppressed' })
    : undefined;
  if (refusals) app.addHook('onClose', async () => refusals.flush());
  await app.register(authPlugin, {
    uiSessions,
    agents: deps.agents,
    ...(refusals
      ? {
          refused: (code: string, reason: string, actor: string) => void refusals.record(actor, code, reason),
        }
      : {}),
    allowedHosts: deps.allowedHosts,
    ...(deps.badTokensPerMinute !== undefined ? { badTokensPerMinute: deps.badTokensPerMinute } : {}),
  });
  await app.register(rateLimitPlugin, { max: deps.rateLimitPerMinute, windowMs: 60_000 });
  // Node's own requestTimeout does not cover a body still arriving once the handler has the
  // request: an unfinished body is answered 408 REQUEST_TIMEOUT and closed here (errors.ts).
  app.addHook('onRequest', bodyDeadlineHook(deps.requestTimeoutMs ?? 30_000));

  // A callback-style hook (not async): it runs on every response, and a promise per request
  // is measurable at the request rates /v1/entropy sees.
  app.addHook('onResponse', (request, reply, done) => {
    try {
      const route = request.routeOptions.url ?? 'unmatched';
      const elapsed = reply.elapsedTime;
      deps.metrics.http.record(route, request.method, reply.statusCode, elapsed / 1000);
      request.log.debug(
        {
          req: request,
          statusCode: reply.statusCode,
          ms: Math.round(elapsed * 100) / 100,
          agent: request.agent?.name,
        },
        'request completed',
      );
    } catch (err) {
      done(err as Error);
      return;
    }
    done();
  });

  await app.register(opsRoutes, {
    status: deps.status,
    agents: deps.agents,
    metrics: deps.metrics,
    version: deps.version,
    ...(deps.history ? { history: deps.history } : {}),
  });
  await app.register(uiRoutes, { sessions: uiSessions });
  await app.register(entropyRoutes, { entropy: deps.entropy, maxRequestBytes: deps.maxEntropyBytes });
  await app.register(keyRoutes, { keys: deps.keys, ...(deps.audit ? { audit: deps.audit } : {}) });
  for (const { plugin, options } of deps.plugins ?? []) await app.register(plugin, options);

  // The Host header is allowlisted by the auth plugin, so it can name the server in the document.
  app.get('/docs/json', { config: { auth: false }, schema: { hide: true } }, async (request) =>
    finishOpenApi(app.swagger(), request.headers.host ? `http://${request.headers.host}` : undefined),
  );
  app.get('/docs', { config: { auth: false }, schema: { hide: true } }, async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header(
        'content-security-policy',
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
      )
      .header('x-frame-options', 'DENY')
      .send(DOCS_PAGE_HTML),
  );
  return app;
}
