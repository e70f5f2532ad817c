import { describe, expect, it } from 'vitest';
import { generateAgentKeys } from '../../src/client/session-channel.js';
import { McpToolError } from '../../src/mcp/errors.js';
import { type HeldSession, SessionTable } from '../../src/mcp/sessions.js';

const keys = generateAgentKeys(new Uint8Array(32).fill(7));

function held(id: string, role: 'initiator' | 'responder' = 'responder'): HeldSession {
  return {
    session: { sessionId: id, key: new Uint8Array(32).fill(0xaa), role },
    keys: { publicKey: keys.publicKey, secretKey: keys.secretKey.slice() },
    posture: 'PQC',
    provenance: {
      posture: 'PQC',
      degraded: false,
      fallback: false,
      pqc: {
        kem: 'ML-KEM-768',
        signature: 'ML-DSA-65',
        kdf: 'HKDF-SHA-256',
        randomness: 'os',
        randomnessOrigin: 'local',
      },
      qkd: { used: false, keyIds: [] },
      qrng: { used: false, degraded: false },
      at: new Date(0).toISOString(),
    },
    peer: 'node-b',
    confirmed: role === 'responder',
  };
}

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    if (err instanceof McpToolError) return err.code;
    throw err;
  }
  return undefined;
};

describe('the MCP server session table', () => {
  it('holds at most `max` sessions: the oldest is dropped and its K and signing key wiped', () => {
    const t = new SessionTable(2);
    const a = held('a');
    t.add(a);
    t.add(held('b'));
    t.add(held('c'));
    expect(t.size).toBe(2);
    expect(codeOf(() => t.get('a'))).toBe('SESSION_UNKNOWN');
    expect(a.session.key.every((x) => x === 0)).toBe(true);
    expect(a.keys.secretKey.every((x) => x === 0)).toBe(true);
    expect(t.get('c').session.sessionId).toBe('c');
  });

  it('clear() wipes every session', () => {
    const t = new SessionTable();
    const s = [held('x'), held('y')];
    for (const h of s) t.add(h);
    t.clear();
    expect(t.size).toBe(0);
    for (const h of s) expect(h.session.key.every((x) => x === 0)).toBe(true);
  });

  it('no channel before confirm (initiator) or before an announcement; a junk announcement is typed', () => {
    const t = new SessionTable();
    const i = held('i', 'initiator');
    const r = held('r');
    t.add(i);
    t.add(r);
    expect(codeOf(() => t.channel(i))).toBe('SESSION_NOT_CONFIRMED');
    expect(codeOf(() => t.channel(r))).toBe('CHANNEL_NOT_OPEN');
    expect(() => t.channel(r, 'AAAA')).toThrow(expect.objectContaining({ code: 'AGENT_KEY_MALFORMED' }));
  });
});
