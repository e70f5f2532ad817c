import type { TSchema } from '@sinclair/typebox';
import { type ValueError, ValueErrorType } from '@sinclair/typebox/value';

/**
 * TypeBox's error messages are written for schema authors ("Expected union value"); an operator
 * who mistyped a config value needs to read which values are allowed. These helpers turn a
 * `ValueError` into that sentence. (The API's validator is ajv, whose errors are formatted in
 * src/api/validation-errors.ts along the same lines.)
 */

const quote = (v: unknown) => JSON.stringify(v);

/** The values a union of literals allows, or undefined when some member is not a literal. */
export function literalChoices(schema: TSchema): unknown[] | undefined {
  const members = schema.anyOf as TSchema[] | undefined;
  if (!Array.isArray(members) || members.length === 0) return undefined;
  if (!members.every((m) => 'const' in m)) return undefined;
  return members.map((m) => m.const);
}

/**
 * The property that tells a union of objects apart (`backend` in `store`), with the literal each
 * member gives it, or undefined when the members have no such property in common.
 */
function discriminant(members: TSchema[]): { key: string; values: unknown[] } | undefined {
  const first = members[0]?.properties as Record<string, TSchema> | undefined;
  if (!first) return undefined;
  for (const key of Object.keys(first)) {
    const values = members.map((m) => (m.properties as Record<string, TSchema> | undefined)?.[key]?.const);
    if (values.every((v) => v !== undefined)) return { key, values };
  }
  return undefined;
}

/** `path: what is wrong` lines for one error; a union is explained by the member the value meant. */
export function describeValueError(e: ValueError): string[] {
  const at = e.path || '/';
  if (e.type === ValueErrorType.Union) {
    const choices = literalChoices(e.schema);
    if (choices) return [`${at}: must be one of ${choices.map(quote).join(', ')} (got ${quote(e.value)})`];
    const members = (e.schema.anyOf as TSchema[] | undefined) ?? [];
    const d = discriminant(members);
    if (d && typeof e.value === 'object' && e.value !== null) {
      const given = (e.value as Record<string, unknown>)[d.key];
      const i = d.values.indexOf(given);
      if (i === -1) {
        return [
          `${at}/${d.key}: must be one of ${d.values.map(quote).join(', ')}` +
            `${given === undefined ? ' (missing)' : ` (got ${quote(given)})`}`,
        ];
      }
      // The value names its member: what is wrong is inside that member.
      const inner = [...(e.errors[i] ?? [])].flatMap(describeValueError);
      if (inner.length > 0) return inner;
    }
    return [`${at}: matches none of the ${members.length} allowed forms`];
  }
  if (e.type === ValueErrorType.Literal)
    return [`${at}: must be ${quote(e.schema.const)} (got ${quote(e.value)})`];
  if (e.type === ValueErrorType.ObjectAdditionalProperties) {
    const allowed = Object.keys((e.schema.properties as Record<string, unknown> | undefined) ?? {});
    return [`${at}: unknown setting${allowed.length > 0 ? `; allowed here: ${allowed.join(', ')}` : ''}`];
  }
  // The remaining messages ("Expected integer", "Expected integer to be greater or equal to 1")
  // already say what is allowed.
  return [`${at}: ${e.message}`];
}

/**
 * One line for a list of errors: unions report once per path (TypeBox also reports the members'
 * own errors after a union's), at most `max` lines.
 */
export function describeValueErrors(errors: Iterable<ValueError>, max = 5): string {
  const lines: string[] = [];
  for (const e of errors) {
    for (const line of describeValueError(e)) if (!lines.includes(line)) lines.push(line);
    if (lines.length >= max) break;
  }
  return lines.slice(0, max).join('; ');
}
