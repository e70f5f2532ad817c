/**
 * The SAE-facing listener of one KME: exactly the five ETSI GS QKD 014 v1.1.1 §5 routes under
 * `/api/v1/keys/`, and nothing else (KME-to-KME and admin routes live on another port; here they
 * are 404 like any unknown route). The caller's SAE ID is the subject CN of its client
 * certificate; a certificate from the pinned CA naming an SAE this KME does not serve gets 401
 * with no body on every route.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EtsiStatusSchema } from '../../drivers/qkd/etsi014/schemas.js';
import { unauthorized } from './errors.js';
import { callerOf, createMtlsServer, sendUnauthorized, type TlsMaterial } from './http-common.js';
import type { KmeCore } from './kme-core.js';
import { parseKeyIdQuery, parseKeyIds, parseKeyRequest, parseKeyRequestQuery } from './validate.js';

/** Response schemas double as allowlists: nothing but these fields can leave in a 200. */
const StatusSchema = EtsiStatusSchema;

const KeyContainerSchema = Type.Object({
  keys: Type.Array(Type.Object({ key_ID: Type.String(), key: Type.String() })),
});

type Params = { sae: string };
type Query = Record<string, unknown>;

/** Builds (does not start) the SAE API server of `core`. */
export function buildSaeApi(core: KmeCore, tls: TlsMaterial): FastifyInstance {
  const app = createMtlsServer(tls);

  app.addHook('onRequest', async (request, reply) => {
    const caller = callerOf(request);
    if (caller === undefined || !core.serves(caller)) {
      core.counters.unauthorizedRequests++;
      return sendUnauthorized(reply);
    }
  });

  const caller = (request: Parameters<typeof callerOf>[0]): string => {
    const id = callerOf(request);
    if (id === undefined) throw unauthorized();
    return id;
  };

  app.get<{ Params: Params }>(
    '/api/v1/keys/:sae/status',
    { schema: { response: { 200: StatusSchema } } },
    async (request) => core.status(caller(request), request.params.sae),
  );

  app.post<{ Params: Params; Body: unknown }>(
    '/api/v1/keys/:sae/enc_keys',
    { schema: { response: { 200: KeyContainerSchema } } },
    async (request) =>
      core.encKeys(
        caller(request),
        request.params.sae,
        parseKeyRequest(request.body, core.limits, core.keySize),
      ),
  );

  app.get<{ Params: Params; Querystring: Query }>(
    '/api/v1/keys/:sae/enc_keys',
    { schema: { response: { 200: KeyContainerSchema } } },
    async (request) =>
      core.encKeys(
        caller(request),
        request.params.sae,
        parseKeyRequestQuery(request.query, core.limits, core.keySize),
      ),
  );

  app.post<{ Params: Params; Body: unknown }>(
    '/api/v1/keys/:sae/dec_keys',
    { schema: { response: { 200: KeyContainerSchema } } },
    async (request) =>
      core.decKeys(caller(request), request.params.sae, parseKeyIds(request.body, core.limits)),
  );

  app.get<{ Params: Params; Querystring: Query }>(
    '/api/v1/keys/:sae/dec_keys',
    { schema: { response: { 200: KeyContainerSchema } } },
    async (request) => core.decKeys(caller(request), request.params.sae, parseKeyIdQuery(request.query)),
  );

  return app;
}
