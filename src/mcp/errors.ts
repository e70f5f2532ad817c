import { QkmApiError, QkmTransportError } from '../client/client.js';
import { SecureMessageError } from '../client/secure-message.js';
import { SessionChannelError } from '../client/session-channel.js';

/**
 * Errors the MCP server itself raises (the appliance's own codes come from its catalogue,
 * src/core/errors.ts, and pass through unchanged). Messages name ids and sizes only: a tool
 * error is read by a language model and may end up in its transcript, so it must never carry
 * key material, session keys or message payloads.
 */
export const MCP_ERRORS = {
  ARGUMENTS_INVALID: 'The arguments do not fit together for this action',
  SESSION_UNKNOWN: 'This MCP server holds no session with this id (sessions live as long as the server)',
  SESSION_NOT_CONFIRMED: 'The initiator has not confirmed the session yet (establish_session action=confirm)',
  CHANNEL_NOT_OPEN: 'No verified announcement from the peer agent yet: pass its peer_announcement',
  APPLIANCE_UNREACHABLE: 'The appliance did not answer (QKM_URL wrong, appliance down or timing out)',
  INTERNAL: 'Unexpected failure inside the MCP server (details on its stderr)',
} as const;

export type McpErrorCode = keyof typeof MCP_ERRORS;

export class McpToolError extends Error {
  constructor(
    readonly code: McpErrorCode,
    message: string = MCP_ERRORS[code],
  ) {
    super(message);
    this.name = 'McpToolError';
  }
}

/** What a failed tool call reports: the appliance's `{error, message}` shape, for every source. */
export interface ToolErrorBody {
  error: string;
  message: string;
  /** HTTP status when the appliance answered. */
  status?: number;
}

/**
 * Maps anything a tool handler threw to an error body. Only typed errors keep their message
 * (each of those is written to be shown to a caller); anything else is reported as INTERNAL
 * with a fixed text, so an unexpected exception cannot smuggle data into the model's context.
 */
export function toErrorBody(err: unknown): { body: ToolErrorBody; internal?: unknown } {
  if (err instanceof QkmApiError)
    return { body: { error: err.code, message: err.message, status: err.status } };
  if (err instanceof QkmTransportError) {
    return { body: { error: 'APPLIANCE_UNREACHABLE', message: err.message } };
  }
  if (
    err instanceof McpToolError ||
    err instanceof SecureMessageError ||
    err instanceof SessionChannelError
  ) {
    return { body: { error: err.code, message: err.message } };
  }
  return { body: { error: 'INTERNAL', message: MCP_ERRORS.INTERNAL }, internal: err };
}
