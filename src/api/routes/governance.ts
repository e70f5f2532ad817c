import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AuditSink } from '../../audit/types.js';
import type { ContactPolicies } from '../../governance/contacts.js';
import { MAX_BUDGET, MAX_RULES, MIN_BUDGET } from '../../governance/contact-policy.js';
import { canonicalAid } from '../../governance/aid.js';
import { MAX_BATCH, type PrekeyStore } from '../../governance/prekeys.js';
import { QkmError } from '../../core/errors.js';
import { errorResponses } from '../schemas.js';
import { SignedPrekeySchema } from '../../governance/prekeys.js';

/** Contact policies of the node's governed agents (issue #12): set, read, explain. Admin only. */

export interface GovernanceRouteOptions {
  contacts: ContactPolicies;
  audit?: AuditSink;
  /** The node's prekeys and whether an aid belongs to one of its agents. */
  prekeys?: { store: PrekeyStore; isLocalAid: (aid: string) => Promise<boolean> };
}

const AidParam = Type.Object({ aid: Type.String({ minLength: 1, maxLength: 384 }) });

const Rule = Type.Object(
  {
    pattern: Type.String({ minLength: 1, maxLength: 384 }),
    budget: Type.Integer({ minimum: MIN_BUDGET, maximum: MAX_BUDGET }),
  },
  { additionalProperties: false },
);

const PolicySchema = Type.Object({
  aid: Type.String(),
  rules: Type.Array(Rule),
  updated: Type.String(),
});

const DecisionSchema = Type.Object({
  responder: Type.String(),
  initiator: Type.String(),
  outcome: Type.Union([
    Type.Literal('allowed'),
    Type.Literal('blocked'),
    Type.Literal('no-match'),
    Type.Literal('budget-exhausted'),
  ]),
  rule: Type.Optional(Rule),
  used: Type.Integer(),
  remaining: Type.Integer(),
  window: Type.Object({ seconds: Type.Integer(), start: Type.String(), end: Type.String() }),
  table: Type.Array(
    Type.Object({
      pattern: Type.String(),
      budget: Type.Integer(),
      specificity: Type.Array(Type.Integer()),
      matches: Type.Boolean(),
      chosen: Type.Boolean(),
      why: Type.String(),
    }),
  ),
});

export const governanceRoutes: FastifyPluginAsyncTypebox<GovernanceRouteOptions> = async (app, opts) => {
  app.get(
    '/v1/contact-policies/:aid',
    {
      config: { scope: 'admin' },
      schema: {
        summary: "A governed agent's contact policy (no rules: nobody may contact it)",
        tags: ['governance'],
        security: [{ bearer: [] }],
        params: AidParam,
        response: { 200: PolicySchema, ...errorResponses(404) },
      },
    },
    async (request) => opts.contacts.get(request.params.aid),
  );

  app.put(
    '/v1/contact-policies/:aid',
    {
      config: { scope: 'admin' },
      schema: {
        summary: "Replace a governed agent's contact policy; the most specific matching rule decides",
        tags: ['governance'],
        security: [{ bearer: [] }],
        params: AidParam,
        body: Type.Object(
          { rules: Type.Array(Rule, { maxItems: MAX_RULES }) },
          { additionalProperties: false },
        ),
        response: { 200: PolicySchema, ...errorResponses(404) },
      },
    },
    async (request) => {
      const policy = await opts.contacts.set(request.params.aid, request.body.rules);
      await opts.audit?.append({
        type: 'governance.policy_set',
        actor: request.agent?.name ?? 'unknown',
        details: { aid: policy.aid, rules: policy.rules.length },
      });
      return policy;
    },
  );

  app.get(
    '/v1/contact-policies/:aid/decision',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Explain what an initiator contacting this agent would get now (consumes nothing)',
        tags: ['governance'],
        security: [{ bearer: [] }],
        params: AidParam,
        querystring: Type.Object(
          { initiator: Type.String({ minLength: 1, maxLength: 384 }) },
          { additionalProperties: false },
        ),
        response: { 200: DecisionSchema, ...errorResponses(404) },
      },
    },
    async (request) => opts.contacts.explain(request.params.aid, request.query.initiator),
  );

  const prekeys = opts.prekeys;
  if (!prekeys) return;
  const local = async (aid: string): Promise<string> => {
    const canonical = canonicalAid(aid);
    if (!(await prekeys.isLocalAid(canonical)))
      throw new QkmError('AID_NOT_FOUND', `no agent of this node has the id '${canonical}'`);
    return canonical;
  };

  app.post(
    '/v1/prekeys/:aid',
    {
      config: { scope: 'admin' },
      schema: {
        summary:
          "Make a batch of ML-KEM-768 one-time prekeys for a governed agent, signed by the node's identity",
        tags: ['governance'],
        security: [{ bearer: [] }],
        params: AidParam,
        body: Type.Object(
          { count: Type.Integer({ minimum: 1, maximum: MAX_BATCH }) },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({ prekeys: Type.Array(SignedPrekeySchema) }),
          ...errorResponses(404, 503),
        },
      },
    },
    async (request, reply) => {
      const aid = await local(request.params.aid);
      const batch = await prekeys.store.publishBatch(aid, request.body.count);
      await opts.audit?.append({
        type: 'governance.prekeys_published',
        actor: request.agent?.name ?? 'unknown',
        details: { aid, count: batch.length },
      });
      return reply.status(201).send({ prekeys: batch });
    },
  );

  app.get(
    '/v1/prekeys/:aid/last-resort',
    {
      config: { scope: 'admin' },
      schema: {
        summary: "A governed agent's signed last-resort prekey (made on first use or when expired)",
        tags: ['governance'],
        security: [{ bearer: [] }],
        params: AidParam,
        response: { 200: SignedPrekeySchema, ...errorResponses(404, 503) },
      },
    },
    async (request) => prekeys.store.lastResort(await local(request.params.aid)),
  );

  app.get(
    '/v1/prekeys/:aid',
    {
      config: { scope: 'admin' },
      schema: {
        summary: "A governed agent's one-time prekeys not used yet (public parts only)",
        tags: ['governance'],
        security: [{ bearer: [] }],
        params: AidParam,
        response: { 200: Type.Object({ prekeys: Type.Array(SignedPrekeySchema) }), ...errorResponses(404) },
      },
    },
    async (request) => ({ prekeys: await prekeys.store.unused(await local(request.params.aid)) }),
  );
};
