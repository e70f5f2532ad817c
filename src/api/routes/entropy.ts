import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { QkmError } from '../../core/errors.js';
import type { Provenance } from '../../core/provenance.js';
import type { EntropyProvider, EntropyRequest, EntropyResult } from '../../entropy/types.js';
import { EntropyResponseSchema, errorResponses } from '../schemas.js';

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

/**
 * JSON of the last provenance seen. Outputs served in the same millisecond from the same DRBG
 * block share one (frozen) provenance object, so its JSON is made once and spliced into each body.
 */
class ProvenanceJson {
  private last: Provenance | undefined;
  private text = '';

  of(p: Provenance): string {
    if (p !== this.last) {
      this.text = JSON.stringify(p);
      this.last = p;
    }
    return this.text;
  }
}

function sendEntropy(
  reply: FastifyReply,
  octets: boolean,
  result: EntropyResult,
  json: ProvenanceJson,
): void {
  const data = Buffer.from(result.bytes.buffer, result.bytes.byteOffset, result.bytes.byteLength);
  if (octets) {
    // Raw bytes bypass the JSON serializer (and so the 200 schema) by design.
    reply.headers(provenanceHeaders(result.provenance)).type('application/octet-stream').send(data);
    return;
  }
  // Exactly the 200 schema's shape (an end-to-end test checks it against the schema). A string
  // payload with a JSON content type is sent as it is.
  reply
    .type('application/json; charset=utf-8')
    .send(
      `{"data":"${data.toString('base64')}","bytes":${data.length},"provenance":${json.of(result.provenance)}}`,
    );
}

export const entropyRoutes: FastifyPluginAsyncTypebox<EntropyRouteOptions> = async (app, opts) => {
  const json = new ProvenanceJson();

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
          200: EntropyResponseSchema,
          ...errorResponses(406, 503),
        },
      },
    },
    // Not async: when the DRBG can serve at once (nearly always), the response is produced in
    // the same tick, without the promise hops of an async handler. No closure is made per request.
    (request, reply) => {
      const octets = wantsOctets(request.headers.accept);
      if (octets === 'neither') {
        throw new QkmError(
          'NOT_ACCEPTABLE',
          'this route produces application/json or application/octet-stream',
        );
      }
      const { bytes, require, prediction_resistance } = request.query;
      const entropyRequest: EntropyRequest = {
        require: require ?? 'any',
        predictionResistance: prediction_resistance ?? false,
      };
      const now = opts.entropy.getEntropyNow?.(bytes, entropyRequest);
      if (now) {
        sendEntropy(reply, octets, now, json);
        return;
      }
      return opts.entropy.getEntropy(bytes, entropyRequest).then((result) => {
        sendEntropy(reply, octets, result, json);
      });
    },
  );
};
