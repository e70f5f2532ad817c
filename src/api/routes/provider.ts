import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AuditSink } from '../../audit/types.js';
import { QkmError } from '../../core/errors.js';
import type { ProviderSync } from '../../provider/sync.js';
import { errorResponses } from '../schemas.js';

/** The node's link to its Provider (issue #12): publish now, and what was published last. Admin only. */

export interface ProviderRouteOptions {
  /** Absent when the node has no `provider` config: the routes answer PROVIDER_NOT_CONFIGURED. */
  sync?: ProviderSync;
  url?: string;
  audit?: AuditSink;
}

const SyncReportSchema = Type.Object({
  at: Type.String(),
  agents: Type.Array(
    Type.Object({
      aid: Type.String(),
      otksBefore: Type.Integer(),
      published: Type.Integer(),
      otks: Type.Integer(),
      lastResortUploaded: Type.Boolean(),
    }),
  ),
});

export const providerRoutes: FastifyPluginAsyncTypebox<ProviderRouteOptions> = async (app, opts) => {
  const sync = (): ProviderSync => {
    if (!opts.sync) throw new QkmError('PROVIDER_NOT_CONFIGURED', 'this node has no provider configured');
    return opts.sync;
  };

  app.post(
    '/v1/provider/sync',
    {
      config: { scope: 'admin' },
      schema: {
        summary: "Publish the node's governed agents, contact policies and prekeys to the Provider now",
        description:
          'Registers every governed agent with its endpoint, replaces its policy at the Provider, uploads the current last-resort prekey if the Provider lacks it and replenishes one-time prekeys below provider.otkLowWater up to provider.otkTarget. The same job runs every provider.syncIntervalSeconds.',
        tags: ['provider'],
        security: [{ bearer: [] }],
        response: { 200: SyncReportSchema, ...errorResponses(409, 502, 503) },
      },
    },
    async (request) => {
      const report = await sync().run();
      await opts.audit?.append({
        type: 'provider.synced',
        actor: request.agent?.name ?? 'unknown',
        details: {
          agents: report.agents.length,
          published: report.agents.reduce((n, a) => n + a.published, 0),
        },
      });
      return report;
    },
  );

  app.get(
    '/v1/provider',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'The configured Provider and the last publish run',
        tags: ['provider'],
        security: [{ bearer: [] }],
        response: {
          200: Type.Object({ url: Type.String(), lastSync: Type.Union([SyncReportSchema, Type.Null()]) }),
          ...errorResponses(409),
        },
      },
    },
    async () => ({ url: opts.url ?? '', lastSync: sync().lastReport ?? null }),
  );
};
