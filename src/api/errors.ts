import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CATALOGUE, type ErrorCode, QkmError } from '../core/errors.js';

/**
 * Maps everything a route can throw onto the catalogue: `{error, message}` with a 4xx for the
 * caller's mistakes, 503 when a required source is unavailable, and 500 only for our own bugs —
 * whose details go to the log, never to the caller.
 */

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_VALIDATION: 'BAD_REQUEST',
  FST_ERR_BAD_URL: 'BAD_REQUEST',
  FST_ERR_ASYNC_CONSTRAINT: 'BAD_REQUEST',
  FST_ERR_NOT_FOUND: 'NOT_FOUND',
};

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 401:
      return 'UNAUTHORIZED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 405:
      return 'METHOD_NOT_ALLOWED';
    case 406:
      return 'NOT_ACCEPTABLE';
    case 413:
      return 'PAYLOAD_TOO_LARGE';
    case 415:
      return 'UNSUPPORTED_MEDIA_TYPE';
    case 429:
      return 'RATE_LIMITED';
    default:
      return 'BAD_REQUEST';
  }
}

export function toErrorBody(err: unknown): { status: number; body: { error: ErrorCode; message: string } } {
  if (err instanceof QkmError) {
    return {
      status: err.status,
      body: { error: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) },
    };
  }
  const fe = err as Partial<FastifyError> & { validation?: unknown };
  if (fe.validation) {
    return { status: 400, body: { error: 'BAD_REQUEST', message: fe.message ?? 'invalid request' } };
  }
  if (fe.code && FASTIFY_CODES[fe.code]) {
    const code = FASTIFY_CODES[fe.code] as ErrorCode;
    return {
      status: ERROR_CATALOGUE[code].status,
      body: { error: code, message: fe.message ?? ERROR_CATALOGUE[code].text },
    };
  }
  // JSON.parse failures surface as SyntaxError with a statusCode of 400.
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    const code = codeForStatus(status);
    return { status, body: { error: code, message: fe.message ?? ERROR_CATALOGUE[code].text } };
  }
  return { status: 500, body: { error: 'INTERNAL', message: ERROR_CATALOGUE.INTERNAL.text } };
}

// biome-ignore lint/suspicious/noExplicitAny: accepts the app whatever its type provider and logger
export function installErrorHandling(app: FastifyInstance<any, any, any, any, any>): void {
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const { status, body } = toErrorBody(err);
    if (status >= 500) {
      // Log the class and code only: an exception's message may quote request data.
      request.log.error({ err: { type: err?.name, code: err?.code, stack: err?.stack } }, 'request failed');
    }
    if (status === 429 && !reply.hasHeader('retry-after')) reply.header('retry-after', '60');
    reply.status(status).type('application/json').send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    // A known path asked with another method: 405 naming the methods it has (RFC 9110 §15.5.6).
    const path = request.url.split('?')[0] ?? '';
    const allow = HTTP_METHODS.filter((method) => app.findRoute({ method, url: path }) !== null);
    if (allow.length > 0) {
      reply
        .status(405)
        .header('allow', allow.join(', '))
        .send({
          error: 'METHOD_NOT_ALLOWED',
          message: `${request.method} is not allowed on ${path}; use ${allow.join(', ')}`,
        });
      return;
    }
    reply
      .status(404)
      .send({ error: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` });
  });
}

/**
 * Node's own HTTP parser errors (malformed request line or headers, oversized headers, a
 * request or body that does not arrive within `requestTimeout`) never reach a route: fastify
 * answers them from its `clientErrorHandler`. This one answers with catalogue codes, in the
 * same `{error, message}` shape as everything else, and closes the connection (the parser
 * cannot find the next request's start after an error).
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const code: ErrorCode =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 'REQUEST_TIMEOUT'
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? 'HEADERS_TOO_LARGE'
        : 'BAD_REQUEST';
  const { status, text } = ERROR_CATALOGUE[code];
  const body = JSON.stringify({ error: code, message: text });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}

/**
 * An onRequest hook: a request whose body has not fully arrived `ms` after its headers is
 * answered 408 REQUEST_TIMEOUT and its connection closed, so a client cannot hold a connection
 * (and a parser, and a pending handler) open forever by never finishing its body.
 */
export function bodyDeadlineHook(ms: number) {
  return (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    const req = request.raw;
    if (req.complete) {
      done();
      return;
    }
    const timer = setTimeout(() => {
      if (req.complete || reply.sent || reply.raw.headersSent) return;
      const err = Object.assign(new Error('request body not received in time'), {
        code: 'ERR_HTTP_REQUEST_TIMEOUT',
      });
      clientErrorHandler(err, req.socket);
    }, ms);
    timer.unref();
    const clear = (): void => clearTimeout(timer);
    req.once('end', clear);
    req.once('close', clear);
    done();
  };
}
