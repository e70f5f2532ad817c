import type { FastifySchemaValidationError } from 'fastify';

/**
 * Fastify's `schemaErrorFormatter`: the message of every 400 a request schema produces, for all
 * routes. ajv's own wording is for schema authors — a union of literals fails as "must be equal
 * to constant" once per member and "must match a schema in anyOf" — so this says which values
 * are allowed instead, and names unknown properties. The error still goes through the error
 * handler (errors.ts) as BAD_REQUEST `{error, message}`.
 */

const quote = (v: unknown) => JSON.stringify(v);

/** The JSON path of the offending value, as `body/scopes/1`, `querystring/bytes`. */
function where(e: FastifySchemaValidationError, dataVar: string): string {
  return `${dataVar}${e.instancePath}`;
}

/** Sentences for ajv errors, unions collapsed to one sentence each. */
export function describeAjvErrors(
  errors: readonly FastifySchemaValidationError[],
  dataVar: string,
): string[] {
  const out: string[] = [];
  // Errors of a union's members carry schema paths below the union's own `…/anyOf`.
  const unions = errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf');
  const inUnion = (e: FastifySchemaValidationError) =>
    unions.some((u) => u !== e && e.schemaPath.startsWith(`${u.schemaPath}/`));
  for (const e of errors) {
    let line: string;
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf') {
      const members = errors.filter(
        (m) => m !== e && m.schemaPath.startsWith(`${e.schemaPath}/`) && m.instancePath === e.instancePath,
      );
      const consts = members.filter((m) => m.keyword === 'const').map((m) => m.params.allowedValue);
      if (consts.length > 0 && consts.length === members.length) {
        line = `${where(e, dataVar)} must be one of ${consts.map(quote).join(', ')}`;
      } else {
        const reasons = [...new Set(members.map((m) => `${where(m, dataVar)} ${describeOne(m)}`))];
        line =
          reasons.length > 0
            ? `${where(e, dataVar)} matches none of the allowed forms (${reasons.join('; or ')})`
            : `${where(e, dataVar)} matches none of the allowed forms`;
      }
    } else if (inUnion(e)) {
      continue;
    } else {
      line = `${where(e, dataVar)} ${describeOne(e)}`;
    }
    if (!out.includes(line)) out.push(line);
  }
  return out;
}

function describeOne(e: FastifySchemaValidationError): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'const':
      return `must be ${quote(p.allowedValue)}`;
    case 'enum':
      return `must be one of ${(p.allowedValues as unknown[]).map(quote).join(', ')}`;
    case 'additionalProperties':
      return `has an unknown property ${quote(p.additionalProperty)}`;
    case 'required':
      return `needs the property ${quote(p.missingProperty)}`;
    default:
      // "must be integer", "must be >= 1", "must NOT have more than 64 characters": already
      // say what is allowed.
      return e.message ?? 'is invalid';
  }
}

export function schemaErrorFormatter(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const lines = describeAjvErrors(errors, dataVar);
  return new Error(lines.length > 0 ? lines.join('; ') : `${dataVar} is invalid`);
}
