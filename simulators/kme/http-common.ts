/**
 * What the SAE listener and the KME-to-KME listener share: an HTTPS fastify with mutual TLS
 * (TLS ≥ 1.2, client certificate required and verified against the pinned CA), the caller's
 * identity taken from its certificate's subject CN, a JSON parser that accepts an empty body,
 * and ETSI 014 style error answers.
 */
import type { TLSSocket } from 'node:tls';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { badRequest, EtsiHttpError, QKM_MESSAGES } from './errors.js';

/** PEM material of one listener. `ca` is the only trust anchor for client certificates. */
export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

/** Request bodies are small: a Key request or up to max_key_per_request Key IDs. */
const BODY_LIMIT = 256 * 1024;

const callerBySocket = new WeakMap<object, string | undefined>();

/**
 * The subject CN of the client certificate on this connection, or undefined. The TLS layer has
 * already verified the chain (`rejectUnauthorized: true`), so the CN can be trusted as the
 * caller's ID. Cached per connection: the certificate cannot change on a live TLS session.
 */
export function callerOf(request: FastifyRequest): string | undefined {
  const socket = request.raw.socket as TLSSocket;
  if (callerBySocket.has(socket)) return callerBySocket.get(socket);
  let cn: string | undefined;
  if (socket.authorized === true) {
    const subjectCn = socket.getPeerCertificate()?.subject?.CN as unknown;
    // A certificate with several CNs names no single SAE: treat it as unknown.
    if (typeof subjectCn === 'string' && subjectCn.length > 0) cn = subjectCn;
  }
  callerBySocket.set(socket, cn);
  return cn;
}

/** 401 with no body (ETSI 014 §5: "Unauthorized" carries no Error). */
export function sendUnauthorized(reply: FastifyReply): FastifyReply {
  return reply.code(401).removeHeader('content-type').send();
}

function sendError(reply: FastifyReply, err: EtsiHttpError): FastifyReply {
  if (err.status === 401) return sendUnauthorized(reply);
  return reply.code(err.status).type('application/json; charset=utf-8').send(err.toBody());
}

/**
 * An HTTPS fastify with mutual TLS, the empty-body-tolerant JSON parser, the Error-body error
 * handler and a 404 handler that answers `{message: "no such route"}`.
 */
export function createMtlsServer(tls: TlsMaterial): FastifyInstance {
  const app = Fastify({
    https: {
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    },
    logger: false,
    bodyLimit: BODY_LIMIT,
    exposeHeadRoutes: false,
    forceCloseConnections: true,
    return503OnClosing: true,
  }) as unknown as FastifyInstance;

  app.removeAllContentTypeParsers();
  // ETSI 014 §5.3: the Key request "may be empty"; an empty JSON body means all defaults.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    if (text.trim().length === 0) return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(badRequest(QKM_MESSAGES.malformedJson), undefined);
    }
  });

  app.setErrorHandler((err: unknown, _request, reply) => {
    if (err instanceof EtsiHttpError) return sendError(reply, err);
    const code = (err as { code?: unknown }).code;
    const statusCode = (err as { statusCode?: unknown }).statusCode;
    if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return sendError(reply, badRequest(QKM_MESSAGES.wrongContentType));
    }
    if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendError(reply, badRequest('request body too large'));
    if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
      return sendError(reply, badRequest('bad request'));
    }
    return sendError(reply, new EtsiHttpError(503, QKM_MESSAGES.internal));
  });

  // A known path asked with another method is 405 with Allow (RFC 9110 §15.5.6), not 404.
  app.setNotFoundHandler((request, reply) => {
    const allow = allowedMethods(app, request.url);
    if (allow.length === 0) return sendError(reply, new EtsiHttpError(404, QKM_MESSAGES.notFound));
    reply.header('allow', allow.join(', '));
    return sendError(reply, new EtsiHttpError(405, QKM_MESSAGES.methodNotAllowed));
  });
  return app;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** The methods some route of `app` answers on this URL's path (empty: no route has the path). */
export function allowedMethods(app: FastifyInstance, url: string): string[] {
  const path = url.split('?')[0] ?? '';
  return METHODS.filter((method) => app.findRoute({ method, url: path }) !== null);
}

/** `https://127.0.0.1:<port>` of a listening server. */
export function urlOf(app: FastifyInstance, host: string): string {
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP');
  return `https://${host}:${address.port}`;
}
