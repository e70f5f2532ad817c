import { describe, expect, it } from 'vitest';
import { isQkmError } from '../../src/core/errors.js';
import { canonicalAid, formatAid, parseAid } from '../../src/governance/aid.js';

describe('governed agent ids user@domain:name', () => {
  it('parses the three parts and lower-cases only the domain', () => {
    expect(parseAid('alice@example.com:mail')).toEqual({
      user: 'alice',
      domain: 'example.com',
      name: 'mail',
    });
    expect(canonicalAid('Alice@Example.COM:Mail')).toBe('Alice@example.com:Mail');
    expect(parseAid("o'neil+tag=x@sub.example-1.org:agent_1.v2")).toEqual({
      user: "o'neil+tag=x",
      domain: 'sub.example-1.org',
      name: 'agent_1.v2',
    });
    expect(formatAid(parseAid('bob@localhost:calendar'))).toBe('bob@localhost:calendar');
  });

  it('refuses junk with AID_INVALID (never a TypeError, never a crash)', () => {
    const junk: unknown[] = [
      undefined,
      null,
      42,
      {},
      [],
      '',
      'alice',
      'alice@example.com',
      '@example.com:mail',
      'alice@:mail',
      'alice@example.com:',
      'alice@example.com:.mail',
      'al ice@example.com:mail',
      '.alice@example.com:mail',
      'al..ice@example.com:mail',
      'alice@ex_ample.com:mail',
      'alice@-example.com:mail',
      'alice@example..com:mail',
      'alice@*:mail',
      '*@example.com:mail',
      'alice@example.com:*',
      'alice@example.com:ma:il',
      `${'a'.repeat(65)}@example.com:mail`,
      `alice@example.com:${'m'.repeat(65)}`,
      `alice@${'d'.repeat(64)}.com:mail`,
      'x'.repeat(10_000),
      'alice@exa\u0000mple.com:mail',
      'alice@exämple.com:mail',
    ];
    for (const input of junk) {
      let caught: unknown;
      try {
        parseAid(input);
      } catch (err) {
        caught = err;
      }
      expect(isQkmError(caught, 'AID_INVALID'), String(input).slice(0, 40)).toBe(true);
    }
  });

  it('does not echo a long input back in its error', () => {
    const secret = `qkm_${'s'.repeat(500)}`;
    expect(() => parseAid(secret)).toThrow(/at most/);
    try {
      parseAid(secret);
    } catch (err) {
      expect((err as Error).message).not.toContain('sss');
    }
  });
});
