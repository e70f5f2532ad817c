import { QkmError } from '../core/errors.js';

/**
 * Governed agent ids, SAGA style: `user@domain:name` — the user who owns the agent, the domain
 * that vouches for the user, and the agent's name among that user's agents. The id is the unit
 * contact policies speak about; it is registered on the agent's node (`qkm agent add --aid`).
 *
 * Canonical form: the domain is lower-cased (DNS names are case-insensitive); user and name are
 * kept as given (they are opaque to qkm). Two ids are the same agent iff their canonical forms
 * are equal strings.
 */

export interface AgentId {
  user: string;
  domain: string;
  name: string;
}

/** Local part: the dot-atom characters of RFC 5322 §3.2.3 that need no quoting, minus `*`. */
const USER_RE = /^[A-Za-z0-9!#$%&'+\-/=?^_`{|}~.]{1,64}$/;
/** A DNS name (RFC 1123 labels), at least one label; `localhost`-style single labels allowed. */
const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Same alphabet as the node's agent names. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const AID_MAX_LENGTH = 64 + 1 + 253 + 1 + 64;

export function isValidUser(user: string): boolean {
  return USER_RE.test(user) && !user.startsWith('.') && !user.endsWith('.') && !user.includes('..');
}

export function isValidDomain(domain: string): boolean {
  if (domain.length === 0 || domain.length > 253) return false;
  return domain.split('.').every((label) => LABEL_RE.test(label));
}

export function isValidName(name: string): boolean {
  return NAME_RE.test(name);
}

/**
 * Parses `user@domain:name`. Throws QkmError `AID_INVALID` (400) naming the part that is wrong
 * (never echoing more than the input's length, so a pasted secret does not land in an error).
 */
export function parseAid(input: unknown): AgentId {
  if (typeof input !== 'string') throw new QkmError('AID_INVALID', 'agent id must be a string');
  if (input.length > AID_MAX_LENGTH)
    throw new QkmError('AID_INVALID', `agent id is ${input.length} characters, at most ${AID_MAX_LENGTH}`);
  // The user part cannot hold '@' and the name cannot hold ':', so the last '@' before the
  // last ':' splits unambiguously.
  const colon = input.lastIndexOf(':');
  const at = colon < 0 ? -1 : input.lastIndexOf('@', colon);
  if (at < 0 || colon < 0) throw new QkmError('AID_INVALID', 'agent id must have the form user@domain:name');
  const user = input.slice(0, at);
  const domain = input.slice(at + 1, colon).toLowerCase();
  const name = input.slice(colon + 1);
  if (!isValidUser(user))
    throw new QkmError('AID_INVALID', 'agent id: user must be 1-64 characters of an e-mail local part');
  if (!isValidDomain(domain))
    throw new QkmError('AID_INVALID', 'agent id: domain must be a DNS name (letters, digits, -, dots)');
  if (!isValidName(name))
    throw new QkmError(
      'AID_INVALID',
      'agent id: name must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)',
    );
  return { user, domain, name };
}

export function formatAid(id: AgentId): string {
  return `${id.user}@${id.domain}:${id.name}`;
}

/** The canonical string of an id given as text (throws `AID_INVALID`). */
export function canonicalAid(input: unknown): string {
  return formatAid(parseAid(input));
}
