import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { AuditSink } from '../../audit/types.js';
import type { KeyListQuery, KeyMetadata, KeyState } from '../../keys/interface.js';
import { KeyMetaSchema, TakenKeySchema, errorResponses } from '../schemas.js';

/** What the key routes need from the key service (src/keys/service.ts). */
export interface KeyServiceApi {
  create(opts: {
    size: number;
    ttlSeconds?: number;
    owner?: string;
    label?: string;
    require?: 'quantum' | 'any';
  }): Promise<KeyMetadata>;
  take(
    id: string,
    owner?: string,
    options?: { signal?: AbortSignal; requestId?: string },
  ): Promise<{ meta: KeyMetadata; material: Uint8Array; redelivered?: boolean }>;
  list(query: KeyListQuery): Promise<KeyMetadata[]>;
  /** True when the service writes `key.created` / `key.taken` itself (journaled with the store). */
  readonly audited?: boolean;
}

const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

const TakeHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 128,
      pattern: '^[\\x21-\\x7e]+$',
      description:
        'Client-chosen request id: a retry with the same id (same agent) within the redelivery window gets the same key once more',
    }),
  ),
});

/**
 * Aborts when the request's connection closes (or already has): a take is not committed for a
 * requester that can no longer receive the answer — e.g. when Node's parser rejected a
 * malformed request pipelined behind it and destroyed the socket.
 */
function connectionSignal(request: FastifyRequest): { signal: AbortSignal; done: () => void } {
  const ac = new AbortController();
  const socket = request.raw.socket;
  if (!socket || socket.destroyed || !socket.writable) {
    ac.abort();
    return { signal: ac.signal, done: () => undefined };
  }
  const onClose = (): void => ac.abort();
  socket.once('close', onClose);
  return { signal: ac.signal, done: () => socket.off('close', onClose) };
}

export const keyRoutes: FastifyPluginAsyncTypebox<{ keys: KeyServiceApi; audit?: AuditSink }> = async (
  app,
  opts,
) => {
  app.post(
    '/v1/keys',
    {
      config: { scope: 'keys' },
      // Every field has a default, so no body at all means all defaults (`curl -X POST`).
      preValidation: (request, _reply, done) => {
        request.body ??= {};
        done();
      },
      schema: {
        summary: 'Create a key from quantum entropy and store it encrypted; fetch it once with /take',
        tags: ['keys'],
        security: [{ bearer: [] }],
        body: Type.Object(
          {
            size: Type.Optional(
              Type.Integer({ minimum: 16, maximum: 1024, default: 32, description: 'bytes' }),
            ),
            ttl_seconds: Type.Optional(
              Type.Integer({
                minimum: 1,
                maximum: 2592000,
                description: 'lifetime in seconds (at most 30 days); omitted: the configured default',
              }),
            ),
            label: Type.Optional(Type.String({ maxLength: 128 })),
            require: Type.Optional(Type.Union([Type.Literal('quantum'), Type.Literal('any')])),
          },
          { additionalProperties: false },
        ),
        response: { 201: KeyMetaSchema, ...errorResponses(503) },
      },
    },
    async (request, reply) => {
      const body = request.body ?? {};
      const meta = await opts.keys.create({
        size: body.size ?? 32,
        ...(body.ttl_seconds !== undefined ? { ttlSeconds: body.ttl_seconds } : {}),
        ...(body.label !== undefined ? { label: body.label } : {}),
        ...(body.require !== undefined ? { require: body.require } : {}),
        ...(request.agent ? { owner: request.agent.name } : {}),
      });
      if (!opts.keys.audited)
        await opts.audit?.append({
          type: 'key.created',
          actor: request.agent?.name ?? 'unknown',
          details: {
            key_id: meta.id,
            size: meta.size,
            degraded: meta.provenance.degraded,
            ...(meta.provenance.reason ? { reason: meta.provenance.reason } : {}),
          },
        });
      return reply.status(201).send(meta);
    },
  );

  app.post(
    '/v1/keys/:id/take',
    {
      config: { scope: 'keys' },
      schema: {
        summary: 'Take a key: returns its material exactly once, then destroys it',
        tags: ['keys'],
        security: [{ bearer: [] }],
        params: IdParams,
        headers: TakeHeaders,
        response: {
          200: TakenKeySchema,
          ...errorResponses(404, 410),
        },
      },
    },
    async (request) => {
      const requestId = request.headers['idempotency-key'];
      const conn = connectionSignal(request);
      let taken: Awaited<ReturnType<KeyServiceApi['take']>>;
      try {
        taken = await opts.keys.take(request.params.id, request.agent?.name, {
          signal: conn.signal,
          ...(requestId !== undefined ? { requestId } : {}),
        });
      } finally {
        conn.done();
      }
      const { meta, material, redelivered } = taken;
      if (redelivered) {
        await opts.audit?.append({
          type: 'key.redelivered',
          actor: request.agent?.name ?? 'unknown',
          details: { key_id: meta.id },
        });
      } else if (!opts.keys.audited) {
        await opts.audit?.append({
          type: 'key.taken',
          actor: request.agent?.name ?? 'unknown',
          details: { key_id: meta.id, ...(requestId !== undefined ? { held: true } : {}) },
        });
      }
      const key = Buffer.from(material).toString('base64');
      material.fill(0);
      return { ...meta, key, ...(redelivered ? { redelivered: true } : {}) };
    },
  );

  app.get(
    '/v1/keys',
    {
      config: { scope: 'keys' },
      schema: {
        summary: "Key metadata (never material) for the caller's keys",
        tags: ['keys'],
        security: [{ bearer: [] }],
        querystring: Type.Object(
          {
            state: Type.Optional(
              Type.Union([Type.Literal('active'), Type.Literal('taken'), Type.Literal('expired')]),
            ),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
            after: Type.Optional(Type.String({ format: 'uuid' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ keys: Type.Array(KeyMetaSchema) }), ...errorResponses() },
      },
    },
    async (request) => {
      const q = request.query;
      const isAdmin = request.agent?.scopes.includes('admin') ?? false;
      const keys = await opts.keys.list({
        ...(q.state ? { state: q.state as KeyState } : {}),
        limit: q.limit ?? 100,
        ...(q.after ? { after: q.after } : {}),
        ...(isAdmin || !request.agent ? {} : { owner: request.agent.name }),
      });
      return { keys };
    },
  );
};
