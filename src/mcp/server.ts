import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { QkmApiError, type QkmClient } from '../client/client.js';
import { open, seal } from '../client/secure-message.js';
import {
  type AgentSigningKeys,
  agentKeyContext,
  announceAgentKey,
  fingerprintFromContext,
  generateAgentKeys,
} from '../client/session-channel.js';
import { VERSION } from '../core/version.js';
import { POSTURES, type Posture } from '../session/posture.js';
import { McpToolError, toErrorBody } from './errors.js';
import { type HeldSession, SessionTable } from './sessions.js';

/**
 * `qkm mcp`: the appliance as tools for a language-model agent (Model Context Protocol). Every
 * tool is one or two REST calls with the agent's own token (src/client/client.ts); the MCP
 * server adds nothing to what the token may do. Outputs carry the appliance's provenance, so
 * the model can tell (and say) whether what it got was backed by healthy quantum entropy.
 *
 * Sessions are the exception to "thin": K and the agent's ML-DSA-65 signing key are held here
 * (src/mcp/sessions.ts) and `seal`/`open` run the secure-message channel in this process
 * (src/client/secure-message.ts), so the model handles only ciphertext and announcements.
 */

export interface QkmMcpOptions {
  client: QkmClient;
  /** Held sessions beyond which the oldest is dropped; default 256. */
  maxSessions?: number;
  /** Where unexpected (untyped) failures are described; default stderr (stdout is the protocol). */
  logInternal?: (line: string) => void;
}

const POSTURE = z.enum(POSTURES as [Posture, ...Posture[]]);
const REQUIRE = z
  .enum(['quantum', 'any'])
  .describe('quantum: fail (503) rather than serve material made without a healthy quantum source');
const ENCODING = z.enum(['utf8', 'base64']);

function ok(value: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(value) }], structuredContent: value };
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

/** Builds the server with its seven tools; connect it to a transport (`runStdio`) to serve. */
export function createQkmMcpServer(options: QkmMcpOptions): { server: McpServer; sessions: SessionTable } {
  const { client } = options;
  const logInternal = options.logInternal ?? ((line) => process.stderr.write(`${line}\n`));
  const sessions = new SessionTable(options.maxSessions);
  const server = new McpServer({ name: 'qkm', version: VERSION });

  /** Runs a handler; every failure becomes an isError result shaped like the API's `{error, message}`. */
  const guarded =
    <A>(tool: string, fn: (args: A) => Promise<Record<string, unknown>>) =>
    async (args: A): Promise<CallToolResult> => {
      try {
        return ok(await fn(args));
      } catch (err) {
        const { body, internal } = toErrorBody(err);
        // The name and message of an unexpected error go to stderr only (never to the model).
        if (internal !== undefined) logInternal(`qkm mcp: ${tool}: ${(internal as Error)?.name ?? 'error'}`);
        return {
          isError: true,
          content: [{ type: 'text', text: `${body.error}: ${body.message}` }],
          structuredContent: { ...body },
        };
      }
    };

  server.registerTool(
    'get_entropy',
    {
      title: 'Random bytes',
      description:
        'Random bytes from the appliance (a DRBG seeded by health-tested quantum sources), with their ' +
        'provenance. provenance.degraded=true means no healthy quantum source stood behind them.',
      inputSchema: z
        .object({
          bytes: z.number().int().min(1).describe('how many bytes (the appliance caps a request)'),
          require: REQUIRE.optional(),
          prediction_resistance: z.boolean().optional().describe('reseed from the sources first'),
          encoding: z.enum(['base64', 'hex']).optional().describe('of `data`; default base64'),
        })
        .strict(),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    guarded('get_entropy', async (a) => {
      const r = await client.entropy(a.bytes, {
        ...(a.require ? { require: a.require } : {}),
        ...(a.prediction_resistance ? { predictionResistance: true } : {}),
      });
      const encoding = a.encoding ?? 'base64';
      const data = Buffer.from(r.data).toString(encoding);
      r.data.fill(0);
      return { data, encoding, bytes: r.bytes, provenance: r.provenance };
    }),
  );

  server.registerTool(
    'create_key',
    {
      title: 'Create a single-use key',
      description:
        'Creates a key from quantum entropy, stored encrypted on the appliance. Returns its id and ' +
        'metadata (never the material); fetch the material exactly once with take_key.',
      inputSchema: z
        .object({
          size: z.number().int().min(16).max(1024).optional().describe('bytes, default 32'),
          ttl_seconds: z
            .number()
            .int()
            .min(1)
            .max(2_592_000)
            .optional()
            .describe('default: the configured one'),
          label: z.string().max(128).optional(),
          require: REQUIRE.optional(),
        })
        .strict(),
      annotations: {
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    guarded('create_key', async (a) => ({
      ...(await client.keys.create({
        ...(a.size !== undefined ? { size: a.size } : {}),
        ...(a.ttl_seconds !== undefined ? { ttlSeconds: a.ttl_seconds } : {}),
        ...(a.label !== undefined ? { label: a.label } : {}),
        ...(a.require !== undefined ? { require: a.require } : {}),
      })),
    })),
  );

  server.registerTool(
    'take_key',
    {
      title: 'Take a key (once)',
      description:
        "Returns a key's material (base64) exactly once and destroys it on the appliance; a second " +
        'take fails with KEY_ALREADY_TAKEN. The provenance says how the key was made.',
      inputSchema: z.object({ id: z.uuid().describe('from create_key') }).strict(),
      annotations: {
        readOnlyHint: false,
        destructiveHint: true,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    guarded('take_key', async (a) => {
      const k = await client.keys.take(a.id);
      const key = b64(k.key);
      k.key.fill(0);
      return { ...k, key };
    }),
  );

  /** A fresh ML-DSA-65 key pair for one session, seeded from the appliance's entropy when the token may fetch it. */
  const sessionSigningKeys = async (): Promise<{ keys: AgentSigningKeys; seed: 'quantum' | 'os' }> => {
    try {
      const r = await client.entropy(32);
      const keys = generateAgentKeys(r.data);
      r.data.fill(0);
      return { keys, seed: r.provenance.degraded ? 'os' : 'quantum' };
    } catch (err) {
      // A token without the entropy scope still gets sessions: the OS CSPRNG seeds the key.
      if (err instanceof QkmApiError && err.code === 'FORBIDDEN')
        return { keys: generateAgentKeys(), seed: 'os' };
      throw err;
    }
  };

  const sessionView = (s: HeldSession) => ({
    session_id: s.session.sessionId,
    role: s.session.role,
    peer: s.peer,
    posture: s.posture,
    provenance: s.provenance,
    confirmed: s.confirmed,
    channel_open: s.channel !== undefined,
  });

  server.registerTool(
    'establish_session',
    {
      title: 'Hybrid session with a peer agent',
      description:
        'Establishes a quantum-secure session (ML-KEM + ML-DSA, plus QKD and QRNG when available) with an ' +
        'agent on a pinned peer appliance, for seal/open. The session key stays inside this MCP server. ' +
        'Three steps: the initiator calls action=initiate (peer, responder_agent) and hands `handshake` and ' +
        '`announcement` to the peer agent; the responder calls action=accept (handshake, peer_announcement) ' +
        'and hands back `confirm` and its `announcement`; the initiator calls action=confirm (session_id, ' +
        'confirm, peer_announcement). Outputs carry the posture and its provenance (degraded, QKD/QRNG used).',
      inputSchema: z
        .object({
          action: z.enum(['initiate', 'accept', 'confirm']),
          peer: z.string().min(1).max(128).optional().describe('initiate: node id of the pinned peer'),
          responder_agent: z
            .string()
            .min(1)
            .max(64)
            .optional()
            .describe('initiate: the agent on the peer node that may accept'),
          min_posture: POSTURE.optional().describe('initiate: refuse anything weaker'),
          handshake: z.string().min(1).max(65_536).optional().describe("accept: the initiator's handshake"),
          session_id: z.string().min(1).max(128).optional().describe('confirm: from initiate'),
          confirm: z.string().min(1).max(256).optional().describe("confirm: the responder's confirm tag"),
          peer_announcement: z
            .string()
            .min(1)
            .max(8192)
            .optional()
            .describe(
              "accept/confirm: the other agent's announcement (its signing key, MAC'd with the session key)",
            ),
        })
        .strict(),
      annotations: {
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    guarded('establish_session', async (a) => {
      const need = (field: string, v: string | undefined): string => {
        if (v === undefined) throw new McpToolError('ARGUMENTS_INVALID', `action=${a.action} needs ${field}`);
        return v;
      };
      if (a.action === 'initiate') {
        const peer = need('peer', a.peer);
        const responderAgent = need('responder_agent', a.responder_agent);
        const { keys, seed } = await sessionSigningKeys();
        let r: Awaited<ReturnType<QkmClient['sessions']['initiate']>>;
        try {
          r = await client.sessions.initiate({
            peer,
            responderAgent,
            ...(a.min_posture ? { minPosture: a.min_posture } : {}),
            // Binds this agent's signing-key fingerprint into the transcript the node signs.
            context: agentKeyContext(keys.publicKey),
          });
        } catch (err) {
          keys.secretKey.fill(0);
          throw err;
        }
        const held: HeldSession = {
          session: { sessionId: r.session_id, key: r.key, role: 'initiator' },
          keys,
          posture: r.posture,
          provenance: r.provenance,
          peer,
          confirmed: false,
        };
        sessions.add(held);
        return {
          ...sessionView(held),
          handshake: r.handshake,
          announcement: announceAgentKey(held.session, keys),
          agent_key_seed: seed,
          next: 'give handshake and announcement to the responder agent; then action=confirm with its confirm and announcement',
        };
      }
      if (a.action === 'accept') {
        const handshake = need('handshake', a.handshake);
        const { keys, seed } = await sessionSigningKeys();
        let r: Awaited<ReturnType<QkmClient['sessions']['accept']>>;
        try {
          r = await client.sessions.accept(handshake);
        } catch (err) {
          keys.secretKey.fill(0);
          throw err;
        }
        const fingerprint = fingerprintFromContext(r.context);
        const held: HeldSession = {
          session: { sessionId: r.session_id, key: r.key, role: 'responder' },
          keys,
          posture: r.posture,
          provenance: r.provenance,
          peer: r.peer,
          confirmed: true,
          ...(fingerprint !== undefined ? { expectedPeerFingerprint: fingerprint } : {}),
        };
        sessions.add(held);
        if (a.peer_announcement !== undefined) sessions.openChannel(held, a.peer_announcement);
        return {
          ...sessionView(held),
          peer_agent: r.peer_agent,
          confirm: r.confirm,
          announcement: announceAgentKey(held.session, keys),
          agent_key_seed: seed,
          next: 'give confirm and announcement to the initiator agent',
        };
      }
      const held = sessions.get(need('session_id', a.session_id));
      if (held.session.role !== 'initiator')
        throw new McpToolError('ARGUMENTS_INVALID', 'action=confirm is for the initiator of the session');
      const peerAnnouncement = need('peer_announcement', a.peer_announcement);
      const r = await client.sessions.confirm(held.session.sessionId, need('confirm', a.confirm));
      held.confirmed = r.confirmed;
      if (r.confirmed) sessions.openChannel(held, peerAnnouncement);
      return sessionView(held);
    }),
  );

  server.registerTool(
    'seal',
    {
      title: 'Seal a message for the peer agent',
      description:
        'Encrypts (AES-256-GCM under the session key) and signs (ML-DSA-65) a message for the other agent ' +
        'of an established session. Hand `sealed` to it; it reads it with open.',
      inputSchema: z
        .object({
          session_id: z.string().min(1).max(128),
          message: z.string().max(1_048_576),
          encoding: ENCODING.optional().describe('of `message`; default utf8'),
          aad: z.string().max(4096).optional().describe('associated data: travels in clear, authenticated'),
          peer_announcement: z.string().min(1).max(8192).optional(),
        })
        .strict(),
      annotations: {
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    guarded('seal', async (a) => {
      const held = sessions.get(a.session_id);
      const ch = sessions.channel(held, a.peer_announcement);
      const payload = a.encoding === 'base64' ? new Uint8Array(Buffer.from(a.message, 'base64')) : a.message;
      const sealed = seal(ch, payload, a.aad);
      if (payload instanceof Uint8Array) payload.fill(0);
      return {
        session_id: held.session.sessionId,
        sealed: Buffer.from(sealed).toString('base64url'),
        posture: held.posture,
        provenance: held.provenance,
      };
    }),
  );

  server.registerTool(
    'open',
    {
      title: 'Open a message from the peer agent',
      description:
        'Verifies (signature, session, channel, replay) and decrypts a message sealed by the other agent of ' +
        'the session. Fails with MESSAGE_* codes when it was altered, replayed or is for another session.',
      inputSchema: z
        .object({
          session_id: z.string().min(1).max(128),
          sealed: z.string().min(1).max(2_000_000).describe('base64url, from the peer agent'),
          encoding: ENCODING.optional().describe('of the returned `message`; default utf8'),
          expected_aad: z.string().max(4096).optional().describe('fail unless the aad is exactly this'),
          peer_announcement: z.string().min(1).max(8192).optional(),
        })
        .strict(),
      annotations: {
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    guarded('open', async (a) => {
      const held = sessions.get(a.session_id);
      const ch = sessions.channel(held, a.peer_announcement);
      const m = open(ch, new Uint8Array(Buffer.from(a.sealed, 'base64url')), a.expected_aad);
      const message = Buffer.from(m.payload).toString(a.encoding === 'base64' ? 'base64' : 'utf8');
      m.payload.fill(0);
      return {
        session_id: held.session.sessionId,
        message,
        aad: Buffer.from(m.aad).toString('utf8'),
        posture: held.posture,
        provenance: held.provenance,
      };
    }),
  );

  server.registerTool(
    'status',
    {
      title: 'Appliance status',
      description:
        'Sources and their health, DRBG, key counts, QKD links, session counters, and whether anything ' +
        'the appliance would serve now is degraded (and why).',
      inputSchema: z.object({}).strict(),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    guarded('status', async () => ({ ...(await client.status()) })),
  );

  return { server, sessions };
}
