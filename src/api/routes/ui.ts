import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { hashToken } from '../../agents/registry.js';
import { errorResponses } from '../schemas.js';
import {
  UI_COOKIE,
  type UiSessions,
  clearUiCookie,
  cookieValue,
  loginAnswer,
  setUiCookie,
} from '../ui-login.js';

export interface UiRouteOptions {
  sessions: UiSessions;
}

const LoginAnswer = Type.Object({
  agent: Type.String(),
  scopes: Type.Array(Type.String()),
  expires: Type.String({ description: 'when the login ends (ISO 8601)' }),
});

/**
 * The status page's login and logout (ui-login.ts says what the cookie may do). Both are
 * `auth: false`: login checks the token from the body itself, through the same bad-token gate
 * as the Authorization header; logout needs nothing but the cookie it ends.
 */
export const uiRoutes: FastifyPluginAsyncTypebox<UiRouteOptions> = async (app, opts) => {
  app.post(
    '/ui/login',
    {
      config: { auth: false },
      schema: {
        summary: 'Status-page login: trade an agent token for a read-only, HttpOnly session cookie',
        tags: ['ops'],
        body: Type.Object(
          { token: Type.String({ minLength: 1, maxLength: 256 }) },
          { additionalProperties: false },
        ),
        response: { 200: LoginAnswer, ...errorResponses() },
      },
    },
    async (request, reply) => {
      const token = request.body.token.trim();
      const agent = app.checkToken(request, token);
      if (agent instanceof Error) throw agent;
      // A new id on every login (no fixation); the old cookie's session, if any, ends.
      const previous = cookieValue(request.headers.cookie, UI_COOKIE);
      if (previous !== undefined) opts.sessions.delete(previous);
      const { id, expires } = opts.sessions.create(hashToken(token));
      setUiCookie(request, reply, id, opts.sessions.lifetimeSeconds);
      return loginAnswer(agent, expires);
    },
  );

  app.post(
    '/ui/logout',
    {
      config: { auth: false },
      schema: {
        summary: 'Status-page logout: ends the session and clears its cookie',
        tags: ['ops'],
        response: { 204: Type.Null(), ...errorResponses() },
      },
    },
    async (request, reply) => {
      const id = cookieValue(request.headers.cookie, UI_COOKIE);
      if (id !== undefined) opts.sessions.delete(id);
      clearUiCookie(request, reply);
      return reply.status(204).send(null);
    },
  );
};
