/**
 * `qkm mcp` end to end: the MCP SDK's own Client, over its stdio transport, spawns the real
 * `qkm mcp` (node --import tsx src/cli/bin.ts mcp) for each of two agents, each against a real
 * appliance on loopback (the two-node setup of `qkm demo`: simulated Quantis, KME pair, BB84).
 * Nothing in between is faked: the MCP server calls the REST API with the agent's token.
 */
import { readFile } from 'node:fs/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TwoNodeSetup, startTwoNodeSetup, waitForQrng } from '../../src/demo/index.js';
import { repoRoot } from '../cli/run-cli.js';

let setup: TwoNodeSetup;
let alice: Client;
let bob: Client;
const clients: Client[] = [];

async function connect(url: string, token: string): Promise<Client> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: ['--import', 'tsx', 'src/cli/bin.ts', 'mcp'],
    cwd: repoRoot,
    // Only what the server needs: the appliance and the agent's token, as an MCP host passes them.
    env: { PATH: process.env.PATH ?? '', QKM_URL: url, QKM_TOKEN: token },
    stderr: 'pipe',
  });
  const client = new Client({ name: 'qkm-e2e', version: '1.0.0' });
  await client.connect(transport);
  clients.push(client);
  return client;
}

type Body = Record<string, unknown>;

async function call(c: Client, name: string, args: Body = {}): Promise<CallToolResult> {
  return (await c.callTool({ name, arguments: args })) as CallToolResult;
}

/** A successful call's structured output (and its text twin says the same). */
async function ok(c: Client, name: string, args: Body = {}): Promise<Body> {
  const r = await call(c, name, args);
  if (r.isError) throw new Error(`${name} failed: ${JSON.stringify(r.content)}`);
  const text = r.content[0];
  expect(text?.type).toBe('text');
  expect(JSON.parse((text as { text: string }).text)).toEqual(r.structuredContent);
  return r.structuredContent as Body;
}

/** A failed call: isError, `{error, message}` as structured output, and the text. */
async function fails(c: Client, name: string, args: Body = {}): Promise<{ body: Body; text: string }> {
  const r = await call(c, name, args);
  expect(r.isError).toBe(true);
  const text = (r.content[0] as { text: string }).text;
  return { body: (r.structuredContent ?? {}) as Body, text };
}

const token = async (file: string) => (await readFile(file, 'utf8')).trim();

beforeAll(async () => {
  setup = await startTwoNodeSetup({ timeScale: 50 });
  await waitForQrng(setup, 'a');
  await waitForQrng(setup, 'b');
  const d = setup.describe();
  const [na, nb] = d.nodes as [(typeof d.nodes)[0], (typeof d.nodes)[0]];
  [alice, bob] = await Promise.all([
    connect(na.url, await token(na.token_file)),
    connect(nb.url, await token(nb.token_file)),
  ]);
}, 30_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await setup?.stop();
});

describe('qkm mcp over stdio', () => {
  it('lists exactly the seven tools, each with an object input schema', async () => {
    const { tools } = await alice.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(
      ['create_key', 'establish_session', 'get_entropy', 'open', 'seal', 'status', 'take_key'].sort(),
    );
    for (const t of tools) {
      expect(t.inputSchema.type).toBe('object');
      expect(t.description?.length).toBeGreaterThan(20);
    }
    const entropy = tools.find((t) => t.name === 'get_entropy');
    expect(entropy?.inputSchema.required).toEqual(['bytes']);
  });

  it('get_entropy: the bytes asked for, with quantum provenance', async () => {
    const r = await ok(alice, 'get_entropy', { bytes: 48 });
    expect(r.encoding).toBe('base64');
    expect(Buffer.from(r.data as string, 'base64')).toHaveLength(48);
    expect(r.bytes).toBe(48);
    expect(r.provenance).toMatchObject({ degraded: false, seedOrigin: 'quantum' });
    const hex = await ok(alice, 'get_entropy', { bytes: 16, encoding: 'hex', require: 'quantum' });
    expect(hex.data).toMatch(/^[0-9a-f]{32}$/);
  });

  it("get_entropy beyond the appliance's cap: the appliance's {error, message} as a tool error", async () => {
    const { body, text } = await fails(alice, 'get_entropy', { bytes: 10_000_000 });
    expect(body).toMatchObject({ error: 'BAD_REQUEST', status: 400 });
    expect(typeof body.message).toBe('string');
    expect(text).toMatch(/^BAD_REQUEST: /);
  });

  it('arguments outside the input schema are refused before any API call', async () => {
    const bad = await call(alice, 'get_entropy', { bytes: 0 });
    expect(bad.isError).toBe(true);
    expect((bad.content[0] as { text: string }).text).toMatch(/Input validation error: .*get_entropy/);
    const extra = await call(alice, 'take_key', { id: 'not-a-uuid' });
    expect(extra.isError).toBe(true);
    const unknown = await call(alice, 'status', { verbose: true });
    expect(unknown.isError).toBe(true);
  });

  it('create_key then take_key: material once with its provenance; the second take fails without it', async () => {
    const meta = await ok(alice, 'create_key', { size: 24, label: 'mcp-e2e' });
    expect(meta).toMatchObject({ size: 24, state: 'active', label: 'mcp-e2e', owner: 'default' });
    expect(meta).not.toHaveProperty('key');
    expect(meta.provenance).toMatchObject({ degraded: false });
    const taken = await ok(alice, 'take_key', { id: meta.id });
    const key = taken.key as string;
    expect(Buffer.from(key, 'base64')).toHaveLength(24);
    expect(taken).toMatchObject({ id: meta.id, state: 'taken' });
    expect(taken.provenance).toEqual(meta.provenance);
    const again = await fails(alice, 'take_key', { id: meta.id });
    expect(again.body).toMatchObject({ error: 'KEY_ALREADY_TAKEN', status: 410 });
    expect(JSON.stringify(again)).not.toContain(key);
  });

  it('status: the appliance status, not degraded', async () => {
    const s = await ok(bob, 'status');
    expect(s).toMatchObject({ degraded: false, mode: 'simulator', nodeId: setup.b.nodeId });
    expect((s.entropy as { sources: unknown[] }).sources.length).toBeGreaterThan(0);
  });

  it('establish_session, then seal/open both ways; tampering and replays fail with typed errors', async () => {
    const init = await ok(alice, 'establish_session', {
      action: 'initiate',
      peer: setup.b.nodeId,
      responder_agent: 'default',
    });
    expect(init).toMatchObject({ role: 'initiator', confirmed: false, channel_open: false });
    expect(init).not.toHaveProperty('key');
    expect(['PQC', 'PQC+QRNG', 'QKD+PQC+QRNG']).toContain(init.posture);
    expect(init.provenance).toMatchObject({ posture: init.posture, degraded: false });
    expect(init.agent_key_seed).toBe('quantum');

    const acc = await ok(bob, 'establish_session', {
      action: 'accept',
      handshake: init.handshake,
      peer_announcement: init.announcement,
    });
    expect(acc).toMatchObject({
      role: 'responder',
      session_id: init.session_id,
      peer: setup.a.nodeId,
      peer_agent: 'default',
      posture: init.posture,
      channel_open: true,
    });
    expect(acc).not.toHaveProperty('key');

    // Sealing before confirm is refused on the initiator side.
    const early = await fails(alice, 'seal', { session_id: init.session_id, message: 'too early' });
    expect(early.body.error).toBe('SESSION_NOT_CONFIRMED');

    const conf = await ok(alice, 'establish_session', {
      action: 'confirm',
      session_id: init.session_id,
      confirm: acc.confirm,
      peer_announcement: acc.announcement,
    });
    expect(conf).toMatchObject({ confirmed: true, channel_open: true });

    const secret = 'the launch code is 0451';
    const s1 = await ok(alice, 'seal', { session_id: init.session_id, message: secret, aad: 'order-7' });
    expect(s1.sealed as string).not.toContain(Buffer.from(secret).toString('base64url'));
    expect(s1.provenance).toMatchObject({ posture: init.posture });
    const o1 = await ok(bob, 'open', {
      session_id: init.session_id,
      sealed: s1.sealed,
      expected_aad: 'order-7',
    });
    expect(o1).toMatchObject({ message: secret, aad: 'order-7', posture: init.posture });

    const replay = await fails(bob, 'open', { session_id: init.session_id, sealed: s1.sealed });
    expect(replay.body.error).toBe('MESSAGE_REPLAYED');
    expect(replay.text).not.toContain(secret);

    // A fresh message altered in transit (a replayed one is refused before its signature is checked).
    const s1b = await ok(alice, 'seal', { session_id: init.session_id, message: secret });
    const raw = Buffer.from(s1b.sealed as string, 'base64url');
    raw[raw.length - 100] = (raw[raw.length - 100] ?? 0) ^ 1;
    const tampered = await fails(bob, 'open', {
      session_id: init.session_id,
      sealed: raw.toString('base64url'),
    });
    expect(tampered.body.error).toBe('MESSAGE_BAD_SIGNATURE');
    expect(JSON.stringify(tampered)).not.toContain(secret);
    // The untouched message still opens: nothing was recorded by the failed attempt.
    expect((await ok(bob, 'open', { session_id: init.session_id, sealed: s1b.sealed })).message).toBe(secret);

    const s2 = await ok(bob, 'seal', {
      session_id: init.session_id,
      message: Buffer.from([0, 1, 2, 255]).toString('base64'),
      encoding: 'base64',
    });
    const o2 = await ok(alice, 'open', {
      session_id: init.session_id,
      sealed: s2.sealed,
      encoding: 'base64',
    });
    expect(o2.message).toBe(Buffer.from([0, 1, 2, 255]).toString('base64'));

    // Handing the same announcement again (as a model may) keeps the channel: bob still opens.
    const s3 = await ok(alice, 'seal', {
      session_id: init.session_id,
      message: 'again',
      peer_announcement: acc.announcement,
    });
    expect((await ok(bob, 'open', { session_id: init.session_id, sealed: s3.sealed })).message).toBe('again');

    // A message sealed in one direction does not open on the sender's own side.
    const own = await fails(alice, 'open', { session_id: init.session_id, sealed: s1.sealed });
    expect(own.body.error).toBe('MESSAGE_WRONG_SESSION');
  });

  it('a forged announcement, an unknown session and a bad handshake are tool errors', async () => {
    const init = await ok(alice, 'establish_session', {
      action: 'initiate',
      peer: setup.b.nodeId,
      responder_agent: 'default',
    });
    // Bob accepts, but is handed an announcement from another session: its MAC does not verify.
    const other = await ok(alice, 'establish_session', {
      action: 'initiate',
      peer: setup.b.nodeId,
      responder_agent: 'default',
    });
    const forged = await fails(bob, 'establish_session', {
      action: 'accept',
      handshake: init.handshake,
      peer_announcement: other.announcement,
    });
    expect(forged.body.error).toBe('AGENT_KEY_BAD_TAG');

    const unknown = await fails(bob, 'seal', { session_id: 'no-such-session', message: 'x' });
    expect(unknown.body.error).toBe('SESSION_UNKNOWN');

    const missing = await fails(alice, 'establish_session', { action: 'initiate', peer: setup.b.nodeId });
    expect(missing.body).toMatchObject({ error: 'ARGUMENTS_INVALID' });
    expect(missing.body.message).toContain('responder_agent');

    const bad = await fails(bob, 'establish_session', { action: 'accept', handshake: 'AAAA' });
    expect(bad.body).toMatchObject({ error: 'HANDSHAKE_MALFORMED', status: 400 });
  });

  it('a wrong token and an unreachable appliance are tool errors, not crashes', async () => {
    const stranger = await connect(setup.a.appliance.url, 'qkm_not-a-real-token');
    const denied = await fails(stranger, 'get_entropy', { bytes: 8 });
    expect(denied.body).toMatchObject({ error: 'UNAUTHORIZED', status: 401 });
    expect(denied.text).not.toContain('qkm_not-a-real-token');

    const nowhere = await connect('http://127.0.0.1:9', 'whatever');
    const down = await fails(nowhere, 'status');
    expect(down.body.error).toBe('APPLIANCE_UNREACHABLE');
    // The server survived both and still answers.
    expect((await nowhere.listTools()).tools).toHaveLength(7);
  });
});
