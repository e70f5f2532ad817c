import { createHash, timingSafeEqual } from 'node:crypto';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import Fastify, { type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import type { Logger } from 'pino';
import { allowedHostsFor } from '../api/auth.js';
import { bodyDeadlineHook, clientErrorHandler, installErrorHandling } from '../api/errors.js';
import { finishOpenApi } from '../api/openapi.js';
import { errorResponses } from '../api/schemas.js';
import { QkmError } from '../core/errors.js';
import { MAX_BUDGET, MAX_RULES, MIN_BUDGET } from '../governance/contact-policy.js';
import { fromBase64url, toBase64url } from '../session/encoding.js';
import { IdentityBundleSchema } from '../session/identity.js';
import type { RecordStore } from '../store/interface.js';
import { type Directory, type EnrolledNode, MAX_PREKEY_UPLOAD } from './directory.js';
import type { ProviderIdentity } from './identity.js';
import { HEADER, NONCE_RE, signResponse, verifyRequest } from './wire.js';
import { SignedPrekeySchema } from '../governance/prekeys.js';

/**
 * The Provider's HTTP API (fastify). Three kinds of caller, chosen per route by `config.caller`:
 * - `public`: the Provider's identity and the OpenAPI document;
 * - `admin`: the Provider's administrator, `Authorization: Bearer <tokens/admin>` — enrols nodes
 *   (the only way in: registration is admin-gated, which is what stops Sybils);
 * - `node`: an enrolled node, every request signed with its ML-DSA-65 identity key (wire.ts).
 * Every response, errors included, carries the Provider's signature (`qkm-provider-signature`).
 */

declare module 'fastify' {
  interface FastifyContextConfig {
    caller?: 'public' | 'admin' | 'node';
  }
  interface FastifyRequest {
    /** The enrolled node that signed this request (node routes). */
    providerNode?: EnrolledNode;
    /** The request body as received: what the node's signature covers. */
    providerRawBody?: Buffer;
  }
}

export interface ProviderApiDeps {
  version: string;
  logger: Logger;
  directory: Directory;
  identity: ProviderIdentity;
  /** SHA-256 of the administrator's bearer token. */
  adminTokenHash: Buffer;
  /** (node, nonce) pairs seen within the skew window: each signed request is accepted once. */
  nonces: RecordStore<{ at: number }>;
  host: string;
  allowedHosts?: string[];
  clockSkewSeconds: number;
  /** Bundle requests per node per minute (default 1200). */
  bundlesPerNodePerMinute?: number;
  bodyLimit: number;
  requestTimeoutMs: number;
  status: () => Promise<Record<string, unknown>>;
  now?: () => number;
}

/** Nonce-cache key: time first, so the sweep deletes a prefix range of old entries. */
export function nonceKey(timestamp: number, nodeId: string, nonce: string): string {
  return `${String(timestamp).padStart(15, '0')} ${nodeId} ${nonce}`;
}

const NodeSchema = Type.Object({
  node_id: Type.String(),
  ml_dsa_65_public_key: Type.String(),
  identity: IdentityBundleSchema,
  label: Type.Optional(Type.String()),
  domains: Type.Optional(Type.Array(Type.String())),
  enrolled: Type.String(),
});

const AgentSchema = Type.Object({
  aid: Type.String(),
  node_id: Type.String(),
  endpoint: Type.String(),
  registered: Type.String(),
});

const Rule = Type.Object(
  {
    pattern: Type.String({ minLength: 1, maxLength: 384 }),
    budget: Type.Integer({ minimum: MIN_BUDGET, maximum: MAX_BUDGET }),
  },
  { additionalProperties: false },
);

const BundleSchema = Type.Object({
  agent: AgentSchema,
  node: NodeSchema,
  prekey: SignedPrekeySchema,
  lastResort: Type.Boolean(),
  decision: Type.Object({
    outcome: Type.String(),
    rule: Type.Optional(Type.Object({ pattern: Type.String(), budget: Type.Integer() })),
    used: Type.Integer(),
    remaining: Type.Integer(),
    window: Type.Object({ seconds: Type.Integer(), start: Type.String(), end: Type.String() }),
  }),
});

const AidParam = Type.Object({ aid: Type.String({ minLength: 1, maxLength: 384 }) });
const AID = Type.String({ minLength: 1, maxLength: 384 });
const signed = [{ nodeSignature: [] }];
const bearer = [{ bearer: [] }];

export type ProviderApp = Awaited<ReturnType<typeof buildProviderApi>>;

export async function buildProviderApi(deps: ProviderApiDeps) {
  const now = deps.now ?? Date.now;
  const app = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: deps.bodyLimit,
    // Agent ids are up to 384 characters, percent-encoded in the path.
    routerOptions: { maxParamLength: 1200 },
    logController: new LogController({ disableRequestLogging: true }),
    // No type coercion: a signed body is taken exactly as signed, or refused.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    forceCloseConnections: true,
    requestTimeout: deps.requestTimeoutMs,
    clientErrorHandler,
    return503OnClosing: true,
    // A malformed URL (bad percent-encoding) never reaches a route: answer it in catalogue form.
    frameworkErrors: (error, _request, reply) => {
      (reply as unknown as FastifyReply)
        .code(400)
        .type('application/json')
        .send({ error: 'BAD_REQUEST', message: error.message || 'malformed request URL' });
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  installErrorHandling(app);
  // Keep the raw bytes: the node's signature covers the body exactly as sent.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const raw = body as Buffer;
    request.providerRawBody = raw;
    if (raw.length === 0) {
      done(new QkmError('BAD_REQUEST', 'the JSON body is empty'), undefined);
      return;
    }
    try {
      done(null, JSON.parse(raw.toString('utf8')));
    } catch {
      done(new QkmError('BAD_REQUEST', 'the body is not valid JSON'), undefined);
    }
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'qkm Provider',
        version: deps.version,
        description:
          'Directory of governed agents (SAGA Provider): admin-enrolled nodes register agents, endpoints, ' +
          'contact policies and signed one-time prekeys; initiators obtain one prekey per request, budget ' +
          'permitting. Node requests carry qkm-node/qkm-timestamp/qkm-nonce/qkm-signature (ML-DSA-65); ' +
          'every response carries qkm-provider-signature. Errors are {error, message}.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'the Provider administrator token' },
          nodeSignature: {
            type: 'apiKey',
            in: 'header',
            name: HEADER.signature,
            description: 'ML-DSA-65 signature of the enrolled node over the request (README, "Provider")',
          },
        },
      },
    },
  });

  // DNS-rebinding guard, as on the appliance: the port is known once listening (0 in tests).
  let hosts: Set<string> | undefined;
  const hostAllowed = (host: string): boolean => {
    if (hosts) return hosts.has(host);
    const addr = app.server.address();
    const port = addr && typeof addr === 'object' ? addr.port : 0;
    const set = new Set(allowedHostsFor(deps.host, port, deps.allowedHosts));
    if (port !== 0) hosts = set;
    return set.has(host);
  };

  app.addHook('onRequest', bodyDeadlineHook(deps.requestTimeoutMs));
  app.addHook('onRequest', async (request) => {
    if (!hostAllowed((request.headers.host ?? '').toLowerCase()))
      throw new QkmError('HOST_NOT_ALLOWED', 'the Host header does not name this Provider');
    if (request.routeOptions.config?.caller !== 'admin') return;
    const m = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(request.headers.authorization ?? '');
    const presented = createHash('sha256')
      .update(m?.[1] ?? '')
      .digest();
    if (!m || !timingSafeEqual(presented, deps.adminTokenHash))
      throw new QkmError('UNAUTHORIZED', 'this route needs the Provider administrator token');
  });
  // Node authentication runs once the body is in (the signature covers it), before validation.
  app.addHook('preValidation', async (request) => {
    if (request.routeOptions.config?.caller !== 'node') return;
    request.providerNode = await authenticateNode(request, deps, now());
  });
  // Fixed one-minute windows per node, in this process (one Provider process per store).
  const bundleWindows = new Map<string, { start: number; count: number }>();
  const bundleLimit = deps.bundlesPerNodePerMinute ?? 1200;
  const countBundle = (nodeId: string): void => {
    const t = now();
    const w = bundleWindows.get(nodeId);
    if (!w || t - w.start >= 60_000) {
      if (bundleWindows.size > 10_000) bundleWindows.clear();
      bundleWindows.set(nodeId, { start: t, count: 1 });
      return;
    }
    if (++w.count > bundleLimit)
      throw new QkmError(
        'RATE_LIMITED',
        `this node asked for more than ${bundleLimit} bundles this minute; retry in ${Math.ceil((w.start + 60_000 - t) / 1000)} s`,
      );
  };

  app.addHook('onSend', async (request, reply, payload) => {
    const body =
      typeof payload === 'string'
        ? Buffer.from(payload, 'utf8')
        : Buffer.isBuffer(payload)
          ? payload
          : payload == null
            ? Buffer.alloc(0)
            : undefined;
    if (body === undefined) return payload; // a stream: none of the Provider's routes sends one
    const nonce = headerOf(request, HEADER.nonce);
    reply.header(
      HEADER.response,
      signResponse(
        {
          method: request.method,
          path: request.url,
          nonce: nonce !== undefined && NONCE_RE.test(nonce) ? nonce : '',
          status: reply.statusCode,
          body,
        },
        deps.identity.secretKey,
      ),
    );
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    if (reply.statusCode >= 400)
      request.log.info(
        {
          route: request.routeOptions.url ?? 'unmatched',
          status: reply.statusCode,
          node: request.providerNode?.node_id ?? headerOf(request, HEADER.node)?.slice(0, 32),
        },
        'provider request refused',
      );
  });

  app.get(
    '/v1/provider',
    {
      config: { caller: 'public' },
      schema: {
        summary: "The Provider's identity: the ML-DSA-65 key nodes pin (config provider.publicKey)",
        tags: ['provider'],
        response: {
          200: Type.Object({
            provider_id: Type.String(),
            ml_dsa_65_public_key: Type.String(),
            created: Type.String(),
            version: Type.String(),
          }),
          ...errorResponses(),
        },
      },
    },
    async () => ({
      provider_id: deps.identity.providerId,
      ml_dsa_65_public_key: toBase64url(deps.identity.publicKey),
      created: deps.identity.created,
      version: deps.version,
    }),
  );

  app.get(
    '/v1/status',
    {
      config: { caller: 'admin' },
      schema: {
        summary: 'Counts and the store backend (administrator)',
        tags: ['provider'],
        security: bearer,
        response: {
          200: Type.Object({
            provider_id: Type.String(),
            version: Type.String(),
            store: Type.String(),
            started: Type.String(),
            nodes: Type.Integer(),
            agents: Type.Integer(),
            otks: Type.Integer(),
            lastResort: Type.Integer(),
          }),
          ...errorResponses(),
        },
      },
    },
    async () => deps.status() as never,
  );

  app.post(
    '/v1/nodes',
    {
      config: { caller: 'admin' },
      schema: {
        summary: "Enrol a node by its self-signed identity bundle (the node's GET /v1/identity)",
        tags: ['nodes'],
        security: bearer,
        body: Type.Object(
          {
            identity: Type.Unknown({ description: "the node's identity bundle" }),
            label: Type.Optional(Type.String({ maxLength: 128 })),
            domains: Type.Optional(
              Type.Array(Type.String({ minLength: 1, maxLength: 253 }), {
                minItems: 1,
                maxItems: 64,
                description:
                  'the domains whose agent ids (user@domain:name) this node may register; absent: any',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 201: NodeSchema, ...errorResponses() },
      },
    },
    async (request, reply) => {
      const node = await deps.directory.enroll(
        request.body.identity,
        request.body.label,
        request.body.domains,
      );
      request.log.info({ node: node.node_id, label: node.label }, 'node enrolled');
      return reply.status(201).send(node);
    },
  );

  app.get(
    '/v1/nodes',
    {
      config: { caller: 'admin' },
      schema: {
        summary: 'The enrolled nodes',
        tags: ['nodes'],
        security: bearer,
        response: { 200: Type.Object({ nodes: Type.Array(NodeSchema) }), ...errorResponses() },
      },
    },
    async () => ({ nodes: await deps.directory.listNodes() }),
  );

  app.get(
    '/v1/nodes/:id',
    {
      config: { caller: 'node' },
      schema: {
        summary:
          "An enrolled node's identity bundle, for a node that got a handshake from it (the Provider vouches for it)",
        description:
          'What lets nodes pin only the Provider: a responder asks here for an initiator node it has not pinned. 404 NOT_FOUND when no such node is enrolled (never enrolled, or removed).',
        tags: ['nodes'],
        security: signed,
        params: Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{32}$' }) }),
        response: { 200: NodeSchema, ...errorResponses(404) },
      },
    },
    async (request) => {
      node(request);
      const found = await deps.directory.enrolled(request.params.id);
      if (!found) throw new QkmError('NOT_FOUND', 'no such node is enrolled');
      return found;
    },
  );

  app.delete(
    '/v1/nodes/:id',
    {
      config: { caller: 'admin' },
      schema: {
        summary: 'Remove a node: its requests are refused and its agents get no bundles from now on',
        tags: ['nodes'],
        security: bearer,
        params: Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{32}$' }) }),
        response: { 200: Type.Object({ removed: Type.String() }), ...errorResponses(404) },
      },
    },
    async (request) => {
      if (!(await deps.directory.unenroll(request.params.id)))
        throw new QkmError('NOT_FOUND', 'no such node is enrolled');
      request.log.info({ node: request.params.id }, 'node removed');
      return { removed: request.params.id };
    },
  );

  app.put(
    '/v1/agents/:aid',
    {
      config: { caller: 'node' },
      schema: {
        summary: "Register one of the signing node's agents, or move its endpoint",
        tags: ['agents'],
        security: signed,
        params: AidParam,
        body: Type.Object(
          { endpoint: Type.String({ minLength: 1, maxLength: 512 }) },
          { additionalProperties: false },
        ),
        response: { 200: AgentSchema, ...errorResponses(409) },
      },
    },
    async (request) =>
      deps.directory.registerAgent(node(request).node_id, request.params.aid, request.body.endpoint),
  );

  app.put(
    '/v1/agents/:aid/policy',
    {
      config: { caller: 'node' },
      schema: {
        summary: "Replace an agent's contact policy at the Provider (enforced when it hands out OTKs)",
        tags: ['agents'],
        security: signed,
        params: AidParam,
        body: Type.Object(
          { rules: Type.Array(Rule, { maxItems: MAX_RULES }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ aid: Type.String(), rules: Type.Array(Rule), updated: Type.String() }),
          ...errorResponses(404),
        },
      },
    },
    async (request) =>
      deps.directory.setPolicy(node(request).node_id, request.params.aid, request.body.rules),
  );

  app.post(
    '/v1/agents/:aid/prekeys',
    {
      config: { caller: 'node' },
      schema: {
        summary: 'Upload signed one-time prekeys (and the last-resort prekey); all verified or none stored',
        tags: ['agents'],
        security: signed,
        params: AidParam,
        body: Type.Object(
          { prekeys: Type.Array(Type.Unknown(), { minItems: 1, maxItems: MAX_PREKEY_UPLOAD }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ otks: Type.Integer(), lastResort: Type.Boolean() }),
          ...errorResponses(404),
        },
      },
    },
    async (request) =>
      deps.directory.uploadPrekeys(node(request).node_id, request.params.aid, request.body.prekeys),
  );

  app.get(
    '/v1/agents/:aid/prekeys',
    {
      config: { caller: 'node' },
      schema: {
        summary: "How many one-time prekeys of the signing node's agent are left (to replenish)",
        tags: ['agents'],
        security: signed,
        params: AidParam,
        response: {
          200: Type.Object({
            otks: Type.Integer(),
            lastResortExpires: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errorResponses(404),
        },
      },
    },
    async (request) => deps.directory.prekeyStock(node(request).node_id, request.params.aid),
  );

  app.post(
    '/v1/bundles',
    {
      config: { caller: 'node' },
      schema: {
        summary:
          "A responder agent's bundle for one of the signing node's agents: node identity, endpoint and exactly one prekey",
        description:
          "The responder's contact policy must grant the initiator budget; each bundle spends one unit and removes the OTK it hands out. When no OTK is left the last-resort prekey is handed out, flagged lastResort.",
        tags: ['bundles'],
        security: signed,
        body: Type.Object({ responder: AID, initiator: AID }, { additionalProperties: false }),
        response: { 200: BundleSchema, ...errorResponses(404, 409, 503) },
      },
    },
    async (request) => {
      countBundle(node(request).node_id);
      return deps.directory.bundle(request.body.responder, request.body.initiator, {
        requester: node(request).node_id,
      });
    },
  );

  app.get('/docs/json', { config: { caller: 'public' }, schema: { hide: true } }, async (request) =>
    finishOpenApi(app.swagger(), request.headers.host ? `http://${request.headers.host}` : undefined),
  );
  return app;
}

function node(request: FastifyRequest): EnrolledNode {
  if (!request.providerNode) throw new QkmError('UNAUTHORIZED', 'this route needs a signed node request');
  return request.providerNode;
}

function headerOf(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return typeof v === 'string' ? v : undefined;
}

/**
 * Checks a node's signed request: headers well-formed, timestamp within the skew, node enrolled,
 * signature over exactly what arrived, nonce not seen before (recorded only once the signature
 * verified, so unsigned junk cannot fill the cache). Every refusal is 401 except an unenrolled
 * node (403 NODE_NOT_ENROLLED: it proved nothing, but it should hear why).
 */
async function authenticateNode(
  request: FastifyRequest,
  deps: ProviderApiDeps,
  now: number,
): Promise<EnrolledNode> {
  const nodeId = headerOf(request, HEADER.node);
  const ts = headerOf(request, HEADER.timestamp);
  const nonce = headerOf(request, HEADER.nonce);
  const signature = headerOf(request, HEADER.signature);
  if (!nodeId || !ts || !nonce || !signature)
    throw new QkmError(
      'UNAUTHORIZED',
      `a node request must be signed (${HEADER.node}, ${HEADER.timestamp}, ${HEADER.nonce}, ${HEADER.signature})`,
    );
  if (!/^[0-9a-f]{32}$/.test(nodeId)) throw new QkmError('UNAUTHORIZED', `${HEADER.node} is not a node id`);
  if (!NONCE_RE.test(nonce))
    throw new QkmError('UNAUTHORIZED', `${HEADER.nonce} must be 16-64 bytes, base64url`);
  const t = /^\d{1,15}$/.test(ts) ? Number(ts) : Number.NaN;
  if (!Number.isSafeInteger(t) || Math.abs(now - t) > deps.clockSkewSeconds * 1000)
    throw new QkmError(
      'UNAUTHORIZED',
      `${HEADER.timestamp} must be the current time in ms (±${deps.clockSkewSeconds} s)`,
    );
  const enrolled = await deps.directory.enrolled(nodeId);
  if (!enrolled) throw new QkmError('NODE_NOT_ENROLLED', 'this node is not enrolled with the Provider');
  const ok = verifyRequest(
    {
      method: request.method,
      path: request.url,
      nodeId,
      timestamp: ts,
      nonce,
      body: request.providerRawBody ?? Buffer.alloc(0),
    },
    signature,
    fromBase64url(enrolled.ml_dsa_65_public_key, 'ml_dsa_65_public_key'),
  );
  if (!ok)
    throw new QkmError('UNAUTHORIZED', 'the request signature does not verify against the enrolled node key');
  if (!(await deps.nonces.putIfAbsent(nonceKey(t, nodeId, nonce), { at: t })))
    throw new QkmError('UNAUTHORIZED', 'this signed request was already received (replayed nonce)');
  return enrolled;
}
