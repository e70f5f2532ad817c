import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { QkmError } from '../core/errors.js';

/**
 * Strict numbers and types, before schema validation. The validator coerces (query strings are
 * all strings), and coercion is lenient: `bytes=0x20`, `1e3` and `65536.0` became numbers,
 * `{"size":"32"}` and `{"size":[32]}` became 32. This hook refuses those first:
 * - query string and path parameters declared integer/number must be plain decimals
 *   (`0`, `32`, `-1`; numbers may have a fraction: `0.25`), given once;
 * - JSON bodies must already have the declared JSON types (no string for a number, no
 *   one-element array for a scalar), checked through properties and array items.
 * Mistakes answer 400 BAD_REQUEST like any schema failure.
 */

type Schema = {
  type?: string | string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  anyOf?: Schema[];
  const?: unknown;
};

const INTEGER = /^-?(0|[1-9][0-9]*)$/;
const NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/;

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** The JSON types a schema admits, or undefined when it does not say (no check). */
function typesOf(schema: Schema): string[] | undefined {
  if (schema.type !== undefined) return Array.isArray(schema.type) ? schema.type : [schema.type];
  if (schema.anyOf) {
    const all = schema.anyOf.map(typesOf);
    if (all.some((t) => t === undefined)) return undefined;
    return [...new Set(all.flat() as string[])];
  }
  if (schema.const !== undefined) return [jsonType(schema.const)];
  return undefined;
}

function admits(types: string[], actual: string): boolean {
  return types.includes(actual) || (actual === 'integer' && types.includes('number'));
}

function checkBody(schema: Schema, value: unknown, path: string): string | undefined {
  const types = typesOf(schema);
  if (types && !admits(types, jsonType(value))) {
    return `${path} must be ${types.join(' or ')}, not ${jsonType(value)}`;
  }
  if (schema.properties && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, sub] of Object.entries(schema.properties)) {
      const v = (value as Record<string, unknown>)[k];
      if (v === undefined) continue;
      const e = checkBody(sub, v, `${path}/${k}`);
      if (e) return e;
    }
  }
  if (schema.items && Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const e = checkBody(schema.items, value[i], `${path}/${i}`);
      if (e) return e;
    }
  }
  return undefined;
}

function checkStrings(schema: Schema | undefined, values: unknown, part: string): string | undefined {
  if (!schema?.properties || values === null || typeof values !== 'object') return undefined;
  for (const [k, sub] of Object.entries(schema.properties)) {
    const v = (values as Record<string, unknown>)[k];
    if (v === undefined) continue;
    const types = typesOf(sub);
    if (!types || types.includes('array')) continue;
    if (Array.isArray(v)) return `${part}/${k} must be given once`;
    if (typeof v !== 'string') continue;
    if (types.includes('string')) continue;
    if (types.includes('integer') && !types.includes('number') && !INTEGER.test(v)) {
      return `${part}/${k} must be a decimal integer`;
    }
    if (types.includes('number') && !NUMBER.test(v)) return `${part}/${k} must be a decimal number`;
  }
  return undefined;
}

export function strictInputHook(
  request: FastifyRequest,
  _reply: FastifyReply,
  done: HookHandlerDoneFunction,
): void {
  const schema = request.routeOptions.schema as
    | { body?: Schema; querystring?: Schema; params?: Schema }
    | undefined;
  if (!schema) {
    done();
    return;
  }
  const problem =
    checkStrings(schema.querystring, request.query, 'querystring') ??
    checkStrings(schema.params, request.params, 'params') ??
    (schema.body && request.body !== undefined ? checkBody(schema.body, request.body, 'body') : undefined);
  done(problem ? new QkmError('BAD_REQUEST', problem) : undefined);
}
