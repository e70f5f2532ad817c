import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { QkmError } from '../../core/errors.js';
import type { Provenance } from '../../core/provenance.js';
import type { EntropyProvider, EntropyResult } from '../../entropy/types.js';
import { ProvenanceSchema, errorResponses } from '../schemas.js';

export interface EntropyRouteOptions {
  entropy: EntropyProvider;
  maxRequestBytes: number;
}

/** Which representation the caller asked for; JSON unless it prefers raw bytes. */
function wantsOctets(accept: string | undefined): boolean | 'neither' {
  if (!accept) return false;
  const types = accept.split(',').map((t) => t.split(';')[0]?.trim().toLowerCase() ?? '');
  if (types.includes('application/octet-stream')) {
    const jsonAt = types.indexOf('application/json');
    return jsonAt === -1 || types.indexOf('application/octet-stream') < jsonAt;
  }
  if (types.some((t) => t === 'application/json' || t === '*/*' || t === 'application/*')) return false;
  return 'neither';
}

/** Provenance as response headers, for callers that take raw bytes. */
function provenanceHeaders(p: Provenance): Record<string, string> {
  return {
    'x-qkm-degraded': String(p.degraded),
    'x-qkm-seed-origin': p.seedOrigin,
    'x-qkm-drbg': p.drbg.name,
    'x-qkm-reseed-counter': String(p.drbg.reseedCounter),
    'x-qkm-entropy-credited': String(p.entropyCredited),
    ...(p.reason ? { 'x-qkm-reason': encodeURIComponent(p.reason) } : {}),
    // The whole record, for clients that want every field (base64url JSON keeps it header-safe).
    'x-qkm-provenance': Buffer.from(JSON.stringify(p)).toString('base64url'),
  };
}

export const entropyRoutes: FastifyPluginAsyncTypebox<EntropyRouteOptions> = async (app, opts) => {
  app.get(
    '/v1/entropy',
    {
      config: { scope: 'entropy' },
      schema: {
        summary: 'Random bytes with their provenance',
        description:
          'Serves bytes from a DRBG seeded by healthy quantum sources. When none is healthy the bytes come from an ' +
          'OS-seeded DRBG and are flagged degraded, unless require=quantum, which then fails with 503. ' +
          'With Accept: application/octet-stream the raw bytes are returned and the provenance travels in X-QKM-* headers.',
        tags: ['entropy'],
        security: [{ bearer: [] }],
        querystring: Type.Object(
          {
            bytes: Type.Integer({ minimum: 1, maximum: opts.maxRequestBytes, description: 'How many bytes' }),
            require: Type.Optional(
              Type.Union([Type.Literal('quantum'), Type.Literal('any')], { default: 'any' }),
            ),
            prediction_resistance: Type.Optional(Type.Boolean({ default: false })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            data: Type.String({ description: 'base64' }),
            bytes: Type.Integer(),
            provenance: ProvenanceSchema,
          }),
          ...errorResponses(406, 503),
        },
      },
    },
    // Not async: when the DRBG can serve at once (nearly always), the response is produced in
    // the same tick, without the promise hops of an async handler.
    (request, reply) => {
      const mode = wantsOctets(request.headers.accept);
      if (mode === 'neither') {
        throw new QkmError(
          'NOT_ACCEPTABLE',
          'this route produces application/json or application/octet-stream',
        );
      }
      const { bytes, require, prediction_resistance } = request.query;
      const entropyRequest = {
        require: require ?? 'any',
        predictionResistance: prediction_resistance ?? false,
      } as const;
      const respond = (result: EntropyResult): void => {
        if (mode === true) {
          reply.headers(provenanceHeaders(result.provenance)).type('application/octet-stream');
          // Raw bytes bypass the JSON serializer (and so the 200 schema) by design.
          reply.send(
            Buffer.from(result.bytes.buffer, result.bytes.byteOffset, result.bytes.byteLength) as never,
          );
          return;
        }
        reply.send({
          data: Buffer.from(result.bytes.buffer, result.bytes.byteOffset, result.bytes.byteLength).toString(
            'base64',
          ),
          bytes: result.bytes.length,
          provenance: result.provenance,
        });
      };
      const now = opts.entropy.getEntropyNow?.(bytes, entropyRequest);
      if (now) {
        respond(now);
        return;
      }
      return opts.entropy.getEntropy(bytes, entropyRequest).then(respond);
    },
  );
};
